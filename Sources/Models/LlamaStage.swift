// LlamaStage: the Llama-family layer loop, the one place the forward pass is written. A stage is
// a contiguous run of the model's layers on one backend, with the embedding when it comes first
// and the final norm and head when it comes last, optionally cut for one rank of a
// tensor-parallel group (then a Collective sums the row-parallel matmuls' partial outputs, as
// Megatron and nano-vllm do). LlamaModel is the whole model as one stage; Parallel runs one per rank.
import Checkpoints
import Compute

/// A stage's weights on the host, already cut for its shard (Parallel's sharding makes them per
/// rank; `init(whole:config:)` is the unsharded model).
public struct LlamaStageWeights: Sendable {
    /// The model's layers the stage runs; its KV cache numbers them from 0.
    public var layerRange: Range<Int>
    /// One per layer of `layerRange`, with this shard's shapes (q, k, f below).
    public var layers: [LlamaLayerWeights]
    /// This shard's query heads (q), KV heads (k) and FFN features (f); the model's own when unsharded.
    public var headCount: Int
    public var kvHeadCount: Int
    public var featureCount: Int
    /// The token ids whose embedding and head rows this shard holds: the whole vocabulary, or
    /// one tensor rank's slice of it.
    public var vocabulary: Range<Int>
    /// First stage only: (vocabulary.count, hidden) rows, then one zero row when `vocabulary` is
    /// a slice (every id outside it looks that row up, so the ranks' lookups sum to the embedding).
    public var embedding: HostTensor?
    /// Last stage only.
    public var finalNorm: HostTensor?      // (hidden)
    public var head: HostTensor?           // (vocabulary.count, or the slice padded to equal slices, hidden)

    public init(layerRange: Range<Int>, layers: [LlamaLayerWeights], headCount: Int, kvHeadCount: Int, featureCount: Int,
                vocabulary: Range<Int>, embedding: HostTensor?, finalNorm: HostTensor?, head: HostTensor?) {
        precondition(layers.count == layerRange.count && (finalNorm == nil) == (head == nil))
        self.layerRange = layerRange
        self.layers = layers
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.featureCount = featureCount
        self.vocabulary = vocabulary
        self.embedding = embedding
        self.finalNorm = finalNorm
        self.head = head
    }

    /// The whole model, unsharded, as one stage.
    public init(whole w: LlamaWeights, config c: TransformerConfig) {
        self.init(layerRange: 0..<w.layers.count, layers: w.layers, headCount: c.headCount, kvHeadCount: c.kvHeadCount,
                  featureCount: c.intermediateSize, vocabulary: 0..<c.vocabularySize, embedding: w.embedding,
                  finalNorm: w.finalNorm, head: w.head)
    }
}

/// The buffers of one forward pass through a stage, on its backend: n token rows and `rows`
/// logit rows (q, k, f: the stage's shard's counts).
public struct LlamaActivations: Sendable {
    /// (n, hidden): the residual stream. A stage without the embedding starts from what the
    /// caller wrote here; after the stage it holds the stage's output.
    public let x: Tensor
    let h: Tensor                  // (n, hidden): scratch of the fused norms and of the group sums
    let qkv: Tensor                // (n, (q + 2k) headDim)
    let attn: Tensor               // (n, q headDim)
    let act: Tensor                // (n, f)
    /// (n, max(hidden, q headDim)): a matmul's input in the order of its weight's columns, for
    /// layers with input orders (GPTQ act-order); nil when the stage has none.
    let gathered: Tensor?
    let last: Tensor?              // (rows, hidden): the wanted rows through the final norm
    let localLogits: Tensor?       // (rows, head rows): this rank's slice; `logits` itself when unsharded
    /// Last stage only: (rows, logitWidth), the logits of the batch's logitRows.
    public let logits: Tensor?

