// GGMLBlocks: GGUF's block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) read as
// unsigned codes with one (scale, offset) per group, w = s * u - m, following ggml's
// dequantize_row_* (ggml-quants.c). This is their one decoder: the reference dequantization
// (HostTensor.floatValues) and the conversion to Petrel's weight-only matrices (the layout the
// backends compute with) are both made from it.
//
//   type   block  group  code u              target format
//   Q8_0   32     32     q + 128             int8 g32 symmetric   (exact)
//   Q4_0   32     32     q                   int4 g32 symmetric   (exact)
//   Q4_1   32     32     q                   int4 g32 zero points (z = -m / d in fp16)
//   Q5_0   32     32     q + 112             int8 g32 symmetric   (exact)
//   Q5_1   32     32     q                   int8 g32 zero points
//   Q4_K   256    32     q                   int4 g32 zero points (s = d * sc in fp16)
//   Q5_K   256    32     q                   int8 g32 zero points
//   Q6_K   256    16     q + 96              int8 g16 symmetric   (s = d * sc in fp16)

extension DType {
    /// The weight-only format a GGML block type converts to (nil for float types and .w8 / .w4).
    public var weightOnlyEquivalent: WeightOnlyFormat? {
        switch self {
        case .q8_0, .q5_0: return WeightOnlyFormat(bits: 8, groupSize: 32, hasZeros: false)
        case .q4_0: return WeightOnlyFormat(bits: 4, groupSize: 32, hasZeros: false)
        case .q4_1, .q4_K: return WeightOnlyFormat(bits: 4, groupSize: 32, hasZeros: true)
        case .q5_1, .q5_K: return WeightOnlyFormat(bits: 8, groupSize: 32, hasZeros: true)
        case .q6_K: return WeightOnlyFormat(bits: 8, groupSize: 16, hasZeros: false)
        case .f32, .f16, .bf16, .w8, .w4, .e4m3: return nil
        }
    }
}

/// One GGML block decoded: codes in element order, and per group w = scale * u - offset.
struct GGMLBlock {
    var codes: [UInt8]
    var scales: [Float]
    var offsets: [Float]
}

enum GGMLBlockDecoder {
    static func f16(_ p: UnsafeRawPointer, _ offset: Int) -> Float { halfToFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
    static func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 { p.load(fromByteOffset: offset, as: UInt8.self) }

    /// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j of a Q4_K / Q5_K block.
    static func scaleMin(_ j: Int, _ q: UnsafeRawPointer) -> (Float, Float) {
        if j < 4 { return (Float(byte(q, j) & 63), Float(byte(q, j + 4) & 63)) }
        let sc = (byte(q, j + 4) & 0x0F) | ((byte(q, j - 4) >> 6) << 4)
        let m = (byte(q, j + 4) >> 4) | ((byte(q, j) >> 6) << 4)
        return (Float(sc), Float(m))
    }

    static func decode(_ type: DType, _ b: UnsafeRawPointer) -> GGMLBlock {
        switch type {
        case .q8_0:
            let d = f16(b, 0)
            return GGMLBlock(codes: (0..<32).map { UInt8(bitPattern: Int8(bitPattern: byte(b, 2 + $0))) &+ 128 },
                             scales: [d], offsets: [128 * d])
        case .q4_0, .q4_1:
            let d = f16(b, 0), q = type == .q4_1 ? 4 : 2
            var codes = [UInt8](repeating: 0, count: 32)
            for j in 0..<16 { codes[j] = byte(b, q + j) & 0x0F; codes[j + 16] = byte(b, q + j) >> 4 }
            return GGMLBlock(codes: codes, scales: [d], offsets: [type == .q4_1 ? -f16(b, 2) : 8 * d])
        case .q5_0, .q5_1:
            let d = f16(b, 0), h = type == .q5_1 ? 4 : 2
            let qh = b.loadUnaligned(fromByteOffset: h, as: UInt32.self)
            var codes = [UInt8](repeating: 0, count: 32)
            for j in 0..<16 {
                let lo = byte(b, h + 4 + j)
                let x0 = (lo & 0x0F) | UInt8(((qh >> UInt32(j)) << 4) & 0x10)
                let x1 = (lo >> 4) | UInt8((qh >> UInt32(j + 12)) & 0x10)
                codes[j] = type == .q5_0 ? x0 + 112 : x0
                codes[j + 16] = type == .q5_0 ? x1 + 112 : x1
            }
            return GGMLBlock(codes: codes, scales: [d], offsets: [type == .q5_1 ? -f16(b, 2) : 128 * d])
        case .q4_K, .q5_K:
            let d = f16(b, 0), dmin = f16(b, 2), sc = b + 4
            let qs = b + (type == .q4_K ? 16 : 48), qh = b + 16
            var codes = [UInt8](repeating: 0, count: 256), scales: [Float] = [], offsets: [Float] = []
            for half in 0..<4 {                       // 64 elements: two sub-blocks from 32 bytes
                for s in 0..<2 {
                    let (scale, m) = scaleMin(2 * half + s, sc)
                    scales.append(d * scale)
                    offsets.append(dmin * m)
                    for l in 0..<32 {
                        let q = byte(qs, 32 * half + l)
                        var u = s == 0 ? q & 0x0F : q >> 4
                        if type == .q5_K, byte(qh, l) & (1 << (2 * half + s)) != 0 { u += 16 }
                        codes[64 * half + 32 * s + l] = u
                    }
                }
            }
            return GGMLBlock(codes: codes, scales: scales, offsets: offsets)
        case .q6_K:
            let ql = b, qh = b + 128, d = f16(b, 208)
            var codes = [UInt8](repeating: 0, count: 256)
            let scales = (0..<16).map { d * Float(Int8(bitPattern: byte(b, 192 + $0))) }
            for n in 0..<2 {
                for l in 0..<32 {
                    let a = byte(ql, 64 * n + l), c = byte(ql, 64 * n + l + 32), h = byte(qh, 32 * n + l)
                    codes[128 * n + l] = ((a & 0x0F) | ((h & 3) << 4)) + 96
                    codes[128 * n + l + 32] = ((c & 0x0F) | (((h >> 2) & 3) << 4)) + 96
                    codes[128 * n + l + 64] = ((a >> 4) | (((h >> 4) & 3) << 4)) + 96
                    codes[128 * n + l + 96] = ((c >> 4) | (((h >> 6) & 3) << 4)) + 96
                }
            }
            return GGMLBlock(codes: codes, scales: scales, offsets: scales.map { 128 * $0 })
        case .f32, .f16, .bf16, .w8, .w4, .e4m3:
            preconditionFailure("\(type) is not a GGML block format")
        }
    }
}

extension HostTensor {
    /// Every element of a GGML block tensor as Float (ggml's own dequantization, in fp32).
    func ggmlBlockValues() -> [Float] {
        let n = elementCount, bs = dtype.blockSize, bb = dtype.blockBytes
        var out = [Float](repeating: 0, count: n)
        for blk in 0..<(n / bs) {
            let b = GGMLBlockDecoder.decode(dtype, bytes.baseAddress! + blk * bb)
            let groupSize = bs / b.scales.count
            for (i, u) in b.codes.enumerated() {
                let g = i / groupSize
                out[blk * bs + i] = b.scales[g] * Float(u) - b.offsets[g]
            }
        }
        return out
    }

