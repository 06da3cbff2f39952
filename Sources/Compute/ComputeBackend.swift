// ComputeBackend: the operations a Llama-family forward pass needs. Models are written only
// against this protocol; CPUCompute is the reference implementation every other backend is
// tested against, op by op. Activations are float32 (n tokens × features) unless stated.

import Foundation

/// One sequence's slice of a ragged batch, as attention sees it.
public struct AttentionSequence: Sendable, Equatable {
    /// First row of this sequence in the batch's activations.
    public var tokenBegin: Int
    /// New tokens of this sequence in this step (a prefill chunk or 1 for a decode).
    public var tokenCount: Int
    /// Tokens already in the KV cache before this step.
    public var contextBefore: Int
    /// The sequence's KV-cache blocks, in order; must cover contextBefore + tokenCount.
    public var blockTable: [Int32]

    public init(tokenBegin: Int, tokenCount: Int, contextBefore: Int, blockTable: [Int32]) {
        self.tokenBegin = tokenBegin
        self.tokenCount = tokenCount
        self.contextBefore = contextBefore
        self.blockTable = blockTable
    }
}

/// Shape of a paged KV cache: per layer, K and V of (blockCount, blockSize, kvHeads, headDim).
public struct KVCacheLayout: Sendable, Equatable {
    public var layerCount: Int
    public var blockCount: Int
    public var blockSize: Int
    public var kvHeadCount: Int
    public var headDim: Int

    public init(layerCount: Int, blockCount: Int, blockSize: Int, kvHeadCount: Int, headDim: Int) {
        self.layerCount = layerCount
        self.blockCount = blockCount
        self.blockSize = blockSize
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
    }

    /// Bytes of one block across all layers, K and V, at 4 bytes per element.
    public var bytesPerBlock: Int { 2 * layerCount * blockSize * kvHeadCount * headDim * 4 }
}

public protocol KVCache: AnyObject, Sendable {
    var layout: KVCacheLayout { get }
}

public protocol ComputeBackend: AnyObject, Sendable {
    var name: String { get }
    /// GGML block types (GGUF) whose matrices this backend multiplies as they are; every other
    /// block matrix reaches it converted to a .w8 / .w4 weight-only matrix, which every backend runs.
    var nativeBlockTypes: Set<DType> { get }

    /// Whether `matmul` takes .e4m3 weights (FP8 W8A8, FP8.swift). A backend that leaves the
    /// default (false) is never given one: loading refuses them (LlamaStage.checkFP8).
    var multipliesFP8: Bool { get }

    /// Copies (or adopts) a weight; quantized types stay quantized.
    func upload(_ host: HostTensor) throws -> Tensor
    /// A float32 activation tensor of the given shape (contents undefined).
    func makeActivation(_ shape: [Int]) -> Tensor
    func makeKVCache(_ layout: KVCacheLayout) throws -> KVCache
    /// The tensor's values as float32, row-major.
    func download(_ tensor: Tensor) -> [Float]

