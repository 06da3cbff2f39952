// CPUBackend: the reference and fast CPU implementation of ComputeBackend, over the C
// kernels in CPUKernels (AVX2/FMA on x86-64) and their thread pool.
import Compute
import CPUKernels

/// Host storage of a CPU tensor: either borrowed bytes kept alive by `owner` (weights
/// mmapped from a checkpoint) or an owned, 64-byte aligned buffer. Unchecked, as device memory
/// is: the pointer never changes, and the bytes are written only by this backend's ops, which a
/// model runs one step at a time.
final class CPUStorage: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int
    let owner: AnyObject?
    private let owned: Bool

    init(byteCount: Int) {
        self.pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 4), alignment: 64)
        self.byteCount = byteCount
        self.owner = nil
        self.owned = true
    }

    init(borrowing bytes: UnsafeRawBufferPointer, owner: AnyObject?) {
        self.pointer = UnsafeMutableRawPointer(mutating: bytes.baseAddress!)
        self.byteCount = bytes.count
        self.owner = owner
        self.owned = false
    }

    deinit { if owned { pointer.deallocate() } }

    var floats: UnsafeMutablePointer<Float> { pointer.assumingMemoryBound(to: Float.self) }
}

/// Sendable as device memory is: the pointers never change, and the blocks behind them are
/// written only by this backend's ops, which a model runs one step at a time.
final class CPUKVCache: KVCache, @unchecked Sendable {
    let layout: KVCacheLayout
    /// Per layer: K then V, each (blocks, blockSize, kvHeads, headDim) float32.
    let keys: [UnsafeMutablePointer<Float>]
    let values: [UnsafeMutablePointer<Float>]

    init(layout: KVCacheLayout) {
        self.layout = layout
        let count = layout.blockCount * layout.blockSize * layout.kvHeadCount * layout.headDim
        keys = (0..<layout.layerCount).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1)); p.initialize(repeating: 0, count: max(count, 1)); return p
        }
        values = (0..<layout.layerCount).map { _ in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1)); p.initialize(repeating: 0, count: max(count, 1)); return p
        }
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }
}

public final class CPUBackend: ComputeBackend {
    public let name = "cpu"
    /// llama.cpp's own formats, multiplied in the mmapped file with integer dot products.
    public let nativeBlockTypes: Set<DType> = [.q8_0, .q4_0, .q4_1]
    /// true: activations stay float32 against quantized weights (the reference path).
    /// false: activations are quantized to 8 bits per block for integer dot products (fast).
    public let exactQuantizedMath: Bool

    public init(exactQuantizedMath: Bool = false, threads: Int = 0) {
        self.exactQuantizedMath = exactQuantizedMath
        pk_set_threads(Int32(threads))
    }

    public var threadCount: Int { Int(pk_get_threads()) }

    /// FP8 W8A8 emulated exactly: E4M3 activations and weights, fp32 sums (FP8.swift).
    public var multipliesFP8: Bool { true }

    private func storage(_ t: Tensor) -> CPUStorage { t.storage as! CPUStorage }
    private func floats(_ t: Tensor) -> UnsafeMutablePointer<Float> {
        precondition(t.dtype == .f32, "expected a float32 activation")
        return storage(t).floats
    }

    public func upload(_ host: HostTensor) throws -> Tensor {
        // Weights stay where they are (mmapped or owned by the HostTensor): zero copy; .w8 / .w4 keep
        // their format and are computed with as they are.
        let s = CPUStorage(borrowing: host.bytes, owner: host.owner)
        return Tensor(dtype: host.dtype, shape: host.shape, storage: s, weightOnly: host.weightOnly, fp8: host.fp8)
    }

    public func makeActivation(_ shape: [Int]) -> Tensor {
        let count = shape.reduce(1, *)
        return Tensor(dtype: .f32, shape: shape, storage: CPUStorage(byteCount: count * 4))
    }

    public func makeKVCache(_ layout: KVCacheLayout) throws -> KVCache { CPUKVCache(layout: layout) }

