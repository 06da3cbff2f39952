// PreTokenizer: normalizers and pre-tokenizers of the HF pipeline, on Unicode scalars.
// The GPT-2, Llama-3 and Qwen2 split regexes are hand-written scanners (regexSplit); any other
// Split pattern falls back to Swift Regex.

/// What a regex class sees in one scalar. `apostrophe` is an `other` that starts contractions.
enum CharClass {
    static let letter: UInt8 = 0
    static let number: UInt8 = 1
    static let space: UInt8 = 2       // U+0020
    static let newline: UInt8 = 3     // \r or \n
    static let whitespace: UInt8 = 4  // any other White_Space scalar (regex \s)
    static let other: UInt8 = 5
    static let apostrophe: UInt8 = 6  // U+0027, an `other`

    @inline(__always) static func isWhitespace(_ c: UInt8) -> Bool { c >= space && c <= whitespace }
    @inline(__always) static func isOther(_ c: UInt8) -> Bool { c >= other }

    private static let ascii: [UInt8] = (0..<128).map { v -> UInt8 in
        switch v {
        case 0x41...0x5A, 0x61...0x7A: return letter
        case 0x30...0x39: return number
        case 0x20: return space
        case 0x0A, 0x0D: return newline
        case 0x09, 0x0B, 0x0C: return whitespace
        case 0x27: return apostrophe
        default: return other
        }
    }

    /// \p{L} = general category L*, \p{N} = N*, \s = White_Space.
    @inline(__always) static func of(_ v: UInt32) -> UInt8 {
        if v < 128 { return ascii[Int(v)] }
        return slow(v)
    }

    private static func slow(_ v: UInt32) -> UInt8 {
        guard let s = Unicode.Scalar(v) else { return other }
        let p = s.properties
        if p.isWhitespace { return whitespace }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return letter
        case .decimalNumber, .letterNumber, .otherNumber: return number
        default: return other
        }
    }
}

/// The hand-written split regexes.
enum BuiltinPattern: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// As llama3 with `\p{N}` (one digit per piece).
    case qwen2

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Recognises a pattern string (as written in tokenizer.json or llama.cpp) as a builtin.
    init?(source: String) {
        switch source {
        case Self.gpt2Source, #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#:
            self = .gpt2
        case Self.llama3Source,
             #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#:
            self = .llama3
        case Self.qwen2Source,
             #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#:
            self = .qwen2
        default:
            return nil
        }
    }

    var source: String {
        switch self {
        case .gpt2: return Self.gpt2Source
        case .llama3: return Self.llama3Source
        case .qwen2: return Self.qwen2Source
        }
    }
}

/// Scans `range` of the text into consecutive matches of `pattern`, appending each match's
/// range. The patterns match every scalar, so the matches partition the range.
func regexSplit(_ pattern: BuiltinPattern, scalars s: UnsafeBufferPointer<UInt32>, classes k: UnsafeBufferPointer<UInt8>,
                range: Range<Int>, into out: inout [Range<Int>]) {
    let n = range.upperBound
    var i = range.lowerBound
    while i < n {
        let end: Int
        switch pattern {
        case .gpt2: end = gpt2Match(s, k, i, n)
        case .llama3: end = llamaMatch(s, k, i, n, maxDigits: 3)
        case .qwen2: end = llamaMatch(s, k, i, n, maxDigits: 1)
        }
        out.append(i..<end)
        i = end
    }
}

/// Length of a contraction ('s 't 'm 'd 're 've 'll) at i, which holds an apostrophe; 0 if none.
@inline(__always)
private func contraction(_ s: UnsafeBufferPointer<UInt32>, _ i: Int, _ n: Int, caseInsensitive: Bool) -> Int {
    guard i + 1 < n else { return 0 }
    @inline(__always) func low(_ v: UInt32) -> UInt32 { caseInsensitive && v >= 0x41 && v <= 0x5A ? v + 32 : v }
    let a = low(s[i + 1])
    switch a {
    case 0x73, 0x74, 0x6D, 0x64: return 2  // s t m d
    default: break
    }
    guard i + 2 < n else { return 0 }
    let b = low(s[i + 2])
    switch (a, b) {
    case (0x72, 0x65), (0x76, 0x65), (0x6C, 0x6C): return 3  // re ve ll
    default: return 0
    }
}

/// End of the whitespace-only match at i (k[i] is whitespace): `\s+(?!\S)` then `\s+`.
@inline(__always)
private func whitespaceMatch(_ k: UnsafeBufferPointer<UInt8>, _ i: Int, _ e: Int, _ n: Int) -> Int {
    if e == n || e - i == 1 { return e }
    return e - 1
}