    /// out (ids.count, dim) = rows `ids` of table (vocab, dim).
    func embed(_ ids: [Int32], table: Tensor, into out: Tensor)
    /// out = x * rsqrt(mean(x²) + eps) * weight, row by row. out may be x.
    func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into out: Tensor)
    /// out (n, m) = x (n, k) · w (m, k)ᵀ [+ bias (m)].
    func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor)
    /// Rotate-half RoPE, in place, on the first `headCount` heads of every row of x.
    func rope(_ x: Tensor, headCount: Int, headDim: Int, positions: [Int32], inverseFrequencies: [Float])
    /// Whether `ropePerSequence` works here. A backend that leaves the default (false) is never
    /// given a model whose frequencies depend on the sequence length (dynamic NTK, LongRoPE).
    var rotatesPerSequence: Bool { get }
    /// `rope` with frequencies of each sequence's own: the rows of sequences[i] turn by
    /// inverseFrequencies[i] (headDim / 2 values each).
    func ropePerSequence(_ x: Tensor, headCount: Int, headDim: Int, positions: [Int32], sequences: [AttentionSequence],
                         inverseFrequencies: [[Float]])
    /// Writes new K/V (from the fused qkv rows) into the cache, then causal attention over
    /// each sequence's context. qkv (n, (heads + 2 kvHeads) headDim) → out (n, heads headDim).
    func attention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, cache: KVCache, layer: Int,
                   sequences: [AttentionSequence], scale: Float, into out: Tensor)
    /// Whether `attention(..., window:)` works here. A backend that leaves the default (false) is
    /// never given a model with sliding-window layers (Mistral, Qwen2 with use_sliding_window).
    var attendsWithinWindows: Bool { get }
    /// `attention` where a query at position p sees only keys p - window + 1 ... p (window > 0).
    func attention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, cache: KVCache, layer: Int,
                   sequences: [AttentionSequence], scale: Float, window: Int, into out: Tensor)
    /// out (n, f) = silu(gateUp[:, :f]) * gateUp[:, f:].
    func swiglu(_ gateUp: Tensor, into out: Tensor)
    /// accumulator += x, elementwise.
    func add(_ x: Tensor, into accumulator: Tensor)
    /// out (rows.count, d) = the given rows of x (n, d).
    func gatherRows(_ x: Tensor, rows: [Int], into out: Tensor)
    /// `columns` made ready for gatherColumns, once, at load (a device backend uploads it); every
    /// entry is >= 0. Throws what `upload` throws.
    func makeColumnOrder(_ columns: [Int32]) throws -> ColumnOrder
    /// out (n, order.count) = the columns of x (n, d) in `order` (made by this backend's
    /// makeColumnOrder): out[:, j] = x[:, order.columns[j]], d >= order.inputWidth. The input of a
    /// matrix whose columns are kept in another order (GPTQ act-order). out is not x. Enqueued like
    /// any op: nothing comes from the host, so a StepRecording step may hold it.
    func gatherColumns(_ x: Tensor, order: ColumnOrder, into out: Tensor)
    /// Copies KV block `from` to block `to` in every layer (copy-on-write when beams fork).
    func copyKVBlock(_ cache: KVCache, from: Int, to: Int)
    /// The first failure of this backend's operations since the last call (a device error, an
    /// activation it could not allocate), or nil. Operations never trap on a device failure: the
    /// first is kept, and until it is taken later operations do nothing (downloads read zeros).
    /// A recoverable fault is forgotten once taken; a lost context is returned by every call.
    /// A backend that cannot fail (the CPU) never has one.
    func takeFault() -> DeviceFault?

    // Fused operations. Each has a default made of the operations above (the extension below),
    // so a backend implements them only where fusing pays.

    /// out (n, f) = silu(x · gateᵀ) * (x · upᵀ), gateUp (2f, k) holding the gate rows then the up rows.
    func matmulSwiGLU(_ x: Tensor, gateUp: Tensor, into out: Tensor)
    /// out = rmsNorm(x) · weightᵀ (+ bias). `normed` (x's shape, not x) is scratch the backend may
    /// overwrite with rmsNorm(x) on the way.
    func rmsNormMatmul(_ x: Tensor, norm: Tensor, eps: Float, weight: Tensor, bias: Tensor?, normed: Tensor, into out: Tensor)
    /// matmulSwiGLU of rmsNorm(x); `normed` as in rmsNormMatmul.
    func rmsNormMatmulSwiGLU(_ x: Tensor, norm: Tensor, eps: Float, gateUp: Tensor, normed: Tensor, into out: Tensor)
    /// accumulator += x · weightᵀ.
    func matmulAdd(_ x: Tensor, weight: Tensor, into accumulator: Tensor)
    /// `rope` on the query and key heads, then `attention`.
    func ropeAttention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, positions: [Int32],
                       inverseFrequencies: [Float], cache: KVCache, layer: Int, sequences: [AttentionSequence],
                       scale: Float, into out: Tensor)
}

/// A column order (GPTQ act-order) made ready once, at load, by the backend that gathers with it
/// (ComputeBackend.makeColumnOrder): `columns` on the host, and `storage` where that backend reads
/// them (its device memory; nil for a backend that reads `columns`).
public final class ColumnOrder: Sendable {
    /// out[:, j] = x[:, columns[j]].
    public let columns: [Int32]
    /// The narrowest input the order fits: max(columns) + 1.
    public let inputWidth: Int
    /// Backend-specific storage (the backend that made the order downcasts it).
    public let storage: (any AnyObject & Sendable)?

    public init(columns: [Int32], storage: (any AnyObject & Sendable)? = nil) {
        precondition(columns.allSatisfy { $0 >= 0 }, "a column order has a negative column")
        self.columns = columns
        self.inputWidth = Int(columns.max() ?? -1) + 1
        self.storage = storage
    }

    /// Columns of the gathered output.
    public var count: Int { columns.count }
}

