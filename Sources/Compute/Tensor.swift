// Tensor: a buffer owned by one ComputeBackend (host memory for the CPU, device memory for
// CUDA). Models hold Tensors and pass them back to the backend that made them.

public final class Tensor: Sendable {
    public let dtype: DType
    /// Row-major shape, outermost first.
    public let shape: [Int]
    /// Backend-specific storage (the backend that created the tensor downcasts it).
    public let storage: any AnyObject & Sendable
    /// The layout of a .w8 / .w4 weight (nil for every other dtype).
    public let weightOnly: WeightOnlyFormat?
    /// The layout of a .e4m3 weight (nil for every other dtype).
    public let fp8: FP8Format?

    public init(dtype: DType, shape: [Int], storage: any AnyObject & Sendable, weightOnly: WeightOnlyFormat? = nil, fp8: FP8Format? = nil) {
        precondition(dtype.isWeightOnly == (weightOnly != nil), "a .w8 / .w4 tensor needs its WeightOnlyFormat, and only it")
        precondition((dtype == .e4m3) == (fp8 != nil), "a .e4m3 tensor needs its FP8Format, and only it")
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
        self.weightOnly = weightOnly
        self.fp8 = fp8
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var rowLength: Int { shape.last ?? 1 }
    public var rowCount: Int { elementCount / max(rowLength, 1) }
    /// Bytes the tensor's elements take where they live (scales of quantized types included).
    public var byteCount: Int {
        if let f = weightOnly { return rowCount * f.rowBytes(columns: rowLength) }
        if let f = fp8 { return rowCount * f.rowBytes(columns: rowLength) }
        return dtype.byteCount(elements: elementCount) ?? 0
    }
}