    /// A GGML block matrix as Petrel's weight-only matrix of `dtype.weightOnlyEquivalent` (see the
    /// table above): the codes unchanged, fp16 scales, and zero points z = offset / scale.
    public func convertedToWeightOnly() throws -> HostTensor {
        guard let f = dtype.weightOnlyEquivalent, shape.count == 2 else {
            throw QuantizationError("\(dtype) \(shape) has no weight-only equivalent")
        }
        if let p = f.problem(columns: rowLength) { throw QuantizationError(p) }
        let rows = rowCount, columns = rowLength, groups = f.groupCount(columns: columns)
        let bs = dtype.blockSize, bb = dtype.blockBytes, groupsPerBlock = bs / f.groupSize
        var codes = [UInt8](repeating: 0, count: rows * columns)
        var scales = [Float](repeating: 0, count: rows * groups), zeros = scales
        for r in 0..<rows {
            for blk in 0..<(columns / bs) {
                var b = GGMLBlockDecoder.decode(dtype, bytes.baseAddress! + (r * columns / bs + blk) * bb)
                for j in 0..<groupsPerBlock {
                    let g = r * groups + blk * groupsPerBlock + j
                    var s = halfToFloat(halfBits(b.scales[j]))
                    var z = s == 0 ? 0 : b.offsets[j] / s
                    if f.hasZeros && (s == 0 || abs(z) > 65504) {
                        // A group whose scale rounds to 0 in fp16 is the constant -offset: code 0
                        // with a zero of ±1 and the offset's size as the scale says it exactly.
                        let c = -b.offsets[j]
                        s = halfToFloat(halfBits(abs(c)))
                        z = c > 0 ? -1 : 1
                        for i in 0..<f.groupSize { b.codes[j * f.groupSize + i] = 0 }
                    }
                    scales[g] = s
                    zeros[g] = f.hasZeros ? z : f.symmetricZero
                }
                for i in 0..<bs { codes[r * columns + blk * bs + i] = b.codes[i] }
            }
        }
        return f.pack(rows: rows, columns: columns, codes: codes, scales: scales, zeros: f.hasZeros ? zeros : nil)
    }
}
