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
        case .f32:
            for i in 0..<n { out[i] = raw.loadUnaligned(fromByteOffset: i * 4, as: Float.self) }
        case .f16:
            for i in 0..<n { out[i] = f16(i * 2) }
        case .bf16:
            for i in 0..<n { out[i] = Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16) }
        case .q8_0:
            for b in 0..<(n / 32) {
                let base = b * 34, d = f16(base)
                for j in 0..<32 { out[b * 32 + j] = d * Float(Int8(bitPattern: raw[base + 2 + j])) }
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

    /// The same values as a float32 tensor (a copy).
    public func toFloat32() -> HostTensor {
        if dtype == .f32 { return self }
        return .float32(floatValues(), shape: shape)
    }
}

/// IEEE half → Float, without relying on the Float16 type (unavailable on some hosts).
@inline(__always)
public func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    var exp = UInt32((h >> 10) & 0x1F)
    var man = UInt32(h & 0x3FF)
    if exp == 0 {
        if man == 0 { return Float(bitPattern: sign) }
        exp = 127 - 15 + 1
        while man & 0x400 == 0 { man <<= 1; exp -= 1 }
        man &= 0x3FF
        return Float(bitPattern: sign | (exp << 23) | (man << 13))
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (man << 13)) }
    return Float(bitPattern: sign | ((exp + 127 - 15) << 23) | (man << 13))
}