/// A device failure seen during a step: the step's requests fail with `message`.
public struct DeviceFault: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// The device context cannot be used again (a sticky CUDA error): every later step fails
    /// too, and the model must be loaded anew.
    public var contextLost: Bool

    public init(_ message: String, contextLost: Bool = false) {
        self.message = message
        self.contextLost = contextLost
    }

    public var description: String { "device fault: \(message)" + (contextLost ? " (the device context is lost)" : "") }
}

extension ComputeBackend {
    public var nativeBlockTypes: Set<DType> { [] }
    public var rotatesPerSequence: Bool { false }
    public var multipliesFP8: Bool { false }
    public func ropePerSequence(_ x: Tensor, headCount: Int, headDim: Int, positions: [Int32], sequences: [AttentionSequence],
                                inverseFrequencies: [[Float]]) {
        preconditionFailure("the \(name) backend does not rotate with frequencies per sequence (rotatesPerSequence is false)")
    }
    public func takeFault() -> DeviceFault? { nil }
    public var attendsWithinWindows: Bool { false }
    public func attention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, cache: KVCache, layer: Int,
                          sequences: [AttentionSequence], scale: Float, window: Int, into out: Tensor) {
        precondition(window <= 0, "the \(name) backend does not attend within sliding windows (attendsWithinWindows is false)")
        attention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: headDim, cache: cache, layer: layer,
                  sequences: sequences, scale: scale, into: out)
    }

    /// The order kept on the host only, for a backend that gathers from `columns` (the CPU).
    public func makeColumnOrder(_ columns: [Int32]) throws -> ColumnOrder { ColumnOrder(columns: columns) }

    public func rmsNormMatmul(_ x: Tensor, norm: Tensor, eps: Float, weight: Tensor, bias: Tensor?, normed: Tensor,
                              into out: Tensor) {
        rmsNorm(x, weight: norm, eps: eps, into: normed)
        matmul(normed, weight: weight, bias: bias, into: out)
    }

    public func rmsNormMatmulSwiGLU(_ x: Tensor, norm: Tensor, eps: Float, gateUp: Tensor, normed: Tensor, into out: Tensor) {
        rmsNorm(x, weight: norm, eps: eps, into: normed)
        matmulSwiGLU(normed, gateUp: gateUp, into: out)
    }

    public func matmulAdd(_ x: Tensor, weight: Tensor, into accumulator: Tensor) {
        let product = makeActivation([x.rowCount, weight.rowCount])
        matmul(x, weight: weight, bias: nil, into: product)
        add(product, into: accumulator)
    }

    public func matmulSwiGLU(_ x: Tensor, gateUp: Tensor, into out: Tensor) {
        let product = makeActivation([x.rowCount, gateUp.rowCount])
        matmul(x, weight: gateUp, bias: nil, into: product)
        swiglu(product, into: out)
    }

    public func ropeAttention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, positions: [Int32],
                              inverseFrequencies: [Float], cache: KVCache, layer: Int, sequences: [AttentionSequence],
                              scale: Float, into out: Tensor) {
        rope(qkv, headCount: headCount + kvHeadCount, headDim: headDim, positions: positions,
             inverseFrequencies: inverseFrequencies)
        attention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: headDim, cache: cache,
                  layer: layer, sequences: sequences, scale: scale, into: out)
    }
}

/// One change the sampler makes to one logit before choosing (penalties and masks), computed on
/// the host from the request's history and applied where the logits are:
/// masked → -inf; else v → (v > 0 ? v / repetition : v * repetition) when repetition != 1, then
/// v − subtract. fp32 math in this order, the same on every backend and in the host sampler.
public struct LogitEdit: Sendable, Equatable {
    public var row: Int32
    public var id: Int32
    public var repetition: Float
    public var subtract: Float
    public var masked: Bool

    public init(row: Int32, id: Int32, repetition: Float = 1, subtract: Float = 0, masked: Bool = false) {
        self.row = row
        self.id = id
        self.repetition = repetition
        self.subtract = subtract
        self.masked = masked
    }

    /// The edited value of logit `v`.
    @inlinable public func apply(_ v: Float) -> Float {
        if masked { return -.infinity }
        var x = v
        if repetition != 1 { x = x > 0 ? x / repetition : x * repetition }
        if subtract != 0 { x -= subtract }
        return x
    }
}

