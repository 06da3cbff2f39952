// LlamaModel: a Llama-family model (Llama 2/3, TinyLlama, SmolLM2, Mistral, Qwen2) on one
// backend; its forward pass over one ragged batch is LlamaStage's layer loop.
import Compute
import Checkpoints
import Foundation

/// One step's input: the new tokens of several sequences, back to back.
public struct ForwardBatch: Sendable {
    /// New token ids of all sequences, sequence after sequence.
    public var tokens: [Int32]
    /// Position of each token in its sequence.
    public var positions: [Int32]
    /// Where each sequence's tokens are and which KV blocks it reads and writes.
    public var sequences: [AttentionSequence]
    /// Rows (indices into tokens) whose logits are wanted, usually each sequence's last.
    public var logitRows: [Int]

    public init(tokens: [Int32], positions: [Int32], sequences: [AttentionSequence], logitRows: [Int]) {
        self.tokens = tokens
        self.positions = positions
        self.sequences = sequences
        self.logitRows = logitRows
    }
}

/// The whole model on one backend: one LlamaStage with every layer, the embedding and the head.
public final class LlamaModel: Sendable {
    public let config: TransformerConfig
    /// The layer loop and the weights, unsharded.
    public let stage: LlamaStage
    public var backend: ComputeBackend { stage.backend }
    /// Bytes of weights read by one decode step (every matrix once, the embedding row aside).
    public var weightBytes: Int { stage.weightBytes }

    /// `quantization`: the checkpoint's float matrices quantized at load (--quantization).
    public init(config: TransformerConfig, weights: LlamaWeights, backend: ComputeBackend,
                quantization: WeightQuantization? = nil, progress: LoadProgress = .none) throws {
        self.config = config
        stage = try LlamaStage(config: config, weights: LlamaStageWeights(whole: weights, config: config), backend: backend,
                               quantization: quantization, progress: progress)
        useLock = backend is StepRecording ? NSLock() : nil
    }

    /// Random weights made on the backend itself (LlamaStage.init(config:randomWeightsOn:seed:format:)),
    /// the layers' matrices weight-only in `format` when given.
    public init(config c: TransformerConfig, randomWeightsOn backend: RandomWeightFilling, seed: UInt64 = 1,
                format: WeightOnlyFormat? = nil) throws {
        config = c
        stage = try LlamaStage(config: c, randomWeightsOn: backend, seed: seed, format: format)
        useLock = backend is StepRecording ? NSLock() : nil
    }

    public func kvCacheLayout(blockCount: Int, blockSize: Int) -> KVCacheLayout {
        stage.kvCacheLayout(blockCount: blockCount, blockSize: blockSize)
    }

    /// One step at a time, on a StepRecording backend (ModelRunner takes it through `withExclusiveUse`).
    private let useLock: NSLock?

    /// Runs `body` while no other caller runs this model (model instances sharing it, each with its
    /// own runner thread): a StepRecording backend's device context takes one caller at a time,
    /// from a step's beginStep to its endStep and the use of its logits.
    public func withExclusiveUse<T>(_ body: () throws -> T) rethrows -> T {
        guard let lock = useLock else { return try body() }
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Runs the batch, writing its K/V into `cache`; returns logits (logitRows.count, vocab), in
    /// fresh buffers. (Runtime's DecodeStepGraphs runs decode steps on buffers it keeps instead.)
    public func forward(_ batch: ForwardBatch, cache: KVCache) -> Tensor {
        precondition(!batch.tokens.isEmpty && batch.positions.count == batch.tokens.count)
        let a = stage.makeActivations(tokens: batch.tokens.count, rows: batch.logitRows.count)
        stage.enqueue(batch, cache: cache, on: a)
        return a.logits!
    }
}
