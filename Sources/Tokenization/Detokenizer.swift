// Detokenizer: token ids -> text, one id at a time. Byte-level pieces are raw bytes decoded as
// one UTF-8 stream (invalid bytes become U+FFFD exactly as Rust's from_utf8_lossy does); an
// incomplete character is held until its last byte arrives. SentencePiece pieces are text with
// "▁" made " "; runs of `<0xNN>` tokens are held until the run ends and then decoded strictly
// (an invalid run is one U+FFFD per byte, as HF's ByteFallback does); the leading space of the
// whole output is stripped (HF Strip decoder).

/// The decoder of a tokenizer.json (or the equivalent for a GGUF vocabulary).
struct DecoderSpec: Sendable {
    struct Replacement: Sendable { var pattern: String; var content: String }
    /// ByteLevel decoder: pieces are the bytes their scalars stand for.
    var byteLevel = false
    /// GGUF byte-level vocabularies store non-normal tokens as plain text.
    var rawNonNormalTokens = false
    /// Replace decoders, applied to every token (e.g. "▁" -> " ").
    var replacements: [Replacement] = []
    /// Metaspace decoder: its replacement becomes " ", and is dropped from the first token.
    var metaspace: String? = nil
    var metaspaceDropsFromFirst = false
    var byteFallback = false
    /// Strip decoder: up to `stripStart` leading `stripContent` are removed from the whole text.
    var stripContent: Unicode.Scalar = " "
    var stripStart = 0
    /// No decoder at all: HF joins the token strings with spaces.
    var joinWithSpaces = false
}

struct DecodingTables: Sendable {
    /// Token i's piece: pieceBytes[pieceStart[i] ..< pieceStart[i + 1]].
    let pieceBytes: [UInt8]
    let pieceStart: [Int32]
    /// The byte of each `<0xNN>` token (-1 for others); empty without byte fallback.
    let byteValue: [Int16]
    let special: [Bool]
    let spec: DecoderSpec
    let stripBytes: [UInt8]

    init(spec s: TokenizerSpec) {
        let d = s.decoder
        spec = d
        var bytes: [UInt8] = []
        var starts: [Int32] = [0]
        starts.reserveCapacity(s.tokens.count + 1)
        for (i, token) in s.tokens.enumerated() {
            if d.byteLevel {
                if d.rawNonNormalTokens && s.types[i] != .normal {
                    bytes += token.utf8
                } else {
                    bytes += ByteLevel.decode(token) ?? Array(token.utf8)
                }
            } else {
                var t = token
                for r in d.replacements where !r.pattern.isEmpty { t = t.replacingAll(r.pattern, with: r.content) }
                if let m = d.metaspace, !m.isEmpty { t = t.replacingAll(m, with: " ") }
                bytes += t.utf8
            }
            starts.append(Int32(bytes.count))
        }
        pieceBytes = bytes
        pieceStart = starts
        if d.byteFallback {
            byteValue = s.tokens.map { t in byteTokenValue(t).map { Int16($0) } ?? -1 }
        } else {
            byteValue = []
        }
        var special = [Bool](repeating: false, count: s.tokens.count)
        for id in s.specialIDs where id >= 0 && Int(id) < special.count { special[Int(id)] = true }
        self.special = special
        stripBytes = Array(String(d.stripContent).utf8)
    }
}

/// The byte of a `<0xNN>` token.
func byteTokenValue(_ token: String) -> UInt8? {
    let u = Array(token.utf8)
    guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
    return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
}

