// LlamaModel: the Llama-family forward pass (Llama 2/3, TinyLlama, SmolLM2, Mistral, Qwen2)
// over one ragged batch, written only against ComputeBackend.
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

public final class LlamaModel: Sendable {
    struct Layer {
        let attentionNorm: Tensor   // (hidden)
        let qkv: Tensor             // ((heads + 2 kvHeads) headDim, hidden)
        let qkvBias: Tensor?
        let output: Tensor          // (hidden, heads headDim)
        let ffnNorm: Tensor         // (hidden)
        let gateUp: Tensor          // (2 intermediate, hidden)
        let down: Tensor            // (hidden, intermediate)
    }

    public let config: TransformerConfig
    public let backend: ComputeBackend
    let embedding: Tensor           // (vocab, hidden)
    let layers: [Layer]
    let finalNorm: Tensor           // (hidden)
    let head: Tensor                // (vocab, hidden)
    let inverseFrequencies: [Float] // (headDim / 2)
    /// Bytes of weights read by one decode step (every matrix once, the embedding row aside).
    public let weightBytes: Int

    public init(config: TransformerConfig, weights: LlamaWeights, backend: ComputeBackend) throws {
        self.config = config
        self.backend = backend
        useLock = backend is StepRecording ? NSLock() : nil
        embedding = try backend.upload(weights.embedding)
        layers = try weights.layers.map {
            Layer(attentionNorm: try backend.upload($0.attentionNorm), qkv: try backend.upload($0.qkv),
                  qkvBias: try $0.qkvBias.map { try backend.upload($0) }, output: try backend.upload($0.output),
                  ffnNorm: try backend.upload($0.ffnNorm), gateUp: try backend.upload($0.gateUp), down: try backend.upload($0.down))
        }
        finalNorm = try backend.upload(weights.finalNorm)
        head = try backend.upload(weights.head)
        inverseFrequencies = config.ropeInverseFrequencies()
        weightBytes = weights.layers.reduce(0) { $0 + $1.qkv.bytes.count + $1.output.bytes.count + $1.gateUp.bytes.count + $1.down.bytes.count }
            + weights.head.bytes.count
    }

    /// Random weights made on the backend itself (nothing generated or copied on the host), for
    /// speed measurements of a built-in shape: matrices uniform in ±0.05, norms 1, fp16 bytes.
    public init(config c: TransformerConfig, randomWeightsOn backend: RandomWeightFilling, seed: UInt64 = 1) throws {
        self.config = c
        self.backend = backend
        useLock = backend is StepRecording ? NSLock() : nil
        var next = seed &* 0x9E37_79B9_7F4A_7C15
        func matrix(_ rows: Int, _ cols: Int) throws -> Tensor {
            next = next &+ 0x632B_E59B_D9B4_E019
            return try backend.makeRandomWeight(shape: [rows, cols], seed: next, amplitude: 0.05)
        }
        let ones = try backend.upload(.float32([Float](repeating: 1, count: c.hiddenSize), shape: [c.hiddenSize]))
        let qkvRows = (c.headCount + 2 * c.kvHeadCount) * c.headDim
        let bias = c.attentionBias ? try backend.upload(.float32([Float](repeating: 0, count: qkvRows), shape: [qkvRows])) : nil
        layers = try (0..<c.layerCount).map { _ in
            Layer(attentionNorm: ones, qkv: try matrix(qkvRows, c.hiddenSize), qkvBias: bias,
                  output: try matrix(c.hiddenSize, c.headCount * c.headDim), ffnNorm: ones,
                  gateUp: try matrix(2 * c.intermediateSize, c.hiddenSize), down: try matrix(c.hiddenSize, c.intermediateSize))
        }
        embedding = try matrix(c.vocabularySize, c.hiddenSize)
        finalNorm = ones
        head = c.tieEmbeddings ? embedding : try matrix(c.vocabularySize, c.hiddenSize)
        inverseFrequencies = c.ropeInverseFrequencies()
        let layerElements = qkvRows * c.hiddenSize + c.hiddenSize * c.headCount * c.headDim + 3 * c.intermediateSize * c.hiddenSize
        weightBytes = 2 * (c.layerCount * layerElements + c.vocabularySize * c.hiddenSize)
    }

