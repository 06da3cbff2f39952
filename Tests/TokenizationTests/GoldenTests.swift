// Token ids and decoded text against the goldens of HF `tokenizers` (Tests/Fixtures, made by
// scripts/make_fixtures.py), for every golden string and all four tokenizers.
import TestFixtures
import Testing
@testable import Tokenization

private typealias Case = Fixtures.TokenizerGoldens.Case

/// Compares encode / decode / the incremental detokenizer with the goldens; returns failures.
private func check(_ t: Tokenizer, _ pick: (Fixtures.TokenizerGoldens.Entry) -> Case, withBOS: Bool = false) throws -> [String] {
    var failures: [String] = []
    for e in try Fixtures.tokenizerGoldens.get().strings {
        let g = pick(e)
        let ids = t.encode(e.text, addSpecialTokens: false)
        if ids != g.ids { failures.append("encode \(e.text.debugDescription): got \(ids), expected \(g.ids)") }
        if withBOS, let expected = g.ids_with_bos {
            let got = t.encode(e.text, addSpecialTokens: true)
            if got != expected { failures.append("encode+BOS \(e.text.debugDescription): got \(got), expected \(expected)") }
        }
        let text = t.decode(g.ids, skipSpecialTokens: false)
        if text != g.decoded { failures.append("decode \(g.ids): got \(text.debugDescription), expected \(g.decoded.debugDescription)") }
        var d = t.makeDetokenizer()
        var streamed = ""
        for id in g.ids { streamed += d.append(id) }
        streamed += d.finish()
        if streamed != g.decoded { failures.append("incremental \(g.ids): got \(streamed.debugDescription), expected \(g.decoded.debugDescription)") }
    }
    return failures
}

@Test func sentencePieceFromTokenizerJSON() throws {
    let failures = try check(try Fixtures.spJSON.get(), \.sp, withBOS: true)
    #expect(failures.isEmpty, "\(failures.count) failures:\n\(failures.prefix(20).joined(separator: "\n"))")
}

@Test func sentencePieceFromGGUF() throws {
    let failures = try check(try Fixtures.spGGUF.get(), \.sp, withBOS: true)
    #expect(failures.isEmpty, "\(failures.count) failures:\n\(failures.prefix(20).joined(separator: "\n"))")
}

@Test func byteLevelFromTokenizerJSON() throws {
    let failures = try check(try Fixtures.byteLevel.get(), \.bytelevel)
    #expect(failures.isEmpty, "\(failures.count) failures:\n\(failures.prefix(20).joined(separator: "\n"))")
}

@Test func smolLM2FromGGUF() throws {
    let failures = try check(try Fixtures.smolLM2Tokenizer.get(), \.smollm2)
    #expect(failures.isEmpty, "\(failures.count) failures:\n\(failures.prefix(20).joined(separator: "\n"))")
}

@Test func smolLM2MatchesLlamaCpp() throws {
    let t = try Fixtures.smolLM2Tokenizer.get()
    #expect(t.encode("The capital of France is", addSpecialTokens: true) == [504, 3575, 282, 4649, 314])
    #expect(t.encode("<|im_start|>user\nWhat is machine learning?<|im_end|>\n<|im_start|>assistant\n", addSpecialTokens: false)
            == [1, 4093, 198, 1780, 314, 3746, 1380, 47, 2, 198, 1, 520, 9531, 198])
}
