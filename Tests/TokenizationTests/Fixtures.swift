// Shared fixtures for the tokenization tests: each tokenizer is loaded once per test run
// (paths and the model lookup are TestFixtures').
import Checkpoints
import Foundation
import TestFixtures
import Testing
@testable import Tokenization

extension Fixtures {
    /// The SmolLM2 GGUF (Fixtures.smolLM2: $PETREL_MODEL, else the model cache).
    static var smolLM2Path: String { smolLM2 }

    struct MissingModel: Error, CustomStringConvertible {
        let path: String
        var description: String { "SmolLM2 GGUF not found at \(path); run scripts/fetch-model.sh (or set PETREL_MODEL)" }
    }

    static let spJSON = Result { try Tokenizer(tokenizerJSONAt: path("tiny-llama/tokenizer.json")) }
    static let spGGUF = Result { try Tokenizer(gguf: GGUFFile(path: path("tiny-llama-f32.gguf"))) }
    static let byteLevel = Result { try Tokenizer(tokenizerJSONAt: path("bytelevel/tokenizer.json")) }
    static let smolLM2File = Result { () throws -> GGUFFile in
        guard FileManager.default.fileExists(atPath: smolLM2Path) else { throw MissingModel(path: smolLM2Path) }
        return try GGUFFile(path: smolLM2Path)
    }
    static let smolLM2Tokenizer = Result { try Tokenizer(gguf: smolLM2File.get()) }

    struct TokenizerGoldens: Decodable {
        struct Case: Decodable {
            let ids: [Int32]
            let decoded: String
            let ids_with_bos: [Int32]?
        }
        struct Entry: Decodable {
            let text: String
            let sp: Case
            let bytelevel: Case
            let smollm2: Case
        }
        let strings: [Entry]
    }

    struct ChatGoldens: Decodable {
        struct Message: Decodable { let role: String; let content: String }
        struct Rendered: Decodable { let text: String; let ids: [Int32] }
        struct Conversation: Decodable {
            let name: String
            let messages: [Message]
            let tiny_llama: Rendered
            let bytelevel: Rendered
            let smollm2: Rendered
        }
        let templates: [String: String]
        let conversations: [Conversation]
    }

    static let tokenizerGoldens = Result { () throws -> TokenizerGoldens in
        let data = try Data(contentsOf: URL(fileURLWithPath: path("tokenizer-goldens.json")))
        return try JSONDecoder().decode(TokenizerGoldens.self, from: data)
    }

    static let chatGoldens = Result { () throws -> ChatGoldens in
        let data = try Data(contentsOf: URL(fileURLWithPath: path("chat-goldens.json")))
        return try JSONDecoder().decode(ChatGoldens.self, from: data)
    }
}
