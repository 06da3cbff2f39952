// HostTensor: a read-only view of tensor bytes in host memory (often an mmapped checkpoint),
// with its element type and row-major shape (outermost dimension first).

/// Unchecked: `bytes` is never written through this view, and `owner` keeps it alive.
public struct HostTensor: @unchecked Sendable {
    public let dtype: DType
    /// Row-major shape, outermost first: a (rows, columns) matrix is [rows, columns].
    public let shape: [Int]
    /// The bytes; valid while `owner` is alive.
    public let bytes: UnsafeRawBufferPointer
    /// Keeps the memory behind `bytes` alive (an mmapped file, an owned buffer).
    public let owner: AnyObject?
    /// The layout of a .w8 / .w4 matrix (nil for every other dtype).
    public let weightOnly: WeightOnlyFormat?
    /// The layout of a .e4m3 matrix (nil for every other dtype).
    public let fp8: FP8Format?

    public init(dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer, owner: AnyObject?, weightOnly: WeightOnlyFormat? = nil,
                fp8: FP8Format? = nil) {
        precondition(dtype.isWeightOnly == (weightOnly != nil) && (weightOnly == nil || weightOnly!.dtype == dtype),
                     "a .w8 / .w4 tensor needs its WeightOnlyFormat, and only it")
        precondition((dtype == .e4m3) == (fp8 != nil) && (fp8 == nil || shape.count == 2), "a .e4m3 matrix needs its FP8Format, and only it")
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
        self.owner = owner
        self.weightOnly = weightOnly
        self.fp8 = fp8
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Columns of the innermost dimension.
    public var rowLength: Int { shape.last ?? 1 }
    public var rowCount: Int { elementCount / max(rowLength, 1) }
    public var rowBytes: Int {
        weightOnly?.rowBytes(columns: rowLength) ?? fp8?.rowBytes(columns: rowLength) ?? dtype.byteCount(elements: rowLength) ?? 0
    }

    /// A tensor that owns a copy of the given floats.
    public static func float32(_ values: [Float], shape: [Int]) -> HostTensor {
        let buffer = OwnedBuffer(byteCount: values.count * 4)
        values.withUnsafeBytes { buffer.mutableBytes.copyMemory(from: $0) }
        return HostTensor(dtype: .f32, shape: shape, bytes: UnsafeRawBufferPointer(buffer.mutableBytes), owner: buffer)
    }

    /// The rows `order[0], order[1], …` of this tensor (viewed as rows × rowLength), copied.
    /// Works for any dtype since every row is a whole number of blocks.
    public func reorderingRows(_ order: [Int]) -> HostTensor {
        let rb = rowBytes
        let buffer = OwnedBuffer(byteCount: order.count * rb)
        for (i, r) in order.enumerated() {
            buffer.mutableBytes.baseAddress!.advanced(by: i * rb)
                .copyMemory(from: bytes.baseAddress!.advanced(by: r * rb), byteCount: rb)
        }
        let newShape = shape.count > 1 ? [order.count, rowLength] : [order.count]
        return HostTensor(dtype: dtype, shape: newShape, bytes: UnsafeRawBufferPointer(buffer.mutableBytes), owner: buffer,
                          weightOnly: weightOnly, fp8: fp8)
    }

    /// Concatenates matrices with the same dtype and row length along rows. FP8 matrices may have
    /// different static input scales: the result's is the largest (vLLM's choice for fused
    /// projections), so that no part's activations saturate; all must be static or all dynamic.
    public static func concatenatingRows(_ parts: [HostTensor]) -> HostTensor? {
        guard let first = parts.first,
              parts.allSatisfy({ $0.dtype == first.dtype && $0.rowLength == first.rowLength && $0.weightOnly == first.weightOnly
                                 && ($0.fp8?.inputScale == nil) == (first.fp8?.inputScale == nil) })
        else { return nil }
        let fp8 = first.fp8.map { _ in FP8Format(inputScale: parts.compactMap { $0.fp8?.inputScale }.max()) }
        let total = parts.reduce(0) { $0 + $1.bytes.count }
        let buffer = OwnedBuffer(byteCount: total)
        var offset = 0
        for p in parts {
            buffer.mutableBytes.baseAddress!.advanced(by: offset).copyMemory(from: p.bytes.baseAddress!, byteCount: p.bytes.count)
            offset += p.bytes.count
        }
        let rows = parts.reduce(0) { $0 + $1.rowCount }
        return HostTensor(dtype: first.dtype, shape: [rows, first.rowLength], bytes: UnsafeRawBufferPointer(buffer.mutableBytes), owner: buffer,
                          weightOnly: first.weightOnly, fp8: fp8)
    }
}

/// Heap memory freed when the last reference goes away. Unchecked: the pointer never changes;
/// whoever writes the bytes does so before sharing the buffer (then it is read-only).
public final class OwnedBuffer: @unchecked Sendable {
    public let mutableBytes: UnsafeMutableRawBufferPointer
    public init(byteCount: Int) {
        mutableBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
    }
    deinit { mutableBytes.deallocate() }
}
