// CUDABackend: ComputeBackend on an NVIDIA GPU through libpetrel_cuda.so (kernels/cuda).
// One element type per backend, fp16 (default) or bf16: weights are converted to it once on
// upload, activations, logits and the KV cache are of it (the Tensors say so); all math inside
// the kernels is fp32. Weight-only matrices (.w8 / .w4) stay as they are, bytes and layout, and
// every matmul takes them (kernels/cuda/weight_only.cu). Every op is queued on one stream and
// `download` is the only wait. A failing op never traps: its fault is held (CUDAContext), later
// ops are skipped, and the runner takes it after the step (`takeFault`) and fails the step.
import CPetrelCUDA
import Compute

final class CUDAKVCache: KVCache {
    let layout: KVCacheLayout
    /// Per layer: K then V, each (blocks, blockSize, kvHeads, headDim) fp16.
    let buffer: CUDABuffer
    let layerBytes: Int

    init(layout: KVCacheLayout, context: CUDAContext) throws {
        self.layout = layout
        layerBytes = layout.blockCount * layout.blockSize * layout.kvHeadCount * layout.headDim * 2
        buffer = try CUDABuffer(context: context, byteCount: 2 * layout.layerCount * layerBytes)
        try context.check(context.lib.bufferFill(context.handle, buffer.pointer, 0, buffer.byteCount), "clear KV cache")
    }

    /// Step graphs hold the cache's addresses: none may outlive it.
    deinit { buffer.context.lib.graphsClear(buffer.context.handle) }

    func keys(_ layer: Int) -> UnsafeMutableRawPointer { buffer.pointer + 2 * layer * layerBytes }
    func values(_ layer: Int) -> UnsafeMutableRawPointer { buffer.pointer + (2 * layer + 1) * layerBytes }
}

public final class CUDABackend: ComputeBackend, RandomWeightFilling, DeviceTokenSelection, DeviceMemoryReporting, StepRecording {
    public let name = "cuda"
    let context: CUDAContext
    /// The GPU's name, memory and multiprocessors, as the driver reports them.
    public let deviceName: String
    public let totalMemoryBytes: Int
    public let multiprocessorCount: Int
    /// "GPU-…", as nvidia-smi and Triton's metrics label it.
    public let uuid: String
    /// Where the library was loaded from.
    public var libraryPath: String { context.lib.path }
    /// The element type of every device tensor: .f16 or .bf16.
    public let elementType: DType

    /// What the backend's device context is created with (petrel_context_options), fixed for its
    /// life: the kill switches of the decode path, both on by default.
    public struct Options: Sendable, Equatable {
        /// Decode steps captured and replayed as CUDA graphs (StepRecording); off, every step is
        /// launched kernel by kernel.
        public var cudaGraphs: Bool
        /// Programmatic dependent launch between the decode chain's kernels (Hopper and later).
        public var programmaticDependentLaunch: Bool

        public init(cudaGraphs: Bool = true, programmaticDependentLaunch: Bool = true) {
            self.cudaGraphs = cudaGraphs
            self.programmaticDependentLaunch = programmaticDependentLaunch
        }
    }

    /// The options the backend was created with.
    public let options: Options

    /// Loads the library (`libraryPath`, else libpetrel_cuda.so next to the executable; petrel
    /// passes PETREL_CUDA_LIB) and opens `device` with tensors of `elementType` (.f16 or .bf16) and `options`. Throws
    /// CUDABackendError with a clear message when the library or device is missing or the type
    /// is not one of those.
    public init(libraryPath: String? = nil, device: Int = 0, elementType: DType = .f16, options: Options = Options()) throws {
        guard elementType == .f16 || elementType == .bf16 else {
            throw CUDABackendError("--device cuda runs in f16 or bf16, not \(elementType)")
        }
        self.elementType = elementType
        self.options = options
        let lib = try CUDALibrary(path: libraryPath ?? CUDALibrary.defaultPath())
        context = try CUDAContext(lib: lib, device: device, options: options)
        try context.check(lib.contextSetDtype(context.handle, Int32(elementType.rawValue)), "set element type \(elementType)")
        var name = [CChar](repeating: 0, count: 256)
        var total: Int64 = 0, free: Int64 = 0
        var sms: Int32 = 0
        try context.check(lib.deviceDescribe(context.handle, &name, name.count, &total, &free, &sms), "describe device")
        deviceName = String(nulTerminated: name)
        totalMemoryBytes = Int(total)
        multiprocessorCount = Int(sms)
        var id = [CChar](repeating: 0, count: 64)
        try context.check(lib.deviceUUID(context.handle, &id, id.count), "device uuid")
        uuid = String(nulTerminated: id)
    }