    init(x: Tensor, h: Tensor, qkv: Tensor, attn: Tensor, act: Tensor, gathered: Tensor?, last: Tensor?, localLogits: Tensor?,
         logits: Tensor?) {
        self.x = x
        self.h = h
        self.qkv = qkv
        self.attn = attn
        self.act = act
        self.gathered = gathered
        self.last = last
        self.localLogits = localLogits
        self.logits = logits
    }

    /// The first n token rows and `rows` logit rows of these buffers, on the same storage (a
    /// caller that keeps buffers sized for the largest step runs smaller steps on them).
    public func prefix(tokens n: Int, rows: Int) -> LlamaActivations {
        func view(_ t: Tensor, _ r: Int) -> Tensor {
            precondition(r <= t.rowCount, "prefix: \(r) rows of a tensor of \(t.rowCount)")
            return Tensor(dtype: t.dtype, shape: [r, t.rowLength], storage: t.storage)
        }
        let logits = self.logits.map { view($0, rows) }
        return LlamaActivations(x: view(x, n), h: view(h, n), qkv: view(qkv, n), attn: view(attn, n), act: view(act, n),
                                gathered: gathered.map { view($0, n) }, last: last.map { view($0, rows) },
                                localLogits: localLogits === self.logits ? logits : localLogits.map { view($0, rows) },
                                logits: logits)
    }
}

public final class LlamaStage: Sendable {
    /// One layer's weights on the backend, shapes for the stage's shard.
    struct Layer: Sendable {
        let attentionNorm: Tensor   // (hidden)
        let qkv: Tensor             // ((q + 2k) headDim, hidden)
        let qkvBias: Tensor?        // ((q + 2k) headDim)
        let output: Tensor          // (hidden, q headDim)
        let ffnNorm: Tensor         // (hidden)
        let gateUp: Tensor          // (2f, hidden): gate rows then up rows
        let down: Tensor            // (hidden, f)
        /// Column orders of qkv, output and gateUp (LlamaLayerWeights), made ready on the backend;
        /// nil: the input's order.
        var qkvInputOrder: ColumnOrder? = nil
        var outputInputOrder: ColumnOrder? = nil
        var gateUpInputOrder: ColumnOrder? = nil

        var hasInputOrders: Bool { qkvInputOrder != nil || outputInputOrder != nil || gateUpInputOrder != nil }
    }

    public let config: TransformerConfig
    public let backend: ComputeBackend
    /// The model's layers this stage runs; its KV cache holds them as layers 0..<count.
    public let layerRange: Range<Int>
    /// This shard's query heads, KV heads and FFN features (the model's own when unsharded).
    public let headCount: Int
    public let kvHeadCount: Int
    public let featureCount: Int
    /// Token ids of this shard's embedding and head rows.
    let vocabulary: Range<Int>
    let layers: [Layer]
    let embedding: Tensor?          // first stage: (vocabulary.count [+ 1 zero row], hidden)
    let finalNorm: Tensor?          // last stage: (hidden)
    let head: Tensor?               // last stage: (head rows, hidden)
    /// RoPE inverse frequencies of a sequence within the trained context (headDim / 2); a model
    /// whose frequencies depend on the length (config.ropeDependsOnSequenceLength) computes each
    /// step's own.
    public let inverseFrequencies: [Float] // (headDim / 2)
    /// The softmax scale: 1 / sqrt(headDim), times the square of the RoPE attention factor (YaRN,
    /// LongRoPE multiply cos and sin, so both the rotated query and key, by it).
    let attentionScale: Float
    /// This rank's member of its tensor-parallel group; nil when the stage is not sharded.
    let collective: Collective?
    /// Bytes of weights read by one decode step (every matrix once, the embedding row aside).
    public let weightBytes: Int

