// Compute's weight-only layout (WeightOnly.swift): packing read back against the layout as specified,
// and the rounding error of HostTensor.quantized.
import Compute
import Testing

@Suite struct WeightOnlyFormatTests {
    static let formats: [WeightOnlyFormat] = [8, 4].flatMap { bits in
        (bits == 8 ? [0, 16, 32, 48] : [0, 32, 64, 128]).flatMap { g in
            [false, true].map { WeightOnlyFormat(bits: bits, groupSize: g, hasZeros: $0) }
        }
    }

    /// Codes, scales and zeros packed, then read back both from the bytes as the layout specifies them
    /// and through WeightOnlyRow / floatValues.
    @Test(arguments: formats)
    func packRoundTrips(_ f: WeightOnlyFormat) {
        var rng = LCG(state: UInt64(f.bits * 100 + f.groupSize) + (f.hasZeros ? 1 : 0))
        let rows = 3
        for columns in f.bits == 8 ? [80, 96] : [96, 160] {
            let groups = f.groupCount(columns: columns)
            let codes = (0..<rows * columns).map { _ in UInt8(min(Float(f.maxCode), (rng.next() + 1) / 2 * Float(f.maxCode + 1))) }
            let scales = (0..<rows * groups).map { _ in rng.next() * 0.05 }
            let zeros = (0..<rows * groups).map { _ in rng.next() * 300 }
            let t = f.pack(rows: rows, columns: columns, codes: codes, scales: scales, zeros: f.hasZeros ? zeros : nil)
            let rowBytes = f.rowBytes(columns: columns)
            #expect(rowBytes % 16 == 0 && t.bytes.count == rows * rowBytes && t.rowBytes == rowBytes)
            let all = t.floatValues()
            for r in 0..<rows {
                let bytes = UnsafeRawBufferPointer(rebasing: t.bytes[r * rowBytes..<(r + 1) * rowBytes])
                let row = WeightOnlyRow(t, row: r)
                let values = row.values()
                for k in 0..<columns {
                    // The layout: 8 bits, byte p of a chunk of 16 holds column eightBitOrder[p];
                    // 4 bits, nibble n of 32-bit word c of a chunk of 32 holds column 2c + fourBitOffsets[n].
                    let stored: UInt8
                    if f.bits == 8 {
                        stored = bytes[k / 16 * 16 + WeightOnlyFormat.eightBitOrder.firstIndex(of: k % 16)!]
                    } else {
                        let c = (0..<4).first { (k % 32 - 2 * $0) >= 0 && WeightOnlyFormat.fourBitOffsets.contains(k % 32 - 2 * $0) }!
                        let n = WeightOnlyFormat.fourBitOffsets.firstIndex(of: k % 32 - 2 * c)!
                        let word = bytes.loadUnaligned(fromByteOffset: k / 32 * 16 + 4 * c, as: UInt32.self)
                        stored = UInt8((word >> UInt32(4 * n)) & 0xF)
                    }
                    let code = codes[r * columns + k]
                    #expect(stored == code && row.code(k) == code, "\(f) row \(r) column \(k)")
                    let g = f.groupSize == 0 ? 0 : k / f.groupSize
                    let s = halfToFloat(halfBits(scales[r * groups + g]))
                    let z = f.hasZeros ? halfToFloat(halfBits(zeros[r * groups + g])) : f.symmetricZero
                    #expect(values[k] == (Float(code) - z) * s && all[r * columns + k] == values[k])
                }
                for g in 0..<groups {
                    #expect(row.scale(group: g) == halfToFloat(halfBits(scales[r * groups + g])))
                    #expect(row.zero(group: g) == (f.hasZeros ? halfToFloat(halfBits(zeros[r * groups + g])) : f.symmetricZero))
                }
                let used = f.codeBytes(columns: columns) + groups * 2 * (f.hasZeros ? 2 : 1)
                #expect(bytes[used...].allSatisfy { $0 == 0 }, "\(f): padding is zero")
            }
        }
    }