    private var lib: CUDALibrary { context.lib }
    private var ctx: OpaquePointer { context.handle }

    private func buffer(_ t: Tensor) -> CUDABuffer { t.storage as! CUDABuffer }
    /// Whether two tensors share storage (device memory or an UnallocatedBuffer).
    private func sameStorage(_ a: Tensor, _ b: Tensor) -> Bool { a.storage === b.storage }
    private func ptr(_ t: Tensor) -> UnsafeMutableRawPointer {
        precondition(t.dtype == elementType, "this CUDA backend holds \(elementType) tensors only, not \(t.dtype)")
        return buffer(t).pointer
    }

    /// The C descriptor of a weight-only matrix of `columns` columns.
    private static func descriptor(_ f: WeightOnlyFormat, columns: Int) -> petrel_wo_desc {
        petrel_wo_desc(bits: Int32(f.bits), group_size: Int32(f.groupSize), has_zeros: f.hasZeros ? 1 : 0,
                       row_bytes: Int64(f.rowBytes(columns: columns)))
    }

    /// A matmul's weight: its device bytes and, for a .w8 / .w4 matrix, its layout (borrowed by `body`);
    /// any other weight must be of the element type.
    private func withWeight<R>(_ w: Tensor, _ body: (UnsafeMutableRawPointer, UnsafePointer<petrel_wo_desc>?) -> R) -> R {
        guard let f = w.weightOnly else { return body(ptr(w), nil) }
        return withUnsafePointer(to: Self.descriptor(f, columns: w.rowLength)) { body(buffer(w).pointer, $0) }
    }

    private func makeTensor(_ shape: [Int]) throws -> Tensor {
        let count = shape.reduce(1, *)
        return Tensor(dtype: elementType, shape: shape, storage: try CUDABuffer(context: context, byteCount: count * 2))
    }

    // MARK: memory

    public func upload(_ host: HostTensor) throws -> Tensor {
        // Loading refuses FP8 before this (LlamaStage.checkFP8); any other caller is told here.
        if host.fp8 != nil { throw CUDABackendError("FP8 (E4M3) weights: the CUDA backend has no FP8 kernels yet") }
        if let f = host.weightOnly {   // the bytes as they are: the kernels read this layout
            precondition(host.bytes.count == host.rowCount * f.rowBytes(columns: host.rowLength), "upload: a short \(host.dtype) matrix")
            let storage = try CUDABuffer(context: context, byteCount: host.bytes.count)
            try context.check(lib.bufferUpload(ctx, host.bytes.baseAddress, host.bytes.count, storage.pointer),
                              "upload \(host.dtype) \(host.shape)")
            return Tensor(dtype: host.dtype, shape: host.shape, storage: storage, weightOnly: f)
        }
        let t = try makeTensor(host.shape)
        try context.check(lib.weightsUpload(ctx, Int32(host.dtype.rawValue), host.bytes.baseAddress, Int64(host.elementCount), ptr(t)),
                          "upload \(host.dtype) \(host.shape)")
        return t
    }

    public func makeRandomWeight(shape: [Int], seed: UInt64, amplitude: Float) throws -> Tensor {
        let t = try makeTensor(shape)
        try context.check(lib.weightsRandom(ctx, ptr(t), Int64(t.elementCount), seed, amplitude), "random weight \(shape)")
        return t
    }

    public func makeRandomWeightOnly(shape: [Int], format: WeightOnlyFormat, seed: UInt64, amplitude: Float) throws -> Tensor {
        precondition(shape.count == 2, "a weight-only matrix has two dimensions, not \(shape)")
        if let problem = format.problem(columns: shape[1]) { throw CUDABackendError(problem) }
        let storage = try CUDABuffer(context: context, byteCount: shape[0] * format.rowBytes(columns: shape[1]))
        try withUnsafePointer(to: Self.descriptor(format, columns: shape[1])) {
            try context.check(lib.weightsRandomWO(ctx, storage.pointer, Int64(shape[0]), Int64(shape[1]), $0, seed, amplitude),
                              "random \(format) weight \(shape)")
        }
        return Tensor(dtype: format.dtype, shape: shape, storage: storage, weightOnly: format)
    }