    init(config: TransformerConfig, backend: ComputeBackend, layerRange: Range<Int>, headCount: Int, kvHeadCount: Int,
         featureCount: Int, vocabulary: Range<Int>, layers: [Layer], embedding: Tensor?, finalNorm: Tensor?, head: Tensor?,
         collective: Collective?, weightBytes: Int) {
        precondition(layers.count == layerRange.count && (finalNorm == nil) == (head == nil))
        precondition(collective != nil || vocabulary == 0..<config.vocabularySize, "a stage cut by vocabulary needs its group's collective")
        self.config = config
        self.backend = backend
        self.layerRange = layerRange
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.featureCount = featureCount
        self.vocabulary = vocabulary
        self.layers = layers
        self.embedding = embedding
        self.finalNorm = finalNorm
        self.head = head
        self.collective = collective
        self.weightBytes = weightBytes
        inverseFrequencies = config.ropeInverseFrequencies()
        let factor = config.ropeAttentionFactor
        attentionScale = 1 / Float(config.headDim).squareRoot() * Float(factor * factor)
    }

    /// Refuses a model `backend` cannot rotate as the checkpoint asks.
    static func checkRope(_ config: TransformerConfig, on backend: ComputeBackend) throws {
        if config.ropeDependsOnSequenceLength && !backend.rotatesPerSequence {
            throw BackendLimitation("rope_scaling \"\(config.ropeScaling!.typeName)\" makes the RoPE frequencies depend on each "
                + "sequence's length, which the \(backend.name) backend does not do (it rotates a step with one table): "
                + "run this model on the CPU")
        }
        if let w = config.slidingWindows.first(where: { $0 > 0 }), !backend.attendsWithinWindows {
            throw BackendLimitation("this model attends within a sliding window of \(w) tokens (sliding_window), which the "
                + "\(backend.name) backend's attention kernels do not do yet: run this model on the CPU")
        }
    }

    /// Refuses FP8 matrices (asked for, or the checkpoint's) on a backend without FP8 GEMMs: no
    /// silent fallback to another precision.
    public static func checkFP8(quantization: WeightQuantization?, weights: [HostTensor], on backend: ComputeBackend) throws {
        guard !backend.multipliesFP8 else { return }
        if quantization == .fp8 {
            throw BackendLimitation("--quantization fp8: the \(backend.name) backend has no FP8 kernels yet; run with --device cpu, "
                + "or use int8_wo / int4_wo")
        }
        if weights.contains(where: { $0.fp8 != nil }) {
            throw BackendLimitation("this checkpoint's matrices are FP8 (E4M3): the \(backend.name) backend has no FP8 kernels yet; "
                + "run with --device cpu")
        }
    }

    /// Uploads `weights` to `backend`, each matrix prepared by `prepareMatrix` (quantized when
    /// `quantization` asks). `collective` is this rank's member of its tensor-parallel group (nil:
    /// not sharded); every rank of the group must run the same batches together.
    public convenience init(config: TransformerConfig, weights w: LlamaStageWeights, backend: ComputeBackend,
                            quantization: WeightQuantization? = nil, collective: Collective? = nil, progress: LoadProgress = .none) throws {
        try Self.checkRope(config, on: backend)
        try Self.checkFP8(quantization: quantization, weights: w.layers.flatMap { [$0.qkv, $0.output, $0.gateUp, $0.down] },
                          on: backend)
        func matrix(_ m: HostTensor, _ name: String) throws -> Tensor {
            try backend.upload(try prepareMatrix(m, quantization: quantization, nativeBlockTypes: backend.nativeBlockTypes, name: name))
        }
        func order(_ columns: [Int32]?) throws -> ColumnOrder? { try columns.map { try backend.makeColumnOrder($0) } }
        let layers = try w.layers.enumerated().map { i, l in
            let at = " of layer \(w.layerRange.lowerBound + i)"
            let layer = Layer(attentionNorm: try backend.upload(l.attentionNorm), qkv: try matrix(l.qkv, "qkv" + at),
                         qkvBias: try l.qkvBias.map { try backend.upload($0) }, output: try matrix(l.output, "output" + at),
                         ffnNorm: try backend.upload(l.ffnNorm), gateUp: try matrix(l.gateUp, "gate/up" + at),
                         down: try matrix(l.down, "down" + at), qkvInputOrder: try order(l.qkvInputOrder),
                         outputInputOrder: try order(l.outputInputOrder), gateUpInputOrder: try order(l.gateUpInputOrder))
            progress.step(i + 1, of: w.layers.count)
            return layer
        }
        // The head keeps its precision under --quantization (as TensorRT-LLM and vLLM leave
        // lm_head alone); a GGML head the backend does not run natively still converts.
        let head = try w.head.map {
            try backend.upload(try prepareMatrix($0, quantization: nil, nativeBlockTypes: backend.nativeBlockTypes, name: "head"))
        }
        let bytes = layers.reduce(0) { $0 + $1.qkv.byteCount + $1.output.byteCount + $1.gateUp.byteCount + $1.down.byteCount }
            + (head?.byteCount ?? 0)
        self.init(config: config, backend: backend, layerRange: w.layerRange, headCount: w.headCount, kvHeadCount: w.kvHeadCount,
                  featureCount: w.featureCount, vocabulary: w.vocabulary, layers: layers,
                  embedding: try w.embedding.map { try backend.upload(Self.prepareTable($0)) },
                  finalNorm: try w.finalNorm.map { try backend.upload($0) }, head: head, collective: collective, weightBytes: bytes)
    }

