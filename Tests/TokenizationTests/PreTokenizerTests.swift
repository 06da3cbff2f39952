// The hand-written split scanners against Swift Regex running the same patterns, on random
// strings over an alphabet chosen to hit every branch (letters, digits of several scripts,
// whitespace kinds, newlines, apostrophes, combining marks, emoji).
import Compute
import Testing
@testable import Tokenization


private let alphabet: [Unicode.Scalar] = [
    "a", "b", "Z", "s", "t", "m", "d", "r", "e", "v", "l", "S", "T", "L", "E",  // letters (contraction letters)
    "é", "ß", "Ж", "東", "한", "ʰ",                                                  // L* of other scripts (Lm included)
    "0", "7", "٣", "½", "²", "Ⅻ",                                                   // Nd, No, Nl
    " ", " ", " ", "\t", "\n", "\r", "\u{00A0}", "\u{2009}", "\u{3000}", "\u{0B}",  // whitespace
    "'", "'", "’", ".", ",", "!", "-", "(", "_", "$",                              // punctuation
    "\u{301}", "😀", "\u{200D}", "\u{FE0F}",                                       // marks, emoji, format chars
]

private func randomText(_ rng: inout SplitMix64) -> [UInt32] {
    let n = Int(rng.next() % 24)
    return (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))].value }
}

private func scannerPieces(_ p: BuiltinPattern, _ s: [UInt32]) -> [[UInt32]] {
    let classes = s.map(CharClass.of)
    var out: [Range<Int>] = []
    s.withUnsafeBufferPointer { sp in
        classes.withUnsafeBufferPointer { kp in regexSplit(p, scalars: sp, classes: kp, range: 0..<s.count, into: &out) }
    }
    return out.map { Array(s[$0]) }
}

private func regexPieces(_ re: Regex<AnyRegexOutput>, _ s: [UInt32]) -> [[UInt32]] {
    let text = scalarString(s)
    return text.matches(of: re.matchingSemantics(.unicodeScalar)).map { text.unicodeScalars[$0.range].map(\.value) }
}

@Test(arguments: [BuiltinPattern.gpt2, .llama3, .qwen2])
func scannerMatchesRegex(_ pattern: BuiltinPattern) throws {
    let re = try Regex(pattern.source)
    var rng = SplitMix64(seed: 42)
    var failures: [String] = []
    for _ in 0..<1000 {
        let s = randomText(&rng)
        let a = scannerPieces(pattern, s), b = regexPieces(re, s)
        if a != b { failures.append("\(scalarString(s).debugDescription): scanner \(a.map(scalarString)) regex \(b.map(scalarString))") }
    }
    #expect(failures.isEmpty, "\(failures.count) mismatches, e.g.\n\(failures.prefix(5).joined(separator: "\n"))")
}

@Test func builtinPatternsAreRecognised() {
    #expect(BuiltinPattern(source: BuiltinPattern.gpt2Source) == .gpt2)
    #expect(BuiltinPattern(source: BuiltinPattern.llama3Source) == .llama3)
    #expect(BuiltinPattern(source: BuiltinPattern.qwen2Source) == .qwen2)
    #expect(BuiltinPattern(source: #"\s+"#) == nil)
}

@Test func knownSplits() {
    func split(_ p: BuiltinPattern, _ s: String) -> [String] { scannerPieces(p, s.unicodeScalars.map(\.value)).map(scalarString) }
    #expect(split(.gpt2, "Hello world's  end  ") == ["Hello", " world", "'s", " ", " end", "  "])
    #expect(split(.gpt2, "I'M 12345 x\n\ny") == ["I", "'", "M", " 12345", " x", "\n", "\n", "y"])
    #expect(split(.llama3, "I'M 12345 x\n\ny") == ["I", "'M", " ", "123", "45", " x", "\n\n", "y"])
    #expect(split(.qwen2, "12345") == ["1", "2", "3", "4", "5"])
    #expect(split(.llama3, "(hello) ...\n\nok") == ["(hello", ")", " ...\n\n", "ok"])
}

@Test func splitBehaviors() {
    func run(_ b: SplitBehavior, invert: Bool = false) -> [String] {
        let s = "a-b--c".unicodeScalars.map(\.value)
        var out: [Range<Int>] = []
        let m = SplitMatcher(kind: .literal([0x2D]))
        s.withUnsafeBufferPointer { applySplit(matches: m.matches($0, range: 0..<s.count), range: 0..<s.count, behavior: b, invert: invert, into: &out) }
        return out.map { scalarString(s[$0]) }
    }
    // As HF tokenizers' SplitDelimiterBehavior documentation.
    #expect(run(.removed) == ["a", "b", "c"])
    #expect(run(.isolated) == ["a", "-", "b", "-", "-", "c"])
    #expect(run(.mergedWithPrevious) == ["a-", "b-", "-", "c"])
    #expect(run(.mergedWithNext) == ["a", "-b", "-", "-c"])
    #expect(run(.contiguous) == ["a", "-", "b", "--", "c"])
}