    /// When the pool cannot give the memory, the fault is held (the step fails) and the tensor
    /// has no memory: every op is skipped until the fault is taken.
    public func makeActivation(_ shape: [Int]) -> Tensor {
        if !context.isFaulted {
            do { return try makeTensor(shape) } catch { context.keep(DeviceFault("\(error)")) }
        }
        return Tensor(dtype: elementType, shape: shape, storage: UnallocatedBuffer())
    }

    public func makeKVCache(_ layout: KVCacheLayout) throws -> KVCache {
        try CUDAKVCache(layout: layout, context: context)
    }

    public func download(_ tensor: Tensor) -> [Float] {
        var out = [Float](repeating: 0, count: tensor.elementCount)
        out.withUnsafeMutableBufferPointer { o in
            context.enqueue("download \(tensor.shape)") { lib.tensorDownload(ctx, ptr(tensor), Int64(tensor.elementCount), o.baseAddress) }
        }
        return context.isFaulted ? [Float](repeating: 0, count: tensor.elementCount) : out
    }

    public var kvCacheBytesPerElement: Int { 2 }

    /// Device memory (total, free) in bytes, read without waiting for queued work: safe to call
    /// from a metrics scrape while the model runs on another thread.
    public func memoryInfo() -> (total: Int, free: Int)? {
        var total: Int64 = 0, free: Int64 = 0
        var sms: Int32 = 0
        guard lib.deviceDescribe(context.handle, nil, 0, &total, &free, &sms) == 0 else { return nil }
        return (Int(total), Int(free))
    }

    public func freeMemoryBytes() throws -> Int {
        try synchronize()   // frees queued stream-ordered releases first
        var total: Int64 = 0, free: Int64 = 0
        var sms: Int32 = 0
        try context.check(lib.deviceDescribe(context.handle, nil, 0, &total, &free, &sms), "describe device")
        return Int(free)
    }

    public func takeFault() -> DeviceFault? { context.takeFault() }

    /// For the GPU self-test only (kernels/cuda: petrel_debug_fail_alloc_after): the allocation
    /// after the next `count` fails once, as if the device memory had run out.
    @_spi(SelfTest) public func failAllocation(after count: Int) {
        lib.debugFailAllocAfter(ctx, Int64(count))
    }

    /// Waits for all queued work (for timing).
    public func synchronize() throws {
        try context.check(lib.contextSynchronize(ctx), "synchronize")
    }

    // MARK: operations

    public func embed(_ ids: [Int32], table: Tensor, into out: Tensor) {
        precondition(out.rowLength == table.rowLength && out.rowCount >= ids.count)
        context.enqueue("embed") { lib.embed(ctx, ids, Int64(ids.count), ptr(table), Int64(table.rowCount), Int64(table.rowLength), ptr(out)) }
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into out: Tensor) {
        precondition(weight.elementCount == x.rowLength && out.elementCount == x.elementCount)
        context.enqueue("rmsNorm") { lib.rmsNorm(ctx, ptr(x), ptr(weight), Int64(x.rowCount), Int64(x.rowLength), eps, ptr(out)) }
    }