    /// The embedding table: GGML types beyond Q8_0 / Q4_0 / Q4_1 are looked up as floats.
    static func prepareTable(_ t: HostTensor) -> HostTensor {
        [.q8_0, .q4_0, .q4_1].contains(t.dtype) || !t.dtype.isQuantized ? t : t.toFloat32()
    }

    /// The whole model with random weights made on the backend itself (nothing generated or
    /// copied on the host), for speed measurements of a built-in shape: matrices uniform in
    /// ±0.05, norms 1, the backend's element type; with `format`, the layers' matrices (qkv,
    /// output, gate/up, down) are random weight-only matrices of that format instead (the
    /// embedding and the head keep the element type, as a quantized checkpoint's do).
    public convenience init(config c: TransformerConfig, randomWeightsOn backend: RandomWeightFilling, seed: UInt64 = 1,
                            format: WeightOnlyFormat? = nil) throws {
        try Self.checkRope(c, on: backend)
        var next = seed &* 0x9E37_79B9_7F4A_7C15
        func matrix(_ rows: Int, _ cols: Int, _ format: WeightOnlyFormat? = nil) throws -> Tensor {
            next = next &+ 0x632B_E59B_D9B4_E019
            if let format { return try backend.makeRandomWeightOnly(shape: [rows, cols], format: format, seed: next, amplitude: 0.05) }
            return try backend.makeRandomWeight(shape: [rows, cols], seed: next, amplitude: 0.05)
        }
        let ones = try backend.upload(.float32([Float](repeating: 1, count: c.hiddenSize), shape: [c.hiddenSize]))
        let qkvRows = (c.headCount + 2 * c.kvHeadCount) * c.headDim
        let bias = c.attentionBias ? try backend.upload(.float32([Float](repeating: 0, count: qkvRows), shape: [qkvRows])) : nil
        let layers = try (0..<c.layerCount).map { _ in
            Layer(attentionNorm: ones, qkv: try matrix(qkvRows, c.hiddenSize, format), qkvBias: bias,
                  output: try matrix(c.hiddenSize, c.headCount * c.headDim, format), ffnNorm: ones,
                  gateUp: try matrix(2 * c.intermediateSize, c.hiddenSize, format),
                  down: try matrix(c.hiddenSize, c.intermediateSize, format))
        }
        let embedding = try matrix(c.vocabularySize, c.hiddenSize)
        let head = c.tieEmbeddings ? embedding : try matrix(c.vocabularySize, c.hiddenSize)
        let bytes = layers.reduce(0) { $0 + $1.qkv.byteCount + $1.output.byteCount + $1.gateUp.byteCount + $1.down.byteCount }
            + head.byteCount
        self.init(config: c, backend: backend, layerRange: 0..<c.layerCount, headCount: c.headCount, kvHeadCount: c.kvHeadCount,
                  featureCount: c.intermediateSize, vocabulary: 0..<c.vocabularySize, layers: layers, embedding: embedding,
                  finalNorm: ones, head: head, collective: nil, weightBytes: bytes)
    }