/// A backend that can choose tokens where the logits are, so a step's logits need not be copied
/// to the host (the CUDA backend). The Runtime uses it for rows whose sampling needs only their
/// best few logits.
public protocol DeviceTokenSelection: AnyObject {
    /// For each row of `logits` (rows, vocab), after `edits` (at most one per row and id): its
    /// `count` largest entries, largest first (ties: the lower id first), and the row's
    /// log(sum(exp(logits / temperature))) with that row's temperature (`temperatures` empty: 1
    /// for every row). `logits` itself is left as it was.
    func topCandidates(_ logits: Tensor, count: Int, temperatures: [Float], edits: [LogitEdit])
        -> (ids: [Int32], values: [Float], logSumExp: [Float])
}

/// The host's answer to DeviceTokenSelection.topCandidates over float logits: what a device must
/// reproduce (the GPU self-test compares against it) and the selection of test backends.
public enum TokenSelectionReference {
    /// The `count` largest of `row` with their indices within it, largest first; ties: the
    /// lower index first (the order every sampler and device follows).
    @inlinable
    public static func best<C: Collection<Float>>(_ row: C, count: Int) -> [(Float, Int32)] {
        var best: [(Float, Int32)] = []
        best.reserveCapacity(count + 1)
        for (j, v) in row.enumerated() {
            if best.count == count && !(v > best[count - 1].0) { continue }
            var k = best.count
            if best.count < count { best.append((v, Int32(j))) } else { k = count - 1 }
            while k > 0 && best[k - 1].0 < v { best[k] = best[k - 1]; k -= 1 }
            best[k] = (v, Int32(j))
        }
        return best
    }

    public static func topCandidates(_ logits: [Float], rows: Int, vocab: Int, count: Int, temperatures: [Float],
                                     edits: [LogitEdit]) -> (ids: [Int32], values: [Float], logSumExp: [Float]) {
        precondition(logits.count == rows * vocab && count >= 1 && count <= vocab)
        var edited = logits
        for e in edits {
            precondition(Int(e.row) < rows && e.id >= 0 && Int(e.id) < vocab, "edit outside the logits")
            let i = Int(e.row) * vocab + Int(e.id)
            edited[i] = e.apply(edited[i])
        }
        var ids: [Int32] = [], values: [Float] = [], lse: [Float] = []
        for r in 0..<rows {
            let row = edited[(r * vocab)..<((r + 1) * vocab)]
            let best = Self.best(row, count: count)
            ids += best.map(\.1)
            values += best.map(\.0)
            let invT = temperatures.isEmpty ? 1 : 1 / temperatures[r]
            let m = best[0].0
            if m.isFinite {
                var sum: Double = 0
                for v in row { sum += exp(Double((v - m) * invT)) }
                lse.append(m * invT + Float(log(sum)))
            } else {
                lse.append(m)
            }
        }
        return (ids, values, lse)
    }
}

/// A backend on a device with its own memory (the CUDA backend): the KV cache is sized from what
/// is free after the weights, as TensorRT-LLM does with kv_cache_free_gpu_mem_fraction.
public protocol DeviceMemoryReporting: AnyObject {
    /// Device memory free now, in bytes.
    func freeMemoryBytes() throws -> Int
    /// Bytes per element of the KV cache this backend makes.
    var kvCacheBytesPerElement: Int { get }
}

/// What a StepRecording backend asks of the caller for one decode step.
public enum StepRecordingAction: Sendable, Equatable {
    /// The step was replayed from its recording: enqueue nothing.
    case replayed
    /// Enqueue the step's operations (they are run, or recorded and then run), then `endStep`.
    case enqueue
    /// Not a step the backend records: run it as usual.
    case ineligible
}

/// A backend that records a decode step's chain of operations once per shape and replays it for
/// later steps (CUDA graphs). The caller opens a step with its inputs, enqueues the step's
/// operations only when asked, on the same buffers every time for the same `owner`, and closes it.
public protocol StepRecording: AnyObject {
    /// Opens a decode step: one new token per sequence (sequence i at row i), logits wanted for
    /// `rows`. Between this and `endStep`, `embed`, `gatherRows` and the attention calls must be
    /// given these same values.
    func beginStep(owner: UInt64, tokens: [Int32], positions: [Int32], sequences: [AttentionSequence], layout: KVCacheLayout,
                   headCount: Int, kvHeadCount: Int, headDim: Int, inverseFrequencies: [Float], rows: [Int]) -> StepRecordingAction
    /// Closes a step opened with `.enqueue`; true when nothing ran and the caller must enqueue the
    /// same operations once more, then call `endStep` again.
    func endStep() -> Bool
    /// Forgets every recording (before the buffers an owner recorded with are freed).
    func clearStepRecordings()
}