extension String {
    /// Every non-overlapping occurrence of `pattern` (compared by scalars) replaced.
    func replacingAll(_ pattern: String, with content: String) -> String {
        let p = Array(pattern.unicodeScalars)
        guard !p.isEmpty else { return self }
        let s = Array(unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        var changed = false
        while i < s.count {
            if s[i] == p[0] && i + p.count <= s.count && Array(s[i..<(i + p.count)]) == p {
                out.append(contentsOf: content.unicodeScalars)
                i += p.count
                changed = true
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return changed ? String(out) : self
    }
}

/// Streaming detokenizer. Invariant: the concatenation of every `append` result and `finish()`
/// equals `tokenizer.decode(ids)` for the same ids and skipSpecialTokens. Each call costs
/// O(length of the token), except that a run of byte tokens is validated once when it ends.
public struct IncrementalDetokenizer: Sendable {
    public let tokenizer: Tokenizer
    public let skipSpecialTokens: Bool
    /// Byte-level: the bytes of an incomplete UTF-8 sequence and what may follow them.
    private var pending: (UInt8, UInt8, UInt8) = (0, 0, 0)
    private var pendingCount = 0
    private var need = 0
    private var low: UInt8 = 0x80
    private var high: UInt8 = 0xBF
    /// SentencePiece: the bytes of the current run of `<0xNN>` tokens.
    private var byteRun: [UInt8] = []
    private var stripRemaining: Int
    private var tokenCount = 0

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
        self.stripRemaining = tokenizer.decoding.spec.stripStart
    }

    /// Adds one token; returns the text it completes (possibly empty).
    public mutating func append(_ id: Int32) -> String {
        var out: [UInt8] = []
        feed(id, &out)
        return out.isEmpty ? "" : String(decoding: out, as: UTF8.self)
    }

    /// Ends the sequence; returns what was held back (bytes of an unfinished character come out
    /// as U+FFFD, as the full decode gives them). The detokenizer can then start a new sequence.
    public mutating func finish() -> String {
        var out: [UInt8] = []
        flush(&out)
        return out.isEmpty ? "" : String(decoding: out, as: UTF8.self)
    }

    mutating func feed(_ id: Int32, _ out: inout [UInt8]) {
        let t = tokenizer.decoding
        guard id >= 0 && Int(id) < t.special.count else { return }
        let i = Int(id)
        if skipSpecialTokens && t.special[i] { return }
        let start = out.count
        if t.spec.byteFallback && t.byteValue[i] >= 0 {
            byteRun.append(UInt8(t.byteValue[i]))
            tokenCount += 1
            return
        }
        flushByteRun(&out)
        let lo = Int(t.pieceStart[i]), hi = Int(t.pieceStart[i + 1])
        if t.spec.byteLevel {
            t.pieceBytes.withUnsafeBufferPointer { p in
                for k in lo..<hi { feedByte(p[k], &out) }
            }
        } else {
            if t.spec.joinWithSpaces && tokenCount > 0 { out.append(0x20) }
            if tokenCount == 0 && t.spec.metaspaceDropsFromFirst, let m = t.spec.metaspace, let token = tokenizer.tokenString(id) {
                var s = token
                for r in t.spec.replacements where !r.pattern.isEmpty { s = s.replacingAll(r.pattern, with: r.content) }
                out += s.replacingAll(m, with: "").utf8
            } else {
                out += t.pieceBytes[lo..<hi]
            }
        }
        tokenCount += 1
        if stripRemaining > 0 { strip(from: start, &out) }
    }

    mutating func flush(_ out: inout [UInt8]) {
        let start = out.count
        flushByteRun(&out)
        if pendingCount > 0 {
            out += replacementCharacter
            resetPending()
        }
        if stripRemaining > 0 { strip(from: start, &out) }
        tokenCount = 0
        stripRemaining = tokenizer.decoding.spec.stripStart
    }

    private mutating func flushByteRun(_ out: inout [UInt8]) {
        guard !byteRun.isEmpty else { return }
        let start = out.count
        if isValidUTF8(byteRun) {
            out += byteRun
        } else {
            for _ in byteRun { out += replacementCharacter }
        }
        byteRun.removeAll(keepingCapacity: true)
        if stripRemaining > 0 { strip(from: start, &out) }
    }

    /// Removes leading strip characters from out[start...], which holds whole characters.
    private mutating func strip(from start: Int, _ out: inout [UInt8]) {
        let c = tokenizer.decoding.stripBytes
        var p = start
        while stripRemaining > 0 && out.count - p >= c.count && out[p..<(p + c.count)].elementsEqual(c) {
            p += c.count
            stripRemaining -= 1
        }
        if p > start { out.removeSubrange(start..<p) }
        if out.count > start { stripRemaining = 0 }
    }

    private mutating func resetPending() {
        pendingCount = 0
        need = 0
        low = 0x80
        high = 0xBF
    }

    /// One byte of the byte-level stream (maximal-subpart replacement, as from_utf8_lossy).
    @inline(__always)
    private mutating func feedByte(_ b: UInt8, _ out: inout [UInt8]) {
        if need > 0 {
            if b >= low && b <= high {
                need -= 1
                low = 0x80
                high = 0xBF
                if need == 0 {
                    out.append(pending.0)
                    if pendingCount > 1 { out.append(pending.1) }
                    if pendingCount > 2 { out.append(pending.2) }
                    out.append(b)
                    resetPending()
                } else {
                    if pendingCount == 1 { pending.1 = b } else { pending.2 = b }
                    pendingCount += 1
                }
                return
            }
            out += replacementCharacter
            resetPending()
        }
        if b < 0x80 {
            out.append(b)
            return
        }
        switch b {
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE, 0xEF: need = 2
        case 0xED: need = 2; high = 0x9F
        case 0xF0: need = 3; low = 0x90
        case 0xF1...0xF3: need = 3
        case 0xF4: need = 3; high = 0x8F
        default:
            out += replacementCharacter
            return
        }
        pending.0 = b
        pendingCount = 1
    }
}

private let replacementCharacter: [UInt8] = [0xEF, 0xBF, 0xBD]

/// Strict UTF-8 validation (what String::from_utf8 accepts).
func isValidUTF8(_ bytes: [UInt8]) -> Bool {
    var i = 0
    let n = bytes.count
    while i < n {
        let b = bytes[i]
        if b < 0x80 { i += 1; continue }
        var need = 0
        var low: UInt8 = 0x80, high: UInt8 = 0xBF
        switch b {
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE, 0xEF: need = 2
        case 0xED: need = 2; high = 0x9F
        case 0xF0: need = 3; low = 0x90
        case 0xF1...0xF3: need = 3
        case 0xF4: need = 3; high = 0x8F
        default: return false
        }
        for k in 1...need {
            guard i + k < n else { return false }
            let c = bytes[i + k]
            if c < low || c > high { return false }
            low = 0x80
            high = 0xBF
        }
        i += need + 1
    }
    return true
}
