// Sliding-window attention (Mistral's sliding_window; Qwen2's use_sliding_window with
// max_window_layers) against last-row logits from transformers (Tests/Fixtures/sliding-window,
// scripts/make_window_fixtures.py), fed in the goldens' chunks through one cache.
import Checkpoints
import Compute
import CPUCompute
import Foundation
import Models
import TestFixtures
import Testing

@Suite struct SlidingWindowTests {
    static func model(_ name: String, weights source: String) throws -> LlamaModel {
        let config = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("sliding-window/\(name)/config.json"))
        let weights = try LoadedCheckpoint.open(Fixtures.path(source)).weights
        return try LlamaModel(config: config, weights: weights, backend: CPUBackend(exactQuantizedMath: true))
    }

    @Test(arguments: [("mistral", "tiny-llama", [6, 6]), ("qwen2", "tiny-qwen2", [0, 5])])
    func logitsMatchTransformers(name: String, source: String, windows: [Int]) throws {
        let model = try Self.model(name, weights: source)
        #expect(model.config.slidingWindows == windows)
        let root = try Fixtures.json("sliding-window/logits.json")
        for c in root[name] as! [[String: Any]] {
            let ids = (c["ids"] as! [NSNumber]).map(\.int32Value), chunks = (c["chunks"] as! [NSNumber]).map(\.intValue)
            let want = (c["last_logits"] as! [NSNumber]).map(\.floatValue)
            let got = try allLogits(model, ids, chunks: chunks).last!
            let err = zip(got, want).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            #expect(err < 1e-4, "\(name): \(ids.count) tokens in chunks \(chunks): max |logit difference| \(err)")
        }
    }

    @Test func configFieldsAreReadAsTransformersReadsThem() throws {
        func windows(_ edit: [String: Any], base: String = "tiny-qwen2") throws -> [Int] {
            var o = try Fixtures.json("\(base)/config.json")
            for (k, v) in edit { o[k] = v }
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-window-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let file = dir.appendingPathComponent("config.json")
            try JSONSerialization.data(withJSONObject: o).write(to: file)
            return try TransformerConfig(huggingFaceConfigAt: file.path).slidingWindows
        }
        // Qwen2.5's shipped configs: a window and max_window_layers, but use_sliding_window false.
        #expect(try windows(["use_sliding_window": false, "sliding_window": 32768, "max_window_layers": 21]) == [])
        // layer_types wins over max_window_layers.
        #expect(try windows(["use_sliding_window": true, "sliding_window": 4, "max_window_layers": 0,
                             "layer_types": ["sliding_attention", "full_attention"]]) == [4, 0])
        // Llama has no window, whatever the file says; Mistral's null window is none.
        #expect(try windows(["sliding_window": 4], base: "tiny-llama") == [])
        #expect(try windows(["model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": NSNull()],
                            base: "tiny-llama") == [])
        #expect(throws: CheckpointError.self) {
            try windows(["model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": -3], base: "tiny-llama")
        }
        #expect(throws: CheckpointError.self) {
            try windows(["use_sliding_window": true, "sliding_window": 4, "layer_types": ["sliding_attention", "chunked_attention"]])
        }
    }

    /// Engine folders keep the windows: the config.json Petrel writes reads back the same.
    @Test(arguments: ["mistral", "qwen2"])
    func windowsSurviveTheConfigWriter(name: String) throws {
        let config = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("sliding-window/\(name)/config.json"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-window-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("config.json")
        try JSONSerialization.data(withJSONObject: config.huggingFaceJSON()).write(to: file)
        #expect(try TransformerConfig(huggingFaceConfigAt: file.path).slidingWindows == config.slidingWindows)
    }
}
