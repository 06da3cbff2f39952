// Weight-only (.w8 / .w4) matmuls on the CPU, computed on the codes as stored: both paths against
// Double references, in every format the loaders produce, and batch invariance.
import Compute
import CPUCompute
import Testing

/// A weight-only test matrix: quantized from random floats, or packed from random codes, scales and
/// zeros (as the GGUF conversions make them: zeros fractional, some negative or above the code range).
struct WeightOnlyCase: Sendable, CustomStringConvertible {
    let format: WeightOnlyFormat
    let packed: Bool

    init(_ bits: Int, group: Int, zeros: Bool, packed: Bool = false) {
        format = WeightOnlyFormat(bits: bits, groupSize: group, hasZeros: zeros)
        self.packed = packed
    }

    var description: String { "\(format)\(packed ? ", packed" : "")" }

    /// Input widths tried: K not a multiple of the group (96 with g64 / g128, 576 with g128), a long
    /// row, and for 8 bits a K of 16 mod 32 (the activations' last block of 32 is half empty).
    var columnCounts: [Int] { format.bits == 8 ? [80, 96, 576, 1536] : [96, 576, 1536] }

    func matrix(rows: Int, columns: Int, rng: inout LCG) throws -> HostTensor {
        guard packed else {
            return try HostTensor.float32(rng.array(rows * columns, scale: 0.5), shape: [rows, columns]).quantized(format)
        }
        let groupCount = format.groupCount(columns: columns), maxCode = Float(format.maxCode)
        let scales = (0..<rows * groupCount).map { _ in 0.001 + 0.01 * (rng.next() + 1) }
        // Zeros fractional, from a bit below 0 to a bit above the top code; codes scattered around
        // their zero (clamped to the code range), as a quantizer's are.
        let zeros = format.hasZeros ? (0..<rows * groupCount).map { _ in (maxCode + 1) * (0.6 * rng.next() + 0.5) } : nil
        var codes = [UInt8](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for g in 0..<groupCount {
                let z = zeros?[r * groupCount + g] ?? format.symmetricZero
                for k in format.group(g, columns: columns) {
                    codes[r * columns + k] = UInt8(min(max((z + rng.next() * maxCode / 2).rounded(), 0), maxCode))
                }
            }
        }
        return format.pack(rows: rows, columns: columns, codes: codes, scales: scales, zeros: zeros)
    }

    static let all: [WeightOnlyCase] = [
        WeightOnlyCase(8, group: 0, zeros: false),                   // int8_wo
        WeightOnlyCase(8, group: 16, zeros: false, packed: true),    // from Q6_K
        WeightOnlyCase(8, group: 16, zeros: true, packed: true),
        WeightOnlyCase(8, group: 32, zeros: false, packed: true),    // from Q8_0 / Q5_0
        WeightOnlyCase(8, group: 32, zeros: true, packed: true),     // from Q5_1 / Q5_K
        WeightOnlyCase(8, group: 48, zeros: true, packed: true),     // groups across blocks of 32
        WeightOnlyCase(4, group: 32, zeros: false),                  // int4_wo and Q4_0
        WeightOnlyCase(4, group: 32, zeros: true),
        WeightOnlyCase(4, group: 32, zeros: true, packed: true),     // from Q4_1 / Q4_K
        WeightOnlyCase(4, group: 64, zeros: false),
        WeightOnlyCase(4, group: 64, zeros: true),
        WeightOnlyCase(4, group: 128, zeros: false),
        WeightOnlyCase(4, group: 128, zeros: true),
    ]
}

/// x as the fast path sees it: per block of 32 columns d = max|x| / 127 and x ≈ d · round(x / d),
/// rounded to nearest even as the kernels do.
func eightBitActivations(_ x: [Float], columns k: Int) -> [Float] {
    var out = x
    for rowStart in stride(from: 0, to: x.count, by: k) {
        for b in stride(from: 0, to: k, by: 32) {
            let block = (rowStart + b)..<(rowStart + min(k, b + 32))
            let d = x[block].reduce(0) { max($0, abs($1)) } / 127, id: Float = d > 0 ? 1 / d : 0
            for i in block { out[i] = d * (x[i] * id).rounded(.toNearestOrEven) }
        }
    }
    return out
}