    public func download(_ tensor: Tensor) -> [Float] {
        let s = storage(tensor)
        if tensor.weightOnly != nil || tensor.fp8 != nil {   // the reference dequantization (tests)
            return HostTensor(dtype: tensor.dtype, shape: tensor.shape, bytes: UnsafeRawBufferPointer(start: s.pointer, count: s.byteCount),
                              owner: s, weightOnly: tensor.weightOnly, fp8: tensor.fp8).floatValues()
        }
        var out = [Float](repeating: 0, count: tensor.elementCount)
        out.withUnsafeMutableBufferPointer { dst in
            let rowLength = tensor.rowLength
            let rb = tensor.dtype.byteCount(elements: rowLength)!
            for r in 0..<tensor.rowCount {
                pk_dequantize_row(Int32(tensor.dtype.rawValue), s.pointer + r * rb, dst.baseAddress! + r * rowLength, Int64(rowLength))
            }
        }
        return out
    }

    public func embed(_ ids: [Int32], table: Tensor, into out: Tensor) {
        precondition(out.rowLength == table.rowLength && out.rowCount >= ids.count)
        precondition(table.weightOnly == nil && table.fp8 == nil, "embed: a \(table.dtype) table is not supported on the CPU; keep embeddings in float")
        ids.withUnsafeBufferPointer {
            pk_embed($0.baseAddress, Int64(ids.count), storage(table).pointer, Int32(table.dtype.rawValue), Int64(table.rowLength), floats(out))
        }
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into out: Tensor) {
        precondition(weight.dtype == .f32 && weight.elementCount == x.rowLength)
        pk_rmsnorm(floats(x), floats(weight), Int64(x.rowCount), Int64(x.rowLength), eps, floats(out))
    }

