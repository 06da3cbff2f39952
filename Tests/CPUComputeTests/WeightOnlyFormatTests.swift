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
    /// group's weighted squared error (the search's measure, weights rms + |w|) is at most that of the
    /// plain recipe (s = max|w| / (2^(bits-1) − 1), or min/max with zero points), one of its candidates.
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
                let weights = Self.searchWeights(values, perChannel: f.bits == 8 && f.groupSize == 0 && !f.hasZeros)
                for ((k, v), c) in zip(zip(range, values), weights) {
                    let d = deq[r * columns + k]
                    error += c * (d - v) * (d - v)
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
                for (v, c) in zip(values, weights) {
                    let u = ps == 0 ? pz : min(max((v / ps).rounded() + pz, 0), Float(f.maxCode))
                    plain += c * ((u - pz) * ps - v) * ((u - pz) * ps - v)
                }
                #expect(error <= plain * (1 + 1e-5) + 1e-12, "\(f) row \(r) group \(g): error \(error) above the plain recipe's \(plain)")
            }
        }
        #expect(deq[3 * columns..<4 * columns].allSatisfy { $0 == 0 }, "\(f): a zero row stays zero")
    }

    /// The search's error weights: rms(group) + |w| (1 for INT8 per channel, which is not searched).
    static func searchWeights(_ values: [Float], perChannel: Bool) -> [Float] {
        if perChannel { return values.map { _ in 1 } }
        let rms = (values.reduce(0) { $0 + $1 * $1 } / Float(values.count)).squareRoot()
        return values.map { rms + abs($0) }
    }

    /// int4 groups of 128 and 64, symmetric and with zero points, on a fixed random matrix with heavy
    /// tails (as trained weights have): the searched scales cut the weighted squared error below plain
    /// round to nearest's (at 2026-12-08: 0.93 and 0.90 of it with zero points, g128 and g64; under 0.9
    /// symmetric), and the plain squared error too.
    @Test(arguments: [128, 64], [false, true])
    func searchedScalesBeatRoundToNearest(groupSize: Int, zeroPoints: Bool) throws {
        let f = WeightOnlyFormat(bits: 4, groupSize: groupSize, hasZeros: zeroPoints)
        var rng = LCG(state: 2026)
        let rows = 32, columns = 1024
        let w = (0..<rows * columns).map { _ in let u = rng.next(); return 0.02 * u * (1 + 3 * u * u) + 0.002 * rng.next() }
        let deq = try HostTensor.float32(w, shape: [rows, columns]).quantized(f).floatValues()
        var searched: (weighted: Double, plain: Double) = (0, 0), nearest: (weighted: Double, plain: Double) = (0, 0)
        for r in 0..<rows {
            for g in 0..<f.groupCount(columns: columns) {
                let range = f.group(g, columns: columns)
                let values = range.map { w[r * columns + $0] }
                let weights = Self.searchWeights(values, perChannel: false)
                // Plain round to nearest: max|w| / 7 symmetric; min/max (0 included) with zero points.
                let s: Float, z: Float
                if zeroPoints {
                    let l = min(values.min()!, 0), h = max(values.max()!, 0)
                    s = halfToFloat(halfBits((h - l) / 15)); z = min(max((-l / s).rounded(), 0), 15)
                } else {
                    s = halfToFloat(halfBits(values.map(abs).max()! / 7)); z = 8
                }
                for (i, k) in range.enumerated() {
                    let v = values[i], u = min(max((v / s).rounded() + z, 0), 15)
                    let dn = Double((u - z) * s - v), ds = Double(deq[r * columns + k] - v), c = Double(weights[i])
                    nearest.weighted += c * dn * dn; nearest.plain += dn * dn
                    searched.weighted += c * ds * ds; searched.plain += ds * ds
                }
            }
        }
        let weighted = searched.weighted / nearest.weighted, plain = searched.plain / nearest.plain
        #expect(weighted < 0.96, "\(f): weighted squared error \(weighted) of round to nearest's")
        #expect(plain < 0.95, "\(f): squared error \(plain) of round to nearest's")
    }

    @Test func quantizingRejectsWhatItCannotHold() {
        let f = WeightOnlyFormat(bits: 4, groupSize: 32, hasZeros: false)
        #expect(throws: QuantizationError.self) { try HostTensor.float32([Float](repeating: 1, count: 48), shape: [1, 48]).quantized(f) }
        let w8 = try? HostTensor.float32([Float](repeating: 1, count: 32), shape: [1, 32]).quantized(.int8PerChannel)
        #expect(throws: QuantizationError.self) { try w8?.quantized(f) }
    }
}