/// The largest relative error of any row (of rowLength values) of a against b.
func worstRowError(_ a: [Float], _ b: [Float], rowLength: Int) -> Float {
    stride(from: 0, to: b.count, by: rowLength).map { relativeError(a[$0..<$0 + rowLength], b[$0..<$0 + rowLength]) }.max() ?? 0
}

@Suite struct WeightOnlyMatmulTests {
    let exact = CPUBackend(exactQuantizedMath: true)
    let fast = CPUBackend(exactQuantizedMath: false)
    /// Output features: odd, so the kernels' row pairs leave one over.
    let rowCount = 37

    func matmul(_ b: CPUBackend, _ w: Tensor, _ x: ArraySlice<Float>, tokens n: Int, bias: [Float]?) -> [Float] {
        let k = w.rowLength, out = poisoned(b, [n, w.rowCount])
        b.matmul(activation(b, Array(x), [n, k]), weight: w, bias: bias.map { activation(b, $0, [1, w.rowCount]) }, into: out)
        return b.download(out)
    }

    @Test(arguments: WeightOnlyCase.all)
    func matmulMatchesReference(_ c: WeightOnlyCase) throws {
        var rng = LCG(state: UInt64(c.format.bits * 1000 + c.format.groupSize) + (c.format.hasZeros ? 7 : 0) + (c.packed ? 13 : 0))
        let m = rowCount, maxTokens = 64
        for k in c.columnCounts {
            let host = try c.matrix(rows: m, columns: k, rng: &rng)
            let deq = host.floatValues()
            let x = rng.array(maxTokens * k), bias = rng.array(m)
            let expected = referenceMatmul(x, deq, n: maxTokens, k: k, m: m, bias: bias)
            let expectedQ = referenceMatmul(eightBitActivations(x, columns: k), deq, n: maxTokens, k: k, m: m, bias: bias)
            let label = "\(c) k=\(k)"
            for backend in [exact, fast] {
                let w = try backend.upload(host)
                #expect(w.dtype == c.format.dtype && w.weightOnly == c.format)
                #expect(backend.download(w) == deq, "\(label): download dequantizes")
                for n in [1, 3, 17, 64] {
                    let withBias = n != 3   // n = 3 runs without a bias
                    let got = matmul(backend, w, x[0..<n * k], tokens: n, bias: withBias ? bias : nil)
                    let want = withBias ? Array(expected[0..<n * m]) : (0..<n * m).map { expected[$0] - bias[$0 % m] }
                    if backend.exactQuantizedMath {
                        // float32 sums of exactly dequantized weights
                        let err = relativeError(got, want)
                        #expect(err < 1e-5, "\(label) n=\(n) exact: relative error \(err)")
                    } else {
                        // Activations rounded to 8 bits per 32 columns: each off by up to max|x| / 254 of its
                        // block, about 0.4% of these uniform inputs' RMS, so a row's outputs are off by about
                        // 0.4% of their norm; 1e-2 leaves room for the spread over rows.
                        let err = worstRowError(got, want, rowLength: m)
                        #expect(err < 1e-2, "\(label) n=\(n) fast: worst row error \(err)")
                        // Against the same 8-bit activations, only float32 rounding is left.
                        let wantQ = withBias ? Array(expectedQ[0..<n * m]) : (0..<n * m).map { expectedQ[$0] - bias[$0 % m] }
                        let errQ = worstRowError(got, wantQ, rowLength: m)
                        #expect(errQ < 1e-5, "\(label) n=\(n) fast vs 8-bit activations: worst row error \(errQ)")
                    }
                }
            }
        }
    }

    /// Row t of a 17-token matmul equals the same token computed alone, bit for bit, on both paths.
    @Test(arguments: WeightOnlyCase.all)
    func matmulIsBatchInvariant(_ c: WeightOnlyCase) throws {
        var rng = LCG(state: 41)
        let n = 17, k = c.format.bits == 8 ? 208 : 576, m = rowCount
        let host = try c.matrix(rows: m, columns: k, rng: &rng)
        let x = rng.array(n * k), bias = rng.array(m)
        for backend in [exact, fast] {
            let w = try backend.upload(host)
            let together = matmul(backend, w, x[...], tokens: n, bias: bias)
            for t in 0..<n {
                let alone = matmul(backend, w, x[t * k..<(t + 1) * k], tokens: 1, bias: bias)
                #expect(alone == Array(together[t * m..<(t + 1) * m]), "\(c) exact=\(backend.exactQuantizedMath) token \(t)")
            }
        }
    }
}