    /// Columns of the logits: the head's rows times the group's ranks (the vocabulary, then
    /// each slice's padding when the head is cut by vocabulary).
    public var logitWidth: Int { (head?.rowCount ?? 0) * (collective?.size ?? 1) }

    /// The shape of this stage's KV cache: its layers and its shard's KV heads.
    public func kvCacheLayout(blockCount: Int, blockSize: Int) -> KVCacheLayout {
        KVCacheLayout(layerCount: layerRange.count, blockCount: blockCount, blockSize: blockSize,
                      kvHeadCount: kvHeadCount, headDim: config.headDim)
    }

    /// Fresh buffers for a pass of `tokens` token rows and `rows` logit rows (contents undefined).
    public func makeActivations(tokens n: Int, rows: Int) -> LlamaActivations {
        let b = backend, c = config
        let logits = head.map { _ in b.makeActivation([rows, logitWidth]) }
        let gathered = layers.contains { $0.hasInputOrders } ? b.makeActivation([n, max(c.hiddenSize, headCount * c.headDim)]) : nil
        return LlamaActivations(
            x: b.makeActivation([n, c.hiddenSize]), h: b.makeActivation([n, c.hiddenSize]),
            qkv: b.makeActivation([n, (headCount + 2 * kvHeadCount) * c.headDim]), attn: b.makeActivation([n, headCount * c.headDim]),
            act: b.makeActivation([n, featureCount]), gathered: gathered, last: head.map { _ in b.makeActivation([rows, c.hiddenSize]) },
            localLogits: collective == nil ? logits : head.map { b.makeActivation([rows, $0.rowCount]) }, logits: logits)
    }