    public func kvCacheLayout(blockCount: Int, blockSize: Int) -> KVCacheLayout {
        KVCacheLayout(layerCount: config.layerCount, blockCount: blockCount, blockSize: blockSize,
                      kvHeadCount: config.kvHeadCount, headDim: config.headDim)
    }

    /// One forward pass's activations: n rows each, `rows` rows for the head.
    struct Activations {
        let x, h, qkv, attn, act, last, logits: Tensor

        /// Fresh tensors from the backend.
        init(_ b: ComputeBackend, _ c: TransformerConfig, n: Int, rows: Int) {
            x = b.makeActivation([n, c.hiddenSize])         // residual stream
            h = b.makeActivation([n, c.hiddenSize])         // normed input (scratch of the fused norms)
            qkv = b.makeActivation([n, (c.headCount + 2 * c.kvHeadCount) * c.headDim])
            attn = b.makeActivation([n, c.headCount * c.headDim])
            act = b.makeActivation([n, c.intermediateSize])
            last = b.makeActivation([rows, c.hiddenSize])
            logits = b.makeActivation([rows, c.vocabularySize])
        }

        /// The first n (and `rows`) rows of `full`, on the same storage.
        init(viewing full: Activations, n: Int, rows: Int) {
            func view(_ t: Tensor, _ r: Int) -> Tensor { Tensor(dtype: t.dtype, shape: [r, t.rowLength], storage: t.storage) }
            x = view(full.x, n); h = view(full.h, n); qkv = view(full.qkv, n); attn = view(full.attn, n); act = view(full.act, n)
            last = view(full.last, rows); logits = view(full.logits, rows)
        }
    }

    /// Decode steps a StepRecording backend replays (CUDA graphs) run on these buffers, the same
    /// for every step, sized for `stepCapacity` rows (grown to the next power of two; each growth
    /// is a new `stepGeneration`, so recordings of the old buffers are never asked for again).
    private struct StepBuffers {
        var buffers: Activations?
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
                    state.buffers = Activations(backend, config, n: capacity, rows: capacity)
                    state.capacity = capacity
                    state.generation += 1
                }
                switch action {
                case .replayed:
                    return Activations(viewing: state.buffers!, n: n, rows: rows).logits
                case .enqueue:
                    let a = Activations(viewing: state.buffers!, n: n, rows: rows)
                    repeat { run(batch, cache: cache, a) } while recorder.endStep()
                    return a.logits
                case .ineligible:
                    return nil
                }
            }
            if let logits { return logits }
        }
        let a = Activations(backend, config, n: n, rows: batch.logitRows.count)
        run(batch, cache: cache, a)
        return a.logits
    }

    /// Enqueues the forward pass on `a`'s buffers.
    private func run(_ batch: ForwardBatch, cache: KVCache, _ a: Activations) {
        let b = backend, c = config
        let (x, h, qkv, attn, act) = (a.x, a.h, a.qkv, a.attn, a.act)
        let scale = 1 / Float(c.headDim).squareRoot()
        let eps = Float(c.rmsNormEps)

        // x is the residual stream. Each RMSNorm is fused with the matmul after it (rmsNormMatmul:
        // for a few rows the GPU's GEMV normalises its own copy, no norm kernel; h is scratch) and
        // each residual add with the matmul before it (matmulAdd).
        b.embed(batch.tokens, table: embedding, into: x)
        for (i, layer) in layers.enumerated() {
            b.rmsNormMatmul(x, norm: layer.attentionNorm, eps: eps, weight: layer.qkv, bias: layer.qkvBias, normed: h, into: qkv)
            b.ropeAttention(qkv: qkv, headCount: c.headCount, kvHeadCount: c.kvHeadCount, headDim: c.headDim,
                            positions: batch.positions, inverseFrequencies: inverseFrequencies,
                            cache: cache, layer: i, sequences: batch.sequences, scale: scale, into: attn)
            b.matmulAdd(attn, weight: layer.output, into: x)
            b.rmsNormMatmulSwiGLU(x, norm: layer.ffnNorm, eps: eps, gateUp: layer.gateUp, normed: h, into: act)
            b.matmulAdd(act, weight: layer.down, into: x)
        }
        b.rmsNorm(x, weight: finalNorm, eps: eps, into: h)
        // h now holds every row through the final norm; the head runs on the wanted rows only.
        b.gatherRows(h, rows: batch.logitRows, into: a.last)
        b.matmul(a.last, weight: head, bias: nil, into: a.logits)
    }
}