    /// Every element of a quantized matrix inside its group's code range is within half a step of
    /// the float it came from: |s| / 2 for symmetric groups; with zero points the code range may
    /// fall short by the scale's fp16 rounding (up to maxCode · 2⁻¹¹ steps) plus z's, so
    /// |s| · (1/2 + maxCode / 2048). An element outside the range (a symmetric 4-bit group whose
    /// extreme takes code −8 reaches only +7 steps the other way) becomes the range's nearer end. And each
    /// group's squared error is at most that of the plain recipe (s = max|w| / (2^(bits-1) − 1), or
    /// min/max with zero points), which is one of the candidates.
    @Test(arguments: formats)
    func quantizedErrorIsWithinHalfAStep(_ f: WeightOnlyFormat) throws {
        var rng = LCG(state: UInt64(f.bits * 10 + f.groupSize) + (f.hasZeros ? 3 : 0))
        let rows = 6, columns = f.bits == 8 ? 208 : 576
        var w = rng.array(rows * columns)
        for r in 0..<rows {   // row magnitudes from 0.05 to 10 (fp16 scales stay normal); row 3 all zero, row 4 all positive
            let scale = [0.05, 0.3, 1, 0, 2, 10][r] as Float
            for k in 0..<columns { w[r * columns + k] = (r == 4 ? abs(w[r * columns + k]) : w[r * columns + k]) * scale }
        }
        let q = try HostTensor.float32(w, shape: [rows, columns]).quantized(f)
        #expect(q.dtype == f.dtype && q.weightOnly == f && q.shape == [rows, columns])
        let deq = q.floatValues()
        let steps: Float = f.hasZeros ? 0.5 + Float(f.maxCode) / 2048 : 0.5
        for r in 0..<rows {
            let row = WeightOnlyRow(q, row: r)
            for g in 0..<f.groupCount(columns: columns) {
                let s = row.scale(group: g), z = row.zero(group: g)
                let ends = [(0 - z) * s, (Float(f.maxCode) - z) * s]
                let (lo, hi) = (ends.min()!, ends.max()!)
                var error: Float = 0, plain: Float = 0
                let range = f.group(g, columns: columns)
                let values = range.map { w[r * columns + $0] }
                for (k, v) in zip(range, values) {
                    let d = deq[r * columns + k]
                    error += (d - v) * (d - v)
                    let slack = abs(s) * steps + 1e-6 * abs(v)   // plus float32 rounding of w / s and (u - z) · s
                    if v < lo - slack || v > hi + slack {
                        #expect(d == (v < lo ? lo : hi), "\(f) row \(r) column \(k): clipped \(v) became \(d), range \(lo)…\(hi)")
                    } else {
                        #expect(abs(v - d) <= slack, "\(f) row \(r) column \(k): \(v) became \(d), s \(s)")
                    }
                }
                // The plain recipe's error on the same group.
                let ps: Float, pz: Float
                if f.hasZeros {
                    let l = min(values.min()!, 0), h = max(values.max()!, 0)
                    ps = halfToFloat(halfBits((h - l) / Float(f.maxCode)))
                    pz = ps > 0 ? min(max((-l / ps).rounded(), 0), Float(f.maxCode)) : 0
                } else {
                    ps = halfToFloat(halfBits(values.map(abs).max()! / (f.symmetricZero - 1)))
                    pz = f.symmetricZero
                }
                for v in values {
                    let u = ps == 0 ? pz : min(max((v / ps).rounded() + pz, 0), Float(f.maxCode))
                    plain += ((u - pz) * ps - v) * ((u - pz) * ps - v)
                }
                #expect(error <= plain * (1 + 1e-5) + 1e-12, "\(f) row \(r) group \(g): error \(error) above the plain recipe's \(plain)")
            }
        }
        #expect(deq[3 * columns..<4 * columns].allSatisfy { $0 == 0 }, "\(f): a zero row stays zero")
    }

    @Test func quantizingRejectsWhatItCannotHold() {
        let f = WeightOnlyFormat(bits: 4, groupSize: 32, hasZeros: false)
        #expect(throws: QuantizationError.self) { try HostTensor.float32([Float](repeating: 1, count: 48), shape: [1, 48]).quantized(f) }
        let w8 = try? HostTensor.float32([Float](repeating: 1, count: 32), shape: [1, 32]).quantized(.int8PerChannel)
        #expect(throws: QuantizationError.self) { try w8?.quantized(f) }
    }
}