    /// Enqueues the stage's part of the batch's forward pass on `a` (sized for the batch: its
    /// tokens and logitRows), writing the batch's K/V of the stage's layers into `cache` (made
    /// for this stage's layout). The first stage embeds batch.tokens into a.x, others start from
    /// a.x as the caller wrote it; the last stage leaves the logits of batch.logitRows in a.logits.
    /// Every rank of a sharded stage's group must enqueue the same batch at the same time.
    public func enqueue(_ batch: ForwardBatch, cache: KVCache, on a: LlamaActivations) {
        let b = backend, c = config
        let (x, h, qkv, attn, act) = (a.x, a.h, a.qkv, a.attn, a.act)
        precondition(x.rowCount == batch.tokens.count && batch.positions.count == batch.tokens.count)
        let scale = attentionScale
        let eps = Float(c.rmsNormEps)
        // Length-dependent RoPE (dynamic NTK, LongRoPE): each sequence's table for its highest
        // position + 1, as transformers picks one for max(position_ids) + 1; nil when one table
        // serves the whole batch.
        var frequencies = inverseFrequencies
        var perSequence: [[Float]]?
        if c.ropeDependsOnSequenceLength {
            let tables = batch.sequences.map { s in
                let rows = batch.positions[s.tokenBegin..<s.tokenBegin + s.tokenCount]
                return c.ropeInverseFrequencies(sequenceLength: Int(rows.max() ?? 0) + 1)
            }
            if let first = tables.first, tables.allSatisfy({ $0 == first }) { frequencies = first } else { perSequence = tables }
        }

        // x is the residual stream. Each RMSNorm is fused with the matmul after it (rmsNormMatmul:
        // for a few rows the GPU's GEMV normalises its own copy, no norm kernel; h is scratch) and
        // each residual add with the row-parallel matmul before it (addRowParallel). A matrix with
        // an input order (GPTQ act-order) reads its input's columns in that order: norm, gather
        // into a.gathered, then the matmul.
        func inOrder(_ t: Tensor, _ order: ColumnOrder?) -> Tensor {
            guard let order, let g = a.gathered else { return t }
            let out = Tensor(dtype: g.dtype, shape: [t.rowCount, order.count], storage: g.storage)
            b.gatherColumns(t, order: order, into: out)
            return out
        }
        if let embedding {
            b.embed(localTokenIDs(batch.tokens), table: embedding, into: x)
            collective?.allReduceSum(x)
        }
        for (i, layer) in layers.enumerated() {
            if layer.qkvInputOrder == nil {
                b.rmsNormMatmul(x, norm: layer.attentionNorm, eps: eps, weight: layer.qkv, bias: layer.qkvBias, normed: h, into: qkv)
            } else {
                b.rmsNorm(x, weight: layer.attentionNorm, eps: eps, into: h)
                b.matmul(inOrder(h, layer.qkvInputOrder), weight: layer.qkv, bias: layer.qkvBias, into: qkv)
            }
            let window = c.slidingWindow(layer: layerRange.lowerBound + i)
            if let perSequence {
                b.ropePerSequence(qkv, headCount: headCount + kvHeadCount, headDim: c.headDim, positions: batch.positions,
                                  sequences: batch.sequences, inverseFrequencies: perSequence)
                b.attention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: c.headDim, cache: cache,
                            layer: i, sequences: batch.sequences, scale: scale, window: window, into: attn)
            } else if window > 0 {
                b.rope(qkv, headCount: headCount + kvHeadCount, headDim: c.headDim, positions: batch.positions,
                       inverseFrequencies: frequencies)
                b.attention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: c.headDim, cache: cache,
                            layer: i, sequences: batch.sequences, scale: scale, window: window, into: attn)
            } else {
                b.ropeAttention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: c.headDim,
                                positions: batch.positions, inverseFrequencies: frequencies,
                                cache: cache, layer: i, sequences: batch.sequences, scale: scale, into: attn)
            }
            addRowParallel(inOrder(attn, layer.outputInputOrder), weight: layer.output, into: x, scratch: h)
            if layer.gateUpInputOrder == nil {
                b.rmsNormMatmulSwiGLU(x, norm: layer.ffnNorm, eps: eps, gateUp: layer.gateUp, normed: h, into: act)
            } else {
                b.rmsNorm(x, weight: layer.ffnNorm, eps: eps, into: h)
                b.matmulSwiGLU(inOrder(h, layer.gateUpInputOrder), gateUp: layer.gateUp, into: act)
            }
            addRowParallel(act, weight: layer.down, into: x, scratch: h)
        }
        guard let finalNorm, let head, let last = a.last, let local = a.localLogits, let logits = a.logits else { return }
        b.rmsNorm(x, weight: finalNorm, eps: eps, into: h)
        // h now holds every row through the final norm; the head runs on the wanted rows only.
        b.gatherRows(h, rows: batch.logitRows, into: last)
        b.matmul(last, weight: head, bias: nil, into: local)
        // Cut by vocabulary: each rank has its slice of every row; the group puts them side by side.
        collective?.allGather(local, into: logits)
    }

    /// accumulator += x · weightᵀ for a row-parallel weight (the output and down projections).
    /// Sharded, each rank's product is partial: the group sums it in `scratch` before the add.
    private func addRowParallel(_ x: Tensor, weight: Tensor, into accumulator: Tensor, scratch: Tensor) {
        guard let collective else {
            backend.matmulAdd(x, weight: weight, into: accumulator)
            return
        }
        backend.matmul(x, weight: weight, bias: nil, into: scratch)
        collective.allReduceSum(scratch)
        backend.add(scratch, into: accumulator)
    }

    /// Token ids as rows of this shard's embedding: ids outside its slice look up the zero row.
    private func localTokenIDs(_ ids: [Int32]) -> [Int32] {
        if vocabulary == 0..<config.vocabularySize { return ids }
        let lo = Int32(vocabulary.lowerBound), hi = Int32(vocabulary.upperBound), zero = Int32(vocabulary.count)
        return ids.map { $0 >= lo && $0 < hi ? $0 - lo : zero }
    }
}

/// A model the chosen backend cannot run as its checkpoint asks (found at load).
public struct BackendLimitation: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
