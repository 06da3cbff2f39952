// The incremental detokenizer: its outputs concatenate to the full decode, it never emits half a
// character, and byte-level decoding repairs invalid UTF-8 exactly as the standard library does
// (the Unicode "maximal subpart" rule that Rust's from_utf8_lossy and Python also follow).
import Compute
import TestFixtures
import Testing
@testable import Tokenization

private func stream(_ t: Tokenizer, _ ids: [Int32], skip: Bool = false) -> [String] {
    var d = t.makeDetokenizer(skipSpecialTokens: skip)
    return ids.map { d.append($0) } + [d.finish()]
}

@Test func byteLevelRepairsLikeTheStandardLibrary() throws {
    let t = try Fixtures.byteLevel.get()
    let byteToken = t.model.byteSymbols  // the one-byte token of each byte value
    #expect(!byteToken.contains(-1))
    let interesting: [UInt8] = [0x41, 0x20, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xA0, 0xED, 0x9F, 0xA0, 0xEF, 0xF0, 0x90, 0xF4, 0x8F, 0xF5, 0xFF, 0xE4, 0xBD]
    var rng = SplitMix64(seed: 3)
    for _ in 0..<2000 {
        let n = Int(rng.next() % 10)
        let bytes = (0..<n).map { _ in interesting[Int(rng.next() % UInt64(interesting.count))] }
        let ids = bytes.map { byteToken[Int($0)] }
        let expected = String(decoding: bytes, as: UTF8.self)
        #expect(t.decode(ids) == expected, "\(bytes)")
        #expect(stream(t, ids).joined() == expected, "\(bytes)")
    }
}

@Test func multiByteCharactersAreHeldUntilComplete() throws {
    for t in [try Fixtures.smolLM2Tokenizer.get(), try Fixtures.byteLevel.get(), try Fixtures.spJSON.get(), try Fixtures.spGGUF.get()] {
        let text = "héllo 😀👍🏽 你好, 東京は日本の首都です。👨‍👩‍👧 ok"
        let ids = t.encode(text, addSpecialTokens: true)
        let parts = stream(t, ids, skip: true)
        #expect(parts.joined() == text, "\(t.path)")
        #expect(parts.allSatisfy { !$0.unicodeScalars.contains("\u{FFFD}") }, "\(t.path): \(parts)")
        #expect(parts.dropLast().contains(""), "\(t.path): some token must complete no character")
    }
}

@Test func sentencePieceDecodeRules() throws {
    let t = try Fixtures.spJSON.get()
    let hello = t.encode("Hello world", addSpecialTokens: true)
    #expect(hello.first == 1)
    #expect(t.decode(hello, skipSpecialTokens: false) == "<s> Hello world")
    #expect(t.decode(hello, skipSpecialTokens: true) == "Hello world")
    #expect(stream(t, hello, skip: true).first == "", "the lone leading '▁' is stripped, not emitted")
    #expect(stream(t, hello, skip: true).joined() == "Hello world")
    // Byte runs: an invalid run is one U+FFFD per byte; a leading space from a byte token is stripped.
    let b = { (x: Int32) in Int32(3) + x }
    #expect(t.decode([b(0xE4), b(0xBD), b(0x61), b(0xA0)]) == "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}")
    #expect(t.decode([b(0x20), b(0x41)]) == "A")
    #expect(t.decode([0, b(0xE4)], skipSpecialTokens: true) == "\u{FFFD}")
    #expect(stream(t, [b(0xE4), b(0xBD), b(0xA0)]) == ["", "", "", "你"])
    // After finish() the detokenizer starts a new sequence (and strips again).
    var d = t.makeDetokenizer(skipSpecialTokens: true)
    let a = hello.map { d.append($0) }.joined() + d.finish()
    let c = hello.map { d.append($0) }.joined() + d.finish()
    #expect(a == "Hello world" && c == "Hello world")
}

@Test func specialTokensAndAddedTokens() throws {
    let t = try Fixtures.byteLevel.get()
    let ids = t.encode("<|im_start|>user\nhi<tool_call>x<|im_end|>", addSpecialTokens: false)
    #expect(ids.first == t.id(for: "<|im_start|>"))
    #expect(ids.contains(t.id(for: "<tool_call>")!))
    #expect(ids.last == t.id(for: "<|im_end|>"))
    #expect(t.decode(ids) == "<|im_start|>user\nhi<tool_call>x<|im_end|>")
    // Special tokens are skipped on request; added non-special ones are not.
    #expect(t.decode(ids, skipSpecialTokens: true) == "user\nhi<tool_call>x")
    #expect(stream(t, ids, skip: true).joined() == "user\nhi<tool_call>x")
}

@Test func outOfRangeIdsAreIgnored() throws {
    let t = try Fixtures.spJSON.get()
    #expect(t.decode([-1, 100_000, Int32.max]) == "")
    var d = t.makeDetokenizer()
    #expect(d.append(-5) == "")
    #expect(t.tokenString(-1) == nil && t.tokenString(512) == nil)
}
