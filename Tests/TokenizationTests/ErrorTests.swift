// Bad tokenizer files are errors that name the file and field, never crashes.
import Compute
import Checkpoints
import Foundation
import TestFixtures
import Testing
@testable import Tokenization

private func loadError(_ json: String, _ name: String) -> TokenizerError? {
    do {
        _ = try Tokenizer(tokenizerJSONAt: try TestFiles.write("\(name)/tokenizer.json", json))
        return nil
    } catch let e as TokenizerError {
        return e
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

private let validModel = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#

@Test func tokenizerJSONErrorsNameTheField() throws {
    #expect(loadError("{\(validModel)}", "ok") == nil)
    #expect(loadError("", "empty")?.message.contains("not valid JSON") == true)
    #expect(loadError("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", "truncated")?.message.contains("truncated") == true)
    #expect(loadError("{}", "nomodel")?.field == "model")
    #expect(loadError(#"{"model": {"type": "WordPiece", "vocab": {}}}"#, "wordpiece")?.field == "model.type")
    #expect(loadError(#"{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}}"#, "vocabtype")?.field == "model.vocab")
    #expect(loadError(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [7]}}"#, "mergetype")?.field == "model.merges[0]")
    #expect(loadError(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}}"#, "mergeform")?.field == "model.merges[0]")
    #expect(loadError("{\(validModel), \"normalizer\": {\"type\": \"Precompiled\"}}", "normalizer")?.field == "normalizer.type")
    #expect(loadError("{\(validModel), \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}}}", "regex")?.field == "pre_tokenizer.pattern.Regex")
    #expect(loadError("{\(validModel), \"decoder\": {\"type\": \"CTC\"}}", "decoder")?.field == "decoder.type")
    #expect(loadError("{\(validModel), \"added_tokens\": [{\"id\": -1, \"content\": \"x\"}]}", "added")?.field == "added_tokens[0].id")
    #expect(loadError(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "unk_token": "<unk>"}}"#, "unk")?.field == "model.unk_token")

    let missing = (TestFiles.directory as NSString).appendingPathComponent("nowhere/tokenizer.json")
    #expect(throws: TokenizerError(missing, "file not found")) { try Tokenizer(tokenizerJSONAt: missing) }
    #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSONAt: TestFiles.directory) }

    // A broken tokenizer_config.json next to a good tokenizer.json is named as the culprit.
    _ = try TestFiles.write("badconfig/tokenizer_config.json", "{\"chat_template\": ")
    let e = loadError("{\(validModel)}", "badconfig")
    #expect(e?.path.hasSuffix("badconfig/tokenizer_config.json") == true)
}

@Test func truncatedAndCorruptedFilesNeverCrash() throws {
    let original = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-llama/tokenizer.json")))
    var rng = SplitMix64(seed: 11)
    for k in 0..<60 {
        var bytes = [UInt8](original)
        if k < 30 {
            bytes = Array(bytes[0..<(bytes.count * k / 30)])  // truncated
        } else {
            for _ in 0..<3 { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
        }
        let p = try TestFiles.write("fuzz\(k)/tokenizer.json", bytes: bytes)
        if let t = try? Tokenizer(tokenizerJSONAt: p) {
            let ids = t.encode("Hello wörld <s> 你好", addSpecialTokens: true)
            _ = t.decode(ids)
        } else {
            #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerJSONAt: p) }
        }
    }
}

private func ggufError(_ entries: [(String, TestFiles.Value)], _ name: String) throws -> TokenizerError? {
    let f = try GGUFFile(path: try TestFiles.gguf(name, entries))
    do {
        _ = try Tokenizer(gguf: f)
        return nil
    } catch let e as TokenizerError {
        return e
    }
}

@Test func ggufErrorsNameTheKey() throws {
    let tokens: (String, TestFiles.Value) = ("tokenizer.ggml.tokens", .strings(["<unk>", "<s>", "</s>", "a"]))
    #expect(try ggufError([("tokenizer.ggml.model", .string("llama")), tokens], "ok.gguf") == nil)
    #expect(try ggufError([tokens], "nomodel.gguf")?.field == "tokenizer.ggml.model")
    #expect(try ggufError([("tokenizer.ggml.model", .string("bert")), tokens], "bert.gguf")?.field == "tokenizer.ggml.model")
    #expect(try ggufError([("tokenizer.ggml.model", .string("llama"))], "notokens.gguf")?.field == "tokenizer.ggml.tokens")
    #expect(try ggufError([("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", .i32s([1, 2]))], "inttokens.gguf")?.field == "tokenizer.ggml.tokens")
    #expect(try ggufError([("tokenizer.ggml.model", .string("llama")), tokens, ("tokenizer.ggml.token_type", .i32s([1]))], "types.gguf")?.field == "tokenizer.ggml.token_type")
    #expect(try ggufError([("tokenizer.ggml.model", .string("llama")), tokens, ("tokenizer.ggml.scores", .f32s([0]))], "scores.gguf")?.field == "tokenizer.ggml.scores")
    #expect(try ggufError([("tokenizer.ggml.model", .string("gpt2")), tokens], "nomerges.gguf")?.field == "tokenizer.ggml.merges")
    #expect(try ggufError([("tokenizer.ggml.model", .string("gpt2")), tokens, ("tokenizer.ggml.merges", .strings(["ab"]))], "badmerge.gguf")?.field == "tokenizer.ggml.merges")
    #expect(try ggufError([("tokenizer.ggml.model", .string("llama")), tokens, ("tokenizer.ggml.bos_token_id", .u32(99))], "bos.gguf")?.field == "tokenizer.ggml.bos_token_id")
    #expect(try ggufError([("tokenizer.ggml.model", .string("llama")), tokens, ("tokenizer.chat_template", .u32(1))], "template.gguf")?.field == "tokenizer.chat_template")
    // The fixture GGUF of metadata types has no tokenizer.
    #expect(throws: TokenizerError.self) { try Tokenizer(gguf: GGUFFile(path: Fixtures.path("gguf-types.gguf"))) }
    // A truncated GGUF fails in the reader.
    let whole = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-llama-f32.gguf")))
    let cut = try TestFiles.write("cut.gguf", bytes: [UInt8](whole.prefix(20_000)))
    #expect(throws: CheckpointError.self) { try Tokenizer(gguf: GGUFFile(path: cut)) }
}

@Test func storedTemplateProblemsFallBackWithANote() throws {
    let tokenizerJSON = try String(contentsOfFile: Fixtures.path("bytelevel/tokenizer.json"), encoding: .utf8)
    _ = try TestFiles.write("badtemplate/tokenizer_config.json", #"{"eos_token": "<|im_end|>", "chat_template": "{% for m in messages %}{{ m.content }"}"#)
    let t = try Tokenizer(tokenizerJSONAt: try TestFiles.write("badtemplate/tokenizer.json", tokenizerJSON))
    let m = [ChatMessage(role: "user", content: "hi")]
    let p = try t.applyChatTemplate(m)
    #expect(p.text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    #expect(p.note?.contains("ChatML") == true)
    // A template that parses but uses a filter this interpreter lacks also falls back.
    _ = try TestFiles.write("oddfilter/tokenizer_config.json", #"{"chat_template": "{{ messages|frobnicate }}"}"#)
    let u = try Tokenizer(tokenizerJSONAt: try TestFiles.write("oddfilter/tokenizer.json", tokenizerJSON))
    let q = try u.applyChatTemplate(m)
    #expect(q.text.hasPrefix("<|im_start|>user") && q.note?.contains("frobnicate") == true)
    // No stored template: the fallback for a SentencePiece vocabulary is Llama 2.
    let sp = try String(contentsOfFile: Fixtures.path("tiny-llama/tokenizer.json"), encoding: .utf8)
    let s = try Tokenizer(tokenizerJSONAt: try TestFiles.write("notemplate/tokenizer.json", sp))
    let r = try s.applyChatTemplate(m)
    #expect(r.text == "<s>[INST] hi [/INST]" && r.note != nil)
}
