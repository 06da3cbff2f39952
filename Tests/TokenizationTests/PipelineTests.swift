// Pipelines without a fixture of their own, against HF tokenizers (PipelineGoldens.swift):
// - llama3 / qwen2: SmolLM2's first 6000 tokens and the merges among them, with the Llama-3
//   (ignore_merges) or Qwen2 (NFC) Split regex then ByteLevel(use_regex: false), as those
//   models' tokenizer.json files have it;
// - metaspaceFirst / metaspaceAlways: tiny-llama's vocabulary with the non-legacy Metaspace
//   pre-tokenizer (prepend_scheme first / always), the latter also with the Metaspace decoder.
// The goldens were made with tokenizers 0.23.3 by building these same tokenizer.json files in
// Python (tokenizers.Tokenizer with BPE(vocab, merges, ignore_merges), pre_tokenizers.Split(Regex(...),
// "isolated"), pre_tokenizers.ByteLevel(use_regex=False), normalizers.NFC(), pre_tokenizers.Metaspace).
import Checkpoints
import Foundation
import TestFixtures
import Testing
@testable import Tokenization

private let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
private let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

private func writeJSON(_ name: String, _ object: Any) throws -> String {
    let data = try JSONSerialization.data(withJSONObject: object)
    return try TestFiles.write(name, bytes: [UInt8](data))
}

/// SmolLM2's first tokens, the merges among them and its control tokens, read once.
private let smolSubset = Result { () throws -> (vocab: [String: Int], merges: [String], added: [(id: Int, content: String)]) in
    let md = try Fixtures.smolLM2File.get().metadata
    let tokens = Array(md["tokenizer.ggml.tokens"]!.stringArray!.prefix(pipelineVocabularyLimit))
    let types = md["tokenizer.ggml.token_type"]!.intArray!
    var vocab: [String: Int] = [:]
    for (i, t) in tokens.enumerated() { vocab[t] = i }
    let merges = md["tokenizer.ggml.merges"]!.stringArray!.filter { m in
        guard let (l, r) = splitMerge(m) else { return false }
        return vocab[l] != nil && vocab[r] != nil && vocab[l + r] != nil
    }
    let added = tokens.indices.filter { types[$0] == 3 }.map { (id: $0, content: tokens[$0]) }
    return (vocab, merges, added)
}

/// A byte-level tokenizer.json over the SmolLM2 subset, with a Split regex pre-tokenizer.
private func smolSubsetTokenizer(_ name: String, regex: String, ignoreMerges: Bool, nfc: Bool) throws -> Tokenizer {
    let (vocab, merges, control) = try smolSubset.get()
    let added: [[String: Any]] = control.map {
        ["id": $0.id, "content": $0.content, "special": true, "normalized": false, "lstrip": false, "rstrip": false, "single_word": false]
    }
    let json: [String: Any] = [
        "version": "1.0",
        "added_tokens": added,
        "normalizer": nfc ? ["type": "NFC"] as Any : NSNull(),
        "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
            ["type": "Split", "pattern": ["Regex": regex], "behavior": "Isolated", "invert": false],
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false],
        ]],
        "post_processor": NSNull(),
        "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
        "model": ["type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": ignoreMerges, "byte_fallback": false,
                  "fuse_unk": false, "unk_token": NSNull(), "dropout": NSNull()],
    ]
    return try Tokenizer(tokenizerJSONAt: try writeJSON("\(name)/tokenizer.json", json))
}

/// tiny-llama's tokenizer.json with the non-legacy Metaspace layout.
private func metaspaceTokenizer(_ name: String, scheme: String, metaspaceDecoder: Bool) throws -> Tokenizer {
    let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-llama/tokenizer.json")))
    var json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
    json["normalizer"] = NSNull()
    json["pre_tokenizer"] = ["type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": scheme, "split": false]
    if metaspaceDecoder {
        json["decoder"] = ["type": "Sequence", "decoders": [
            ["type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": scheme, "split": false],
            ["type": "ByteFallback"], ["type": "Fuse"],
        ]]
    }
    return try Tokenizer(tokenizerJSONAt: try writeJSON("\(name)/tokenizer.json", json))
}

@Test func pipelinesMatchTokenizers() throws {
    let tokenizers: [(String, Tokenizer)] = [
        ("llama3", try smolSubsetTokenizer("llama3", regex: llama3Regex, ignoreMerges: true, nfc: false)),
        ("qwen2", try smolSubsetTokenizer("qwen2", regex: qwen2Regex, ignoreMerges: false, nfc: true)),
        ("metaspaceFirst", try metaspaceTokenizer("metaspaceFirst", scheme: "first", metaspaceDecoder: false)),
        ("metaspaceAlways", try metaspaceTokenizer("metaspaceAlways", scheme: "always", metaspaceDecoder: true)),
    ]
    var failures: [String] = []
    for (name, t) in tokenizers {
        #expect(t.notes.isEmpty, "\(name): \(t.notes)")
        for g in pipelineGoldens {
            let expected = g.ids[name]!, decoded = g.decoded[name]!
            let ids = t.encode(g.text, addSpecialTokens: false)
            if ids != expected { failures.append("\(name) encode \(g.text.debugDescription): got \(ids), expected \(expected)") }
            let text = t.decode(expected)
            if text != decoded { failures.append("\(name) decode \(expected): got \(text.debugDescription), expected \(decoded.debugDescription)") }
            var d = t.makeDetokenizer()
            let streamed = expected.map { d.append($0) }.joined() + d.finish()
            if streamed != decoded { failures.append("\(name) incremental \(expected): got \(streamed.debugDescription)") }
        }
    }
    #expect(failures.isEmpty, "\(failures.count) failures:\n\(failures.prefix(20).joined(separator: "\n"))")
}
