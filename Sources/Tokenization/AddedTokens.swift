// AddedTokens: special and added tokens are found in the text before anything else, as whole
// tokens, leftmost-longest (as HF `tokenizers` does with its Aho-Corasick matcher).

/// What kind of token an id is (GGUF `tokenizer.ggml.token_type` numbering).
public enum TokenType: UInt8, Sendable {
    case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

struct AddedToken: Sendable {
    var content: String
    var id: Int32
    var special: Bool
    var lstrip = false
    var rstrip = false
    var singleWord = false
}

/// A piece of the input: text to tokenize, or an added token already identified.
enum Segment: Equatable {
    case text(Range<Int>)
    case token(Int32)
}

struct AddedTokenMatcher: Sendable {
    private(set) var tokens: [AddedToken] = []
    private var children: [[UInt8: Int32]] = [[:]]
    private var terminal: [Int32] = [-1]  // index into tokens
    private var firstByte = [Bool](repeating: false, count: 256)

    init(_ tokens: [AddedToken]) {
        for t in tokens where !t.content.isEmpty {
            var node = 0
            for b in t.content.utf8 {
                if let c = children[node][b] {
                    node = Int(c)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    children[node][b] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            if terminal[node] < 0 {  // the first of duplicate contents wins
                terminal[node] = Int32(self.tokens.count)
                self.tokens.append(t)
            }
            firstByte[Int(t.content.utf8.first!)] = true
        }
    }

    var isEmpty: Bool { tokens.isEmpty }

    /// Splits UTF-8 text into text ranges and added tokens.
    func split(_ s: UnsafeBufferPointer<UInt8>) -> [Segment] {
        let n = s.count
        if tokens.isEmpty { return n > 0 ? [.text(0..<n)] : [] }
        var out: [Segment] = []
        var textStart = 0
        var i = 0
        while i < n {
            guard firstByte[Int(s[i])], let (t, end) = longestMatch(s, i) else { i += 1; continue }
            let token = tokens[t]
            if token.singleWord && (isWordChar(before: i, s, floor: 0) || isWordChar(after: end, s)) { i += 1; continue }
            var start = i
            var stop = end
            if token.lstrip { while start > textStart, let w = scalarBefore(start, s), isWhitespaceScalar(w.value) { start = w.start } }
            if token.rstrip { while stop < n, let w = scalarAt(stop, s), isWhitespaceScalar(w.value) { stop = w.end } }
            if start > textStart { out.append(.text(textStart..<start)) }
            out.append(.token(token.id))
            textStart = stop
            i = stop
        }
        if textStart < n { out.append(.text(textStart..<n)) }
        return out
    }

    private func longestMatch(_ s: UnsafeBufferPointer<UInt8>, _ i: Int) -> (Int, Int)? {
        var node = 0
        var best: (Int, Int)? = nil
        var j = i
        while j < s.count, let c = children[node][s[j]] {
            node = Int(c)
            j += 1
            if terminal[node] >= 0 { best = (Int(terminal[node]), j) }
        }
        return best
    }
}

private func isWhitespaceScalar(_ v: UInt32) -> Bool { CharClass.isWhitespace(CharClass.of(v)) }

private func isWordScalar(_ v: UInt32) -> Bool {
    let c = CharClass.of(v)
    return c == CharClass.letter || c == CharClass.number || v == 0x5F
}

private func isWordChar(before i: Int, _ s: UnsafeBufferPointer<UInt8>, floor: Int) -> Bool {
    guard i > floor, let w = scalarBefore(i, s) else { return false }
    return isWordScalar(w.value)
}

private func isWordChar(after i: Int, _ s: UnsafeBufferPointer<UInt8>) -> Bool {
    guard i < s.count, let w = scalarAt(i, s) else { return false }
    return isWordScalar(w.value)
}

/// The scalar that starts at byte i.
func scalarAt(_ i: Int, _ s: UnsafeBufferPointer<UInt8>) -> (value: UInt32, end: Int)? {
    guard i < s.count else { return nil }
    let b0 = s[i]
    let len = b0 < 0x80 ? 1 : b0 < 0xE0 ? 2 : b0 < 0xF0 ? 3 : 4
    guard i + len <= s.count else { return (UInt32(b0), i + 1) }
    var v: UInt32 = len == 1 ? UInt32(b0) : len == 2 ? UInt32(b0 & 0x1F) : len == 3 ? UInt32(b0 & 0x0F) : UInt32(b0 & 0x07)
    for k in 1..<len { v = v << 6 | UInt32(s[i + k] & 0x3F) }
    return (v, i + len)
}

/// The scalar that ends at byte i.
func scalarBefore(_ i: Int, _ s: UnsafeBufferPointer<UInt8>) -> (value: UInt32, start: Int)? {
    guard i > 0 else { return nil }
    var j = i - 1
    while j > 0 && s[j] & 0xC0 == 0x80 && i - j < 4 { j -= 1 }
    guard let (v, _) = scalarAt(j, s) else { return nil }
    return (v, j)
}
