// ModelBundle: a checkpoint opened with its model and tokenizer — what a command or a
// served model needs to turn text into text.
import Checkpoints
import Compute
import Foundation
import Models
import Tokenization

public final class ModelBundle: Sendable {
    public let checkpoint: LoadedCheckpoint
    public let model: any CausalLM
    public let tokenizer: Tokenizer

    public convenience init(path: String, backend: ComputeBackend, quantization: WeightQuantization? = nil) throws {
        try self.init(path: path) {
            try LlamaModel(config: $0.config, weights: $0.weights, backend: backend, quantization: quantization)
        }
    }

    /// `makeModel` builds the model from the opened checkpoint (a sharded model, for instance).
    public init(path: String, makeModel: (LoadedCheckpoint) throws -> any CausalLM) throws {
        checkpoint = try LoadedCheckpoint.open(path)
        model = try makeModel(checkpoint)
        if let gguf = checkpoint.gguf {
            tokenizer = try Tokenizer(gguf: gguf)
        } else {
            tokenizer = try Tokenizer(contentsOf: path)
        }
        if tokenizer.vocabularySize > checkpoint.config.vocabularySize {
            throw CheckpointError(path, "the tokenizer has \(tokenizer.vocabularySize) tokens but the model's vocabulary is \(checkpoint.config.vocabularySize)")
        }
    }

    /// Token ids that end generation: the tokenizer's stop ids and the config's eos ids.
    public var stopIDs: Set<Int32> {
        tokenizer.stopIDs.union(checkpoint.config.eosTokenIDs.map(Int32.init))
    }
}
