// LlamaModel: a Llama-family model (Llama 2/3, TinyLlama, SmolLM2, Mistral, Qwen2) on one
// backend; its forward pass over one ragged batch is LlamaStage's layer loop.
import Compute
import Checkpoints
import Foundation
import Synchronization

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
    var inverseFrequencies: [Float] { stage.inverseFrequencies }

    public init(config: TransformerConfig, weights: LlamaWeights, backend: ComputeBackend) throws {
        self.config = config
        stage = try LlamaStage(config: config, weights: LlamaStageWeights(whole: weights, config: config), backend: backend)
        useLock = backend is StepRecording ? NSLock() : nil
    }

    /// Random weights made on the backend itself (LlamaStage.init(config:randomWeightsOn:seed:)).
    public init(config c: TransformerConfig, randomWeightsOn backend: RandomWeightFilling, seed: UInt64 = 1) throws {
        config = c
        stage = try LlamaStage(config: c, randomWeightsOn: backend, seed: seed)
        useLock = backend is StepRecording ? NSLock() : nil
    }

    public func kvCacheLayout(blockCount: Int, blockSize: Int) -> KVCacheLayout {
        stage.kvCacheLayout(blockCount: blockCount, blockSize: blockSize)
    }

    /// Decode steps a StepRecording backend replays (CUDA graphs) run on these buffers, the same
    /// for every step, sized for `stepCapacity` rows (grown to the next power of two; each growth
    /// is a new `stepGeneration`, so recordings of the old buffers are never asked for again).
    private struct StepBuffers {
        var buffers: LlamaActivations?
        var capacity = 0
        var generation = 0
    }
    private let step = Mutex(StepBuffers())
    /// One forward pass and the use of its logits at a time, on a backend with one stream and
    /// step recordings (ModelRunner takes it through `withExclusiveUse`).
    private let useLock: NSLock?

    deinit {
        if step.withLock({ $0.buffers != nil }), let recorder = backend as? StepRecording { recorder.clearStepRecordings() }
    }

    /// Runs `body` while no other caller runs this model (model instances sharing it, each with its
    /// own runner thread): on a StepRecording backend a decode step's logits live in buffers the
    /// next step reuses, and the device context takes one caller at a time.
    public func withExclusiveUse<T>(_ body: () throws -> T) rethrows -> T {
        guard let lock = useLock else { return try body() }
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Runs the batch, writing its K/V into `cache`; returns logits (logitRows.count, vocab). The
    /// logits of a decode step on a StepRecording backend stay valid until the next forward pass.
    public func forward(_ batch: ForwardBatch, cache: KVCache) -> Tensor {
        let n = batch.tokens.count
        precondition(n > 0 && batch.positions.count == n)
        if let recorder = backend as? StepRecording, batch.sequences.count == n, batch.sequences.enumerated().allSatisfy({ $1.tokenBegin == $0 && $1.tokenCount == 1 }) {
            let logits: Tensor? = step.withLock { state in
                let rows = batch.logitRows.count
                // The buffers are made only when the backend takes the step; growing them starts a new
                // generation. A recording holds the buffers' and the cache's addresses (the model and
                // the cache clear the recordings when they go), so (model, generation, cache) names them.
                let grows = n > state.capacity
                // Recordings of the buffers about to be replaced go first (clearing after beginStep
                // would also forget that this step warmed its shape up).
                if grows && state.buffers != nil { recorder.clearStepRecordings() }
                var hasher = Hasher()
                hasher.combine(ObjectIdentifier(self))
                hasher.combine(grows ? state.generation + 1 : state.generation)
                hasher.combine(ObjectIdentifier(cache))
                let owner = UInt64(UInt(bitPattern: hasher.finalize()))
                let action = recorder.beginStep(owner: owner, tokens: batch.tokens, positions: batch.positions, sequences: batch.sequences,
                                                layout: cache.layout, headCount: config.headCount, kvHeadCount: config.kvHeadCount,
                                                headDim: config.headDim, inverseFrequencies: inverseFrequencies, rows: batch.logitRows)
                if action != .ineligible && grows {
                    // (.replayed cannot happen here: nothing was recorded under the new generation.)
                    var capacity = 1
                    while capacity < n { capacity *= 2 }
                    state.buffers = stage.makeActivations(tokens: capacity, rows: capacity)
                    state.capacity = capacity
                    state.generation += 1
                }
                switch action {
                case .replayed:
                    return state.buffers!.prefix(tokens: n, rows: rows).logits!
                case .enqueue:
                    let a = state.buffers!.prefix(tokens: n, rows: rows)
                    repeat { stage.enqueue(batch, cache: cache, on: a) } while recorder.endStep()
                    return a.logits!
                case .ineligible:
                    return nil
                }
            }
            if let logits { return logits }
        }
        let a = stage.makeActivations(tokens: n, rows: batch.logitRows.count)
        stage.enqueue(batch, cache: cache, on: a)
        return a.logits!
    }
}
