// HalfPrecision: IEEE binary16 and bfloat16 bits to and from Float, without the Float16 type
// (unavailable on some hosts). The one copy the weight loaders, the tensor codings of both
// frontends and the GPU self-test use.

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

/// IEEE binary16 bits of `f`, rounded to nearest even; overflow gives infinity, NaN a quiet NaN.
public func halfBits(_ f: Float) -> UInt16 {
    let x = f.bitPattern
    let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
    let exponent = Int((x >> 23) & 0xFF)
    var mantissa = x & 0x7F_FFFF
    if exponent == 0xFF { return sign | 0x7C00 | (mantissa != 0 ? 0x200 : 0) }
    let e = exponent - 127 + 15
    if e >= 0x1F { return sign | 0x7C00 }
    if e <= 0 {
        if e < -10 { return sign }
        mantissa |= 0x80_0000
        let shift = UInt32(14 - e)
        var h = mantissa >> shift
        let rest = mantissa & ((1 << shift) - 1)
        let halfway = UInt32(1) << (shift - 1)
        if rest > halfway || (rest == halfway && h & 1 == 1) { h += 1 }
        return sign | UInt16(h)
    }
    var h = UInt32(e << 10) | (mantissa >> 13)
    let rest = mantissa & 0x1FFF
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) { h += 1 }  // a carry rounds up the exponent
    return sign | UInt16(h)
}

/// bfloat16 bits of `f`, rounded to nearest even; NaN stays a quiet NaN.
public func bfloat16Bits(_ f: Float) -> UInt16 {
    let x = f.bitPattern
    if f.isNaN { return UInt16(truncatingIfNeeded: x >> 16) | 0x40 }
    let rounding = 0x7FFF + ((x >> 16) & 1)
    return UInt16(truncatingIfNeeded: (x &+ rounding) >> 16)
}
