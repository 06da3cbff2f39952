// What each loader reports about its tokenizer: special ids, BOS rules, stop ids, lookups.
import TestFixtures
import Testing
@testable import Tokenization

@Test func sentencePieceProperties() throws {
    for t in [try Fixtures.spJSON.get(), try Fixtures.spGGUF.get()] {
        #expect(t.kind == .sentencePieceBPE)
        #expect(t.vocabularySize == 512)
        #expect(t.bosID == 1 && t.eosID == 2 && t.unknownID == 0)
        #expect(t.addBOS && !t.addEOS)
        #expect(t.stopIDs == [2])
        #expect(t.bosToken == "<s>" && t.eosToken == "</s>")
        #expect(t.tokenString(3 + 0x41) == "<0x41>")
        #expect(t.id(for: "<0x0A>") == Int32(13))
        #expect(t.tokenType(3) == .byte && t.tokenType(1) == .control && t.tokenType(0) == .unknown)
        #expect(t.isSpecial(1) && !t.isSpecial(100))
        #expect(t.encode("") == [1] && t.encode("", addSpecialTokens: false) == [])
        #expect(t.chatTemplateSource?.contains("[INST]") == true)
        #expect(t.notes.isEmpty, "\(t.notes)")
    }
}

@Test func byteLevelProperties() throws {
    let t = try Fixtures.byteLevel.get()
    #expect(t.kind == .byteLevelBPE)
    #expect(t.vocabularySize == 801)
    #expect(t.bosID == nil && t.eosID == 2 && !t.addBOS)
    #expect(t.paddingID == 0)
    #expect(t.stopIDs == [0, 2])
    #expect(t.id(for: "<tool_call>") == 800 && t.tokenType(800) == .userDefined)
    #expect(t.encode("Hello", addSpecialTokens: true) == t.encode("Hello", addSpecialTokens: false))
    #expect(t.notes.isEmpty, "\(t.notes)")
}

@Test func smolLM2Properties() throws {
    let t = try Fixtures.smolLM2Tokenizer.get()
    #expect(t.kind == .byteLevelBPE)
    #expect(t.vocabularySize == 49152)
    #expect(t.bosID == 1 && t.eosID == 2 && !t.addBOS)
    #expect(t.stopIDs == [0, 2])
    #expect(t.tokenString(504) == "The" && t.tokenString(3575) == "Ġcapital")
    #expect(t.id(for: "Ġcapital") == 3575)
    #expect(t.chatTemplateSource?.contains("<|im_start|>") == true)
    #expect(t.notes.isEmpty, "\(t.notes)")
}

@Test func canonicallyEquivalentTokensStayDistinct() throws {
    // Swift's String == says "é" == "e\u{301}"; a vocabulary may hold both, and the text keeps
    // whichever the user wrote.
    let json = """
    {"version": "1.0", "added_tokens": [{"id": 0, "content": "<unk>", "special": true}],
     "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
     "pre_tokenizer": null, "post_processor": null,
     "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
     "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true,
       "vocab": {"<unk>": 0, "▁": 1, "e": 2, "\\u0301": 3, "é": 4, "e\\u0301": 5, "▁é": 6},
       "merges": ["e \\u0301", "▁ é"]}}
    """
    let t = try Tokenizer(tokenizerJSONAt: try TestFiles.write("nfc/tokenizer.json", json))
    #expect(t.vocabularySize == 7)
    #expect(t.id(for: "é") == 4 && t.id(for: "e\u{301}") == 5)
    #expect(t.encode("é", addSpecialTokens: false) == [6])
    #expect(t.encode("e\u{301}", addSpecialTokens: false) == [1, 5])
    #expect(t.encode("e\u{301} é", addSpecialTokens: false) == [1, 5, 6])
    #expect(Array(t.decode([1, 5, 6]).unicodeScalars) == Array("e\u{301} é".unicodeScalars))
}

@Test func ggufSentencePieceMergesByScore() throws {
    // llama.cpp's SPM rule: merge the adjacent pair whose concatenation is the best-scored token.
    var tokens = ["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "hi", "▁hi", "x"]
    var scores: [Float] = [0, 0, 0, -1, -2, -3, -10, -5, -4, -6]
    var types: [Int32] = [2, 3, 3, 1, 1, 1, 1, 1, 1, 1]
    for b in [0xC3, 0xA9, 0x20] {
        tokens.append("<0x" + String(b, radix: 16, uppercase: true) + ">")
        scores.append(0)
        types.append(6)
    }
    let path = try TestFiles.gguf("spm.gguf", [
        ("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", .strings(tokens)),
        ("tokenizer.ggml.scores", .f32s(scores)), ("tokenizer.ggml.token_type", .i32s(types)),
    ])
    let t = try Tokenizer(gguf: .init(path: path))
    // "▁hi": "hi" (-5) beats "▁h" (-10); then "▁" + "hi" = "▁hi".
    #expect(t.encode("hi", addSpecialTokens: false) == [8])
    #expect(t.encode("hi", addSpecialTokens: true) == [1, 8])
    // "é" is not in the vocabulary: its UTF-8 bytes.
    #expect(t.encode("é", addSpecialTokens: false) == [3, 10, 11])
    #expect(t.decode([1, 3, 10, 11, 8], skipSpecialTokens: true) == "é hi")
    #expect(t.encode("<s>hi</s>", addSpecialTokens: false) == [1, 8, 2])
}

@Test func concurrentEncodingAgrees() async throws {
    let t = try Fixtures.byteLevel.get()
    let texts = try Fixtures.tokenizerGoldens.get().strings.map(\.text)
    let expected = texts.map { t.encode($0, addSpecialTokens: false) }
    try await withThrowingTaskGroup(of: Bool.self) { group in
        for k in 0..<4 {
            group.addTask {
                texts.indices.allSatisfy { i in t.encode(texts[(i + k * 7) % texts.count], addSpecialTokens: false) == expected[(i + k * 7) % texts.count] }
            }
        }
        for try await ok in group { #expect(ok) }
    }
}
