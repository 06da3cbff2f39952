// ModelLoader: opens a checkpoint (a GGUF file or a Hugging Face folder) and builds the model.
import Compute
import Checkpoints
import Foundation

public enum CheckpointFormat: String, Sendable { case gguf, huggingFace, engine }

public struct LoadedCheckpoint: Sendable {
    public let path: String
    public let format: CheckpointFormat
    public let config: TransformerConfig
    public let weights: LlamaWeights
    /// The GGUF file when the checkpoint is one (its metadata holds the tokenizer).
    public let gguf: GGUFFile?

    /// The checkpoint's own types of its layer matrices: "F16", "Q4_1, Q6_K", "int4 group 128 with zero points".
    public var quantizationSummary: String {
        let types = Set(weights.layers.flatMap { [$0.qkv, $0.output, $0.gateUp, $0.down] }.map { $0.weightOnly.map { "\($0)" } ?? $0.fp8.map { $0.inputScale == nil ? "fp8 dynamic" : "fp8 static" } ?? "\($0.dtype)" })
        return types.sorted().joined(separator: ", ")
    }

    public static func open(_ path: String) throws -> LoadedCheckpoint {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CheckpointError(path, "no such file or directory")
        }
        if isDir.boolValue {
            let configPath = path + "/config.json"
            guard FileManager.default.fileExists(atPath: configPath) else {
                throw CheckpointError(path, "a Hugging Face checkpoint folder needs config.json")
            }
            if try EngineFolder.version(ofConfigAt: configPath) != nil {
                let config = try TransformerConfig(huggingFaceConfigAt: configPath)
                return LoadedCheckpoint(path: path, format: .engine, config: config,
                                        weights: try LlamaWeights(engine: try SafetensorsCheckpoint(directory: path), config: config), gguf: nil)
            }
            let config = try TransformerConfig(huggingFaceConfigAt: configPath)
            let source = try SafetensorsCheckpoint(directory: path)
            return LoadedCheckpoint(path: path, format: .huggingFace, config: config,
                                    weights: try LlamaWeights(huggingFace: source, config: config), gguf: nil)
        }
        let gguf = try GGUFFile(path: path)
        let config = try TransformerConfig(gguf: gguf)
        return LoadedCheckpoint(path: path, format: .gguf, config: config,
                                weights: try LlamaWeights(gguf: gguf, config: config), gguf: gguf)
    }
}