    public func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) {
        precondition(x.rowLength == weight.rowLength, "matmul: x has \(x.rowLength) columns, weight \(weight.rowLength)")
        precondition(out.rowLength == weight.rowCount && out.rowCount == x.rowCount)
        withWeight(weight) { w, wo in
            context.enqueue("matmul \(x.shape) x \(weight.dtype) \(weight.shape)") {
                lib.matmul(ctx, ptr(x), Int64(x.rowCount), Int64(x.rowLength), w, wo, Int64(weight.rowCount),
                           bias.map { UnsafeRawPointer(ptr($0)) }, ptr(out))
            }
        }
    }

    public func rope(_ x: Tensor, headCount: Int, headDim: Int, positions: [Int32], inverseFrequencies: [Float]) {
        precondition(positions.count == x.rowCount && inverseFrequencies.count == headDim / 2)
        context.enqueue("rope") {
            lib.rope(ctx, ptr(x), Int64(x.rowCount), Int64(x.rowLength), Int64(headCount), Int64(headDim), positions, inverseFrequencies)
        }
    }

    public func attention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, cache: KVCache, layer: Int,
                          sequences: [AttentionSequence], scale: Float, into out: Tensor) {
        enqueueAttention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: headDim, rope: nil,
                         cache: cache, layer: layer, sequences: sequences, scale: scale, into: out)
    }

    /// RoPE fused into the K/V write (kernels/cuda/attention.cu): one kernel rotates the query
    /// heads in place and writes the rotated keys and the values to the cache.
    public func ropeAttention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, positions: [Int32],
                              inverseFrequencies: [Float], cache: KVCache, layer: Int, sequences: [AttentionSequence],
                              scale: Float, into out: Tensor) {
        precondition(positions.count == qkv.rowCount && inverseFrequencies.count == headDim / 2)
        enqueueAttention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: headDim,
                         rope: (positions, inverseFrequencies), cache: cache, layer: layer, sequences: sequences,
                         scale: scale, into: out)
    }

    private func enqueueAttention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int,
                                  rope: (positions: [Int32], inverseFrequencies: [Float])?, cache: KVCache, layer: Int,
                                  sequences: [AttentionSequence], scale: Float, into out: Tensor) {
        let c = cache as! CUDAKVCache
        precondition(qkv.rowLength == (headCount + 2 * kvHeadCount) * headDim)
        precondition(c.layout.kvHeadCount == kvHeadCount && c.layout.headDim == headDim && layer < c.layout.layerCount)
        let positions = rope?.positions ?? [], frequencies = rope?.inverseFrequencies ?? []
        withAttentionSequences(sequences, layout: c.layout) { seqs in
            positions.withUnsafeBufferPointer { pos in
                frequencies.withUnsafeBufferPointer { freq in
                    context.enqueue("attention") {
                        lib.attention(ctx, ptr(qkv), Int64(headCount), Int64(kvHeadCount), Int64(headDim),
                                      c.keys(layer), c.values(layer), Int64(c.layout.blockSize),
                                      seqs, Int64(seqs.count), rope == nil ? nil : pos.baseAddress,
                                      rope == nil ? nil : freq.baseAddress, scale, ptr(out))
                    }
                }
            }
        }
    }

    /// Checks `sequences` against the cache (block tables long enough, block ids in range) and
    /// calls `body` with their C structs, which borrow one flat copy of all block tables for the call.
    private func withAttentionSequences(_ sequences: [AttentionSequence], layout: KVCacheLayout,
                                        _ body: ([petrel_attn_seq]) -> Void) {
        for s in sequences {
            precondition(s.blockTable.count * layout.blockSize >= s.contextBefore + s.tokenCount, "block table too short")
            precondition(s.blockTable.allSatisfy { $0 >= 0 && Int($0) < layout.blockCount }, "block id out of range")
        }
        var flat: [Int32] = []
        var offsets: [Int] = []
        for s in sequences { offsets.append(flat.count); flat.append(contentsOf: s.blockTable) }
        flat.withUnsafeBufferPointer { tb in
            body(sequences.enumerated().map { i, s in
                petrel_attn_seq(token_begin: Int64(s.tokenBegin), token_count: Int64(s.tokenCount),
                                context_before: Int64(s.contextBefore), block_table: tb.baseAddress.map { $0 + offsets[i] },
                                block_count: Int64(s.blockTable.count))
            })
        }
    }

    public func matmulSwiGLU(_ x: Tensor, gateUp: Tensor, into out: Tensor) {
        precondition(x.rowLength == gateUp.rowLength && gateUp.rowCount == 2 * out.rowLength && out.rowCount == x.rowCount)
        withWeight(gateUp) { w, wo in
            context.enqueue("matmulSwiGLU \(x.shape) x \(gateUp.dtype) \(gateUp.shape)") {
                lib.matmulSwiGLU(ctx, ptr(x), Int64(x.rowCount), Int64(x.rowLength), w, wo, Int64(out.rowLength), ptr(out))
            }
        }
    }

    /// The streaming GEMV normalises x itself for a few rows (kernels/cuda/gemv.cu): no norm kernel.
    public func rmsNormMatmul(_ x: Tensor, norm: Tensor, eps: Float, weight: Tensor, bias: Tensor?, normed: Tensor,
                              into out: Tensor) {
        precondition(x.rowLength == weight.rowLength && norm.elementCount == x.rowLength && normed.elementCount == x.elementCount)
        precondition(out.rowLength == weight.rowCount && out.rowCount == x.rowCount)
        precondition(!sameStorage(normed, x) && !sameStorage(out, x) && !sameStorage(out, normed))
        withWeight(weight) { w, wo in
            context.enqueue("rmsNormMatmul \(x.shape) x \(weight.dtype) \(weight.shape)") {
                lib.rmsNormMatmul(ctx, ptr(x), ptr(norm), eps, Int64(x.rowCount), Int64(x.rowLength), w, wo,
                                  Int64(weight.rowCount), bias.map { UnsafeRawPointer(ptr($0)) }, ptr(normed), ptr(out))
            }
        }
    }

    public func rmsNormMatmulSwiGLU(_ x: Tensor, norm: Tensor, eps: Float, gateUp: Tensor, normed: Tensor, into out: Tensor) {
        precondition(x.rowLength == gateUp.rowLength && gateUp.rowCount == 2 * out.rowLength && out.rowCount == x.rowCount)
        precondition(norm.elementCount == x.rowLength && normed.elementCount == x.elementCount)
        precondition(!sameStorage(normed, x) && !sameStorage(out, x) && !sameStorage(out, normed))
        withWeight(gateUp) { w, wo in
            context.enqueue("rmsNormMatmulSwiGLU \(x.shape) x \(gateUp.dtype) \(gateUp.shape)") {
                lib.rmsNormMatmulSwiGLU(ctx, ptr(x), ptr(norm), eps, Int64(x.rowCount), Int64(x.rowLength), w, wo,
                                        Int64(out.rowLength), ptr(normed), ptr(out))
            }
        }
    }

    /// The GEMV adds in its epilogue; cuBLAS with beta 1 for larger batches.
    public func matmulAdd(_ x: Tensor, weight: Tensor, into accumulator: Tensor) {
        precondition(x.rowLength == weight.rowLength && accumulator.rowLength == weight.rowCount && accumulator.rowCount == x.rowCount)
        precondition(!sameStorage(accumulator, x))
        withWeight(weight) { w, wo in
            context.enqueue("matmulAdd \(x.shape) x \(weight.dtype) \(weight.shape)") {
                lib.matmulAdd(ctx, ptr(x), Int64(x.rowCount), Int64(x.rowLength), w, wo, Int64(weight.rowCount), ptr(accumulator))
            }
        }
    }

    public func topCandidates(_ logits: Tensor, count: Int, temperatures: [Float], edits: [LogitEdit])
        -> (ids: [Int32], values: [Float], logSumExp: [Float]) {
        let rows = logits.rowCount, vocab = logits.rowLength
        precondition(count >= 1 && count <= min(vocab, 1024))
        precondition(temperatures.isEmpty || (temperatures.count == rows && temperatures.allSatisfy { $0 > 0 }))
        let inverse = temperatures.map { 1 / $0 }
        let cEdits = edits.map {
            petrel_logit_edit(row: $0.row, id: $0.id, repetition: $0.repetition, subtract: $0.subtract, masked: $0.masked ? 1 : 0)
        }
        var ids = [Int32](repeating: 0, count: rows * count)   // 0s when a fault is held
        var values = [Float](repeating: 0, count: rows * count)
        var lse = [Float](repeating: 0, count: rows)
        ids.withUnsafeMutableBufferPointer { i in
            values.withUnsafeMutableBufferPointer { v in
                lse.withUnsafeMutableBufferPointer { l in
                    inverse.withUnsafeBufferPointer { t in
                        cEdits.withUnsafeBufferPointer { e in
                            context.enqueue("topCandidates") {
                                lib.topCandidates(ctx, ptr(logits), Int64(rows), Int64(vocab), Int32(count),
                                                  inverse.isEmpty ? nil : t.baseAddress, e.baseAddress, Int64(e.count),
                                                  i.baseAddress, v.baseAddress, l.baseAddress)
                            }
                        }
                    }
                }
            }
        }
        return (ids, values, lse)
    }

    public func swiglu(_ gateUp: Tensor, into out: Tensor) {
        precondition(gateUp.rowLength == 2 * out.rowLength && gateUp.rowCount == out.rowCount)
        context.enqueue("swiglu") { lib.swiglu(ctx, ptr(gateUp), Int64(out.rowCount), Int64(out.rowLength), ptr(out)) }
    }

    public func add(_ x: Tensor, into accumulator: Tensor) {
        precondition(x.elementCount == accumulator.elementCount)
        context.enqueue("add") { lib.add(ctx, ptr(accumulator), ptr(x), Int64(x.elementCount)) }
    }

    public func gatherRows(_ x: Tensor, rows: [Int], into out: Tensor) {
        precondition(out.rowLength == x.rowLength && out.rowCount >= rows.count)
        precondition(rows.allSatisfy { $0 >= 0 && $0 < x.rowCount }, "gatherRows: row out of range")
        context.enqueue("gatherRows") { lib.gatherRows(ctx, ptr(x), Int64(x.rowLength), rows.map(Int32.init), Int64(rows.count), ptr(out)) }
    }

    /// The order's columns in device memory (int32), uploaded once.
    public func makeColumnOrder(_ columns: [Int32]) throws -> ColumnOrder {
        let storage = try CUDABuffer(context: context, byteCount: columns.count * 4)
        try columns.withUnsafeBytes {
            try context.check(lib.bufferUpload(ctx, $0.baseAddress, $0.count, storage.pointer), "upload a column order of \(columns.count)")
        }
        return ColumnOrder(columns: columns, storage: storage)
    }

    public func gatherColumns(_ x: Tensor, order: ColumnOrder, into out: Tensor) {
        let n = x.rowCount, d = x.rowLength, k = order.count
        precondition(out.rowCount == n && out.rowLength == k, "gatherColumns: out is \(out.shape), expected [\(n), \(k)]")
        precondition(d >= order.inputWidth, "gatherColumns: an order of columns up to \(order.inputWidth - 1) on rows of \(d)")
        guard let columns = order.storage as? CUDABuffer else { preconditionFailure("gatherColumns: an order this backend did not make") }
        context.enqueue("gatherColumns") {
            lib.gatherColumns(ctx, ptr(x), Int64(n), Int64(d), columns.pointer.assumingMemoryBound(to: Int32.self), Int64(k), ptr(out))
        }
    }

    // MARK: decode steps as CUDA graphs (kernels/cuda/graphs.cu)

    public func beginStep(owner: UInt64, tokens: [Int32], positions: [Int32], sequences: [AttentionSequence], layout: KVCacheLayout,
                          headCount: Int, kvHeadCount: Int, headDim: Int, inverseFrequencies: [Float], rows: [Int]) -> StepRecordingAction {
        precondition(tokens.count == positions.count && inverseFrequencies.count == headDim / 2)
        // A replayed step runs no enqueue function: the attention call's checks are made here, every step.
        let rows32 = rows.map(Int32.init)
        var action = Int32(PETREL_STEP_INELIGIBLE)   // also when a fault is held: the step runs as usual, skipped
        withAttentionSequences(sequences, layout: layout) { seqs in
            context.enqueue("step_begin") {
                lib.stepBegin(ctx, owner, tokens, positions, Int64(tokens.count), seqs, Int64(seqs.count),
                              Int64(layout.blockSize), Int64(headCount), Int64(kvHeadCount), Int64(headDim),
                              inverseFrequencies, rows32, Int64(rows32.count), &action)
            }
        }
        switch action {
        case Int32(PETREL_STEP_REPLAYED): return .replayed
        case Int32(PETREL_STEP_ENQUEUE): return .enqueue
        default: return .ineligible
        }
    }

    public func endStep() -> Bool {
        var rerun: Int32 = 0
        context.enqueue("step_end") { lib.stepEnd(ctx, &rerun) }
        return rerun != 0
    }

    public func clearStepRecordings() { lib.graphsClear(ctx) }

    /// Step graphs captured and replays launched so far.
    public var graphCounts: (captured: Int, replayed: Int) {
        var captured: Int64 = 0, replayed: Int64 = 0
        lib.graphCounts(ctx, &captured, &replayed)
        return (Int(captured), Int(replayed))
    }

    public func copyKVBlock(_ cache: KVCache, from: Int, to: Int) {
        let c = cache as! CUDAKVCache
        let l = c.layout
        precondition(from >= 0 && from < l.blockCount && to >= 0 && to < l.blockCount)
        let blockBytes = l.blockSize * l.kvHeadCount * l.headDim * 2
        for layer in 0..<l.layerCount {
            for base in [c.keys(layer), c.values(layer)] {
                context.enqueue("copyKVBlock") { lib.bufferCopy(ctx, base + to * blockBytes, base + from * blockBytes, blockBytes) }
            }
        }
    }
}