    public func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) {
        precondition(x.rowLength == weight.rowLength, "matmul: x has \(x.rowLength) columns, weight \(weight.rowLength)")
        precondition(out.rowLength == weight.rowCount && out.rowCount == x.rowCount)
        if let f = weight.weightOnly {
            pk_matmul_wo(floats(x), Int64(x.rowCount), Int64(x.rowLength), storage(weight).pointer, Int32(f.bits), Int64(f.groupSize),
                         f.hasZeros ? 1 : 0, f.rowBytes(columns: weight.rowLength), Int64(weight.rowCount), bias.map { floats($0) },
                         floats(out), exactQuantizedMath ? 1 : 0)
            return
        }
        if let f = weight.fp8 {
            // Activations to E4M3 with Compute's encoder (FP8.swift), then decode · dot · scale in C.
            let n = x.rowCount, k = x.rowLength
            var codes = [Float](repeating: 0, count: n * k), scales = [Float](repeating: 0, count: n)
            codes.withUnsafeMutableBufferPointer { q in
                scales.withUnsafeMutableBufferPointer { s in
                    FP8E4M3.quantizeActivations(floats(x), rows: n, columns: k, inputScale: f.inputScale, codes: q.baseAddress!,
                                                scales: s.baseAddress!)
                    pk_matmul_fp8(q.baseAddress, s.baseAddress, Int64(n), Int64(k), storage(weight).pointer, f.rowBytes(columns: k),
                                  Int64(weight.rowCount), bias.map { floats($0) }, floats(out))
                }
            }
            return
        }
        pk_matmul(floats(x), Int64(x.rowCount), Int64(x.rowLength), storage(weight).pointer, Int32(weight.dtype.rawValue),
                  Int64(weight.rowCount), bias.map { floats($0) }, floats(out), exactQuantizedMath ? 1 : 0)
    }

    public func rope(_ x: Tensor, headCount: Int, headDim: Int, positions: [Int32], inverseFrequencies: [Float]) {
        precondition(positions.count == x.rowCount && inverseFrequencies.count == headDim / 2)
        positions.withUnsafeBufferPointer { pos in
            inverseFrequencies.withUnsafeBufferPointer { inv in
                pk_rope(floats(x), Int64(x.rowCount), Int64(x.rowLength), Int64(headCount), Int64(headDim), pos.baseAddress, inv.baseAddress)
            }
        }
    }

    public var rotatesPerSequence: Bool { true }

    public func ropePerSequence(_ x: Tensor, headCount: Int, headDim: Int, positions: [Int32], sequences: [AttentionSequence],
                                inverseFrequencies: [[Float]]) {
        precondition(positions.count == x.rowCount && inverseFrequencies.count == sequences.count)
        for (s, inv) in zip(sequences, inverseFrequencies) {
            precondition(inv.count == headDim / 2 && s.tokenBegin + s.tokenCount <= x.rowCount)
            positions.withUnsafeBufferPointer { pos in
                inv.withUnsafeBufferPointer { inv in
                    pk_rope(floats(x) + s.tokenBegin * x.rowLength, Int64(s.tokenCount), Int64(x.rowLength), Int64(headCount),
                            Int64(headDim), pos.baseAddress! + s.tokenBegin, inv.baseAddress)
                }
            }
        }
    }

    public func attention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, cache: KVCache, layer: Int,
                          sequences: [AttentionSequence], scale: Float, into out: Tensor) {
        attention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: headDim, cache: cache, layer: layer,
                  sequences: sequences, scale: scale, window: 0, into: out)
    }

    public var attendsWithinWindows: Bool { true }

    public func attention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, cache: KVCache, layer: Int,
                          sequences: [AttentionSequence], scale: Float, window: Int, into out: Tensor) {
        let c = cache as! CPUKVCache
        precondition(qkv.rowLength == (headCount + 2 * kvHeadCount) * headDim)
        for s in sequences {
            precondition(s.blockTable.count * c.layout.blockSize >= s.contextBefore + s.tokenCount, "block table too short")
            precondition(s.blockTable.allSatisfy { $0 >= 0 && Int($0) < c.layout.blockCount }, "block id out of range")
        }
        // One flat copy of all block tables, borrowed by the C structs for the call.
        var flat: [Int32] = []
        var offsets: [Int] = []
        for s in sequences { offsets.append(flat.count); flat.append(contentsOf: s.blockTable) }
        flat.withUnsafeBufferPointer { tb in
            let seqs = sequences.enumerated().map { i, s in
                pk_attn_seq(token_begin: Int64(s.tokenBegin), token_count: Int64(s.tokenCount),
                            context_before: Int64(s.contextBefore), block_table: tb.baseAddress.map { $0 + offsets[i] })
            }
            seqs.withUnsafeBufferPointer { sp in
                pk_attention_window(floats(qkv), Int64(headCount), Int64(kvHeadCount), Int64(headDim),
                                    c.keys[layer], c.values[layer], Int64(c.layout.blockSize),
                                    sp.baseAddress, Int64(sequences.count), scale, Int64(max(window, 0)), floats(out))
            }
        }
    }

    public func swiglu(_ gateUp: Tensor, into out: Tensor) {
        precondition(gateUp.rowLength == 2 * out.rowLength && gateUp.rowCount == out.rowCount)
        pk_swiglu(floats(gateUp), Int64(out.rowCount), Int64(out.rowLength), floats(out))
    }

    public func add(_ x: Tensor, into accumulator: Tensor) {
        precondition(x.elementCount == accumulator.elementCount)
        pk_add(floats(accumulator), floats(x), Int64(x.elementCount))
    }

    public func copyKVBlock(_ cache: KVCache, from: Int, to: Int) {
        let c = cache as! CPUKVCache
        let l = c.layout
        precondition(from >= 0 && from < l.blockCount && to >= 0 && to < l.blockCount)
        let blockFloats = l.blockSize * l.kvHeadCount * l.headDim
        for layer in 0..<l.layerCount {
            (c.keys[layer] + to * blockFloats).update(from: c.keys[layer] + from * blockFloats, count: blockFloats)
            (c.values[layer] + to * blockFloats).update(from: c.values[layer] + from * blockFloats, count: blockFloats)
        }
    }

    public func gatherRows(_ x: Tensor, rows: [Int], into out: Tensor) {
        let d = x.rowLength
        let src = floats(x), dst = floats(out)
        for (i, r) in rows.enumerated() { (dst + i * d).update(from: src + r * d, count: d) }
    }

    /// The order is read from its host copy (the default makeColumnOrder).
    public func gatherColumns(_ x: Tensor, order: ColumnOrder, into out: Tensor) {
        let n = x.rowCount, d = x.rowLength, k = order.count
        precondition(out.rowCount == n && out.rowLength == k, "gatherColumns: out is \(out.shape), expected [\(n), \(k)]")
        precondition(d >= order.inputWidth, "gatherColumns: an order of columns up to \(order.inputWidth - 1) on rows of \(d)")
        let src = floats(x), dst = floats(out)
        order.columns.withUnsafeBufferPointer { columns in
            for r in 0..<n {
                let s = src + r * d, o = dst + r * k
                for j in 0..<k { o[j] = s[Int(columns[j])] }
            }
        }
    }
}