private func gpt2Match(_ s: UnsafeBufferPointer<UInt32>, _ k: UnsafeBufferPointer<UInt8>, _ i: Int, _ n: Int) -> Int {
    let c = k[i]
    if c == CharClass.apostrophe {
        let m = contraction(s, i, n, caseInsensitive: false)
        if m > 0 { return i + m }
    }
    var j = i
    if c == CharClass.space && i + 1 < n && !CharClass.isWhitespace(k[i + 1]) { j = i + 1 }
    let cj = k[j]
    if cj == CharClass.letter || cj == CharClass.number {
        j += 1
        while j < n && k[j] == cj { j += 1 }
        return j
    }
    if CharClass.isOther(cj) {
        j += 1
        while j < n && CharClass.isOther(k[j]) { j += 1 }
        return j
    }
    var e = i + 1
    while e < n && CharClass.isWhitespace(k[e]) { e += 1 }
    return whitespaceMatch(k, i, e, n)
}

private func llamaMatch(_ s: UnsafeBufferPointer<UInt32>, _ k: UnsafeBufferPointer<UInt8>, _ i: Int, _ n: Int, maxDigits: Int) -> Int {
    let c = k[i]
    if c == CharClass.apostrophe {
        let m = contraction(s, i, n, caseInsensitive: true)
        if m > 0 { return i + m }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    var j = -1
    if c == CharClass.letter {
        j = i + 1
    } else if c != CharClass.newline && c != CharClass.number && i + 1 < n && k[i + 1] == CharClass.letter {
        j = i + 2
    }
    if j >= 0 {
        while j < n && k[j] == CharClass.letter { j += 1 }
        return j
    }
    // \p{N}{1,maxDigits}
    if c == CharClass.number {
        j = i + 1
        while j < n && j - i < maxDigits && k[j] == CharClass.number { j += 1 }
        return j
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    if CharClass.isOther(c) || (c == CharClass.space && i + 1 < n && CharClass.isOther(k[i + 1])) {
        j = i + 1
        while j < n && CharClass.isOther(k[j]) { j += 1 }
        while j < n && k[j] == CharClass.newline { j += 1 }
        return j
    }
    // whitespace: `\s*[\r\n]+`, then `\s+(?!\S)`, then `\s+`
    var e = i
    var lastNewline = -1
    while e < n && CharClass.isWhitespace(k[e]) {
        if k[e] == CharClass.newline { lastNewline = e }
        e += 1
    }
    if lastNewline >= 0 { return lastNewline + 1 }
    return whitespaceMatch(k, i, e, n)
}

/// How a Split pre-tokenizer treats its matches (HF `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// A Split pattern that is not builtin: a literal string or a Swift Regex.
struct SplitMatcher: @unchecked Sendable {  // Regex holds only immutable state
    enum Kind { case literal([UInt32]), regex(Regex<AnyRegexOutput>) }
    let kind: Kind

    /// Matches of the pattern inside `range`, in order, non-empty and non-overlapping.
    func matches(_ s: UnsafeBufferPointer<UInt32>, range: Range<Int>) -> [Range<Int>] {
        var out: [Range<Int>] = []
        switch kind {
        case .literal(let lit):
            guard !lit.isEmpty else { return [] }
            var i = range.lowerBound
            while i + lit.count <= range.upperBound {
                var ok = true
                for (d, v) in lit.enumerated() where s[i + d] != v { ok = false; break }
                if ok { out.append(i..<(i + lit.count)); i += lit.count } else { i += 1 }
            }
        case .regex(let re):
            var view = String.UnicodeScalarView()
            for v in s[range] { view.append(Unicode.Scalar(v) ?? "\u{FFFD}") }
            let text = String(view)
            var pos = text.startIndex
            var offset = range.lowerBound
            for m in text.matches(of: re.matchingSemantics(.unicodeScalar)) where !m.range.isEmpty {
                offset += text.unicodeScalars.distance(from: pos, to: m.range.lowerBound)
                let len = text.unicodeScalars.distance(from: m.range.lowerBound, to: m.range.upperBound)
                out.append(offset..<(offset + len))
                offset += len
                pos = m.range.upperBound
            }
        }
        return out
    }
}

/// One step of pre-tokenization: splits each piece (a range of scalars) into smaller pieces.
enum PreTokenizerStep: Sendable {
    /// A builtin regex with Isolated behavior (every scalar lies in some match).
    case builtin(BuiltinPattern)
    /// HF Digits: every \p{N} alone (individual) or runs of \p{N}, isolated.
    case digits(individual: Bool)
    /// A general Split.
    case split(SplitMatcher, SplitBehavior, invert: Bool)
}

/// Applies `behavior` to the matches inside `range` and appends the resulting pieces.
func applySplit(matches: [Range<Int>], range: Range<Int>, behavior: SplitBehavior, invert: Bool, into out: inout [Range<Int>]) {
    // Alternate (range, isMatch) over the whole range.
    var parts: [(Range<Int>, Bool)] = []
    var p = range.lowerBound
    for m in matches {
        if m.lowerBound > p { parts.append((p..<m.lowerBound, invert)) }
        parts.append((m, !invert))
        p = m.upperBound
    }
    if p < range.upperBound { parts.append((p..<range.upperBound, invert)) }
    switch behavior {
    case .isolated:
        for (r, _) in parts { out.append(r) }
    case .removed:
        for (r, isMatch) in parts where !isMatch { out.append(r) }
    case .contiguous:
        var current: Range<Int>? = nil
        var currentIsMatch = false
        for (r, isMatch) in parts {
            if let c = current, isMatch && currentIsMatch {
                current = c.lowerBound..<r.upperBound
            } else {
                if let c = current { out.append(c) }
                current = r
                currentIsMatch = isMatch
            }
        }
        if let c = current { out.append(c) }
    case .mergedWithPrevious:
        var start: Int? = nil
        for (r, isMatch) in parts {
            if start == nil { start = r.lowerBound }
            if isMatch { out.append(start!..<r.upperBound); start = nil }
        }
        if let s = start { out.append(s..<range.upperBound) }
    case .mergedWithNext:
        var start: Int? = nil
        for (r, isMatch) in parts {
            if isMatch, let s = start { out.append(s..<r.lowerBound); start = nil }
            if start == nil { start = r.lowerBound }
        }
        if let s = start { out.append(s..<range.upperBound) }
    }
}

/// How Metaspace prepends its replacement (HF `PrependScheme`).
enum PrependScheme: String, Sendable {
    case always, first, never
}

/// One normalization step on the scalars of a text segment.
enum NormalizerStep: Sendable {
    case prepend([UInt32])
    case replace([UInt32], [UInt32])
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)
    /// The Metaspace pre-tokenizer's rewrite: spaces become `replacement`, which is prepended by `scheme`.
    case metaspace(replacement: UInt32, scheme: PrependScheme)

    func apply(_ s: inout [UInt32], atTextStart: Bool) {
        switch self {
        case .prepend(let p):
            if !s.isEmpty { s.insert(contentsOf: p, at: 0) }
        case .replace(let pattern, let content):
            s = replaceAll(s, pattern, content)
        case .nfc, .nfd, .nfkc, .nfkd:
            s = unicodeNormalize(s, self)
        case .lowercase:
            s = Array(scalarString(s).lowercased().unicodeScalars.map(\.value))
        case .strip(let left, let right):
            @inline(__always) func ws(_ v: UInt32) -> Bool { CharClass.isWhitespace(CharClass.of(v)) }
            if right { while let last = s.last, ws(last) { s.removeLast() } }
            if left, let firstKept = s.firstIndex(where: { !ws($0) }) { s.removeFirst(firstKept) } else if left { s.removeAll() }
        case .metaspace(let replacement, let scheme):
            for i in s.indices where s[i] == 0x20 { s[i] = replacement }
            let prepend: Bool
            switch scheme {
            case .always: prepend = true
            case .first: prepend = atTextStart
            case .never: prepend = false
            }
            if prepend && !s.isEmpty && s[0] != replacement { s.insert(replacement, at: 0) }
        }
    }
}

func scalarString<C: Collection>(_ s: C) -> String where C.Element == UInt32 {
    var view = String.UnicodeScalarView()
    for v in s { view.append(Unicode.Scalar(v) ?? "\u{FFFD}") }
    return String(view)
}

private func replaceAll(_ s: [UInt32], _ pattern: [UInt32], _ content: [UInt32]) -> [UInt32] {
    guard !pattern.isEmpty, s.count >= pattern.count else { return s }
    if pattern.count == 1 && content.count == 1 {
        var out = s
        for i in out.indices where out[i] == pattern[0] { out[i] = content[0] }
        return out
    }
    var out: [UInt32] = []
    out.reserveCapacity(s.count)
    var i = 0
    while i < s.count {
        if i + pattern.count <= s.count && s[i] == pattern[0] && Array(s[i..<(i + pattern.count)]) == pattern {
            out.append(contentsOf: content)
            i += pattern.count
        } else {
            out.append(s[i])
            i += 1
        }
    }
    return out
}
