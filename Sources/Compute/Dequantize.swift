// Reference dequantization in plain Swift (load-time conversions and tests; the hot paths
// live in the backends).

extension HostTensor {
    /// Every element as Float, row-major.
    public func floatValues() -> [Float] {
        var out = [Float](repeating: 0, count: elementCount)
        let n = elementCount
        let raw = bytes
        func f16(_ off: Int) -> Float { halfToFloat(raw.loadUnaligned(fromByteOffset: off, as: UInt16.self)) }
        switch dtype {
        case .f32, .f16, .bf16:
            return floatElements(0..<n)
        case .q8_0:
            for b in 0..<(n / 32) {
                let base = b * 34, d = f16(base)
                for j in 0..<32 { out[b * 32 + j] = d * Float(Int8(bitPattern: raw[base + 2 + j])) }
            }
        case .q5_0, .q5_1, .q4_K, .q5_K, .q6_K:
            return ggmlBlockValues()
        case .w8, .w4:
            for r in 0..<rowCount {
                let v = WeightOnlyRow(self, row: r).values()
                for k in 0..<rowLength { out[r * rowLength + k] = v[k] }
            }
        case .e4m3:   // decode(code) · s_w (FP8.swift)
            for r in 0..<rowCount {
                let (codes, scale) = fp8Row(r)
                for k in 0..<rowLength { out[r * rowLength + k] = FP8E4M3.decode(codes[k]) * scale }
            }
        case .q4_0, .q4_1:
            let bs = dtype.blockBytes, q = dtype == .q4_1 ? 4 : 2
            for b in 0..<(n / 32) {
                let base = b * bs, d = f16(base)
                let m = dtype == .q4_1 ? f16(base + 2) : -8 * d
                for j in 0..<16 {
                    let byte = raw[base + q + j]
                    out[b * 32 + j] = d * Float(byte & 0x0F) + m
                    out[b * 32 + j + 16] = d * Float(byte >> 4) + m
                }
            }
        }
        return out
    }

    /// Elements `range` (flat, row-major) of a float tensor (f32, f16, bf16) as Float.
    func floatElements(_ range: Range<Int>) -> [Float] {
        let raw = bytes
        switch dtype {
        case .f32: return range.map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        case .f16: return range.map { halfToFloat(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
        case .bf16: return range.map { Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16) }
        default: preconditionFailure("floatElements of \(dtype)")
        }
    }

    /// The same values as a float32 tensor (a copy).
    public func toFloat32() -> HostTensor {
        if dtype == .f32 { return self }
        return .float32(floatValues(), shape: shape)
    }
}
