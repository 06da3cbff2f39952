// FP8 (E4M3) W8A8: the codec against torch's float8_e4m3fn (Tests/Fixtures/fp8/e4m3-goldens.json,
// scripts/make_fp8_fixtures.py), activation quantization per token and static, and the CPU GEMM
// against a Double reference of the same quantized operands.
import Compute
import CPUCompute
import Foundation
import TestFixtures
import Testing

@Suite struct FP8Tests {
    nonisolated(unsafe) static let goldens = try! Fixtures.json("fp8/e4m3-goldens.json")   // read-only after load

    @Test func encodeMatchesTorchBitForBit() {
        let inputs = (Self.goldens["inputs"] as! [NSNumber]).map { Float(bitPattern: $0.uint32Value) }
        let codes = (Self.goldens["codes"] as! [NSNumber]).map(\.uint8Value)
        #expect(inputs.count == codes.count && inputs.count > 600)
        for (x, c) in zip(inputs, codes) {
            #expect(FP8E4M3.encode(x) == c, "encode(\(x)) = \(FP8E4M3.encode(x)), torch \(c)")
        }
        // The edges by name: 448 is 0x7E, beyond saturates (infinities too), NaN keeps its sign,
        // 2⁻¹⁰ ties to 0 and 3·2⁻¹⁰ to 2·2⁻⁹ (even), the smallest normal is code 8.
        #expect(FP8E4M3.encode(448) == 0x7E && FP8E4M3.encode(1e9) == 0x7E && FP8E4M3.encode(-.infinity) == 0xFE)
        #expect(FP8E4M3.encode(.nan) == 0x7F && FP8E4M3.encode(-Float.nan) == 0xFF)
        #expect(FP8E4M3.encode(0x1p-10) == 0 && FP8E4M3.encode(3 * 0x1p-10) == 2 && FP8E4M3.encode(0x1p-6) == 8)
        #expect(FP8E4M3.encode(-0.0) == 0x80)
    }

    @Test func decodeTableMatchesTorch() {
        let values = Self.goldens["values"] as! [Any]
        #expect(values.count == 256)
        for (c, v) in values.enumerated() {
            let got = FP8E4M3.decode(UInt8(c))
            if let n = v as? NSNumber { #expect(got == n.floatValue, "code \(c)") } else { #expect(got.isNaN, "code \(c)") }
            if !got.isNaN { #expect(FP8E4M3.encode(got) == UInt8(c) || (got == 0 && c == 0x80), "code \(c) round-trips") }
        }
    }

    @Test func activationsQuantizePerTokenAndStatically() {
        let a = Self.goldens["activations"] as! [String: Any]
        let rows = (a["rows"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
        let n = rows.count, k = rows[0].count
        let x = rows.flatMap { $0 }
        for (inputScale, codesKey) in [(Float?.none, "dynamic_codes"), ((a["static_scale"] as! NSNumber).floatValue, "static_codes")] {
            var codes = [Float](repeating: .nan, count: n * k), scales = [Float](repeating: .nan, count: n)
            FP8E4M3.quantizeActivations(x, rows: n, columns: k, inputScale: inputScale, codes: &codes, scales: &scales)
            let want = (a[codesKey] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }
            #expect(codes == want, "\(codesKey)")
            if inputScale == nil {
                #expect(scales == (a["dynamic_scales"] as! [NSNumber]).map(\.floatValue))
                #expect(scales[3] == 0 && codes[(3 * k)...].allSatisfy { $0 == 0 }, "an all-zero row stays zero")
            } else {
                #expect(scales.allSatisfy { $0 == inputScale })
                #expect(codes[k + 5] == 448, "a static scale saturates an outlier at 448")
            }
        }
    }

    @Test func quantizedWeightsKeepEachRowsAmaxAndRoundTrip() throws {
        var rng = LCG(state: 18)
        let rows = 24, columns = 80
        var w = rng.array(rows * columns, scale: 0.3)
        for k in 0..<columns { w[5 * columns + k] = 0 }   // an all-zero row
        let q = try HostTensor.float32(w, shape: [rows, columns]).quantizedFP8()
        #expect(q.dtype == .e4m3 && q.fp8 == .dynamic && q.bytes.count == rows * 96)
        let back = q.floatValues()
        for r in 0..<rows {
            let row = w[(r * columns)..<((r + 1) * columns)]
            let amax = row.map(abs).max()!, (codes, scale) = q.fp8Row(r)
            #expect(scale == amax / 448)
            for k in 0..<columns {
                #expect(codes[k] == (scale == 0 ? 0 : FP8E4M3.encode(w[r * columns + k] / scale)))
                // E4M3 keeps 3 mantissa bits: within 1/16 relative, or a subnormal step.
                #expect(abs(back[r * columns + k] - w[r * columns + k]) <= max(abs(w[r * columns + k]) / 16, scale * 0x1p-10) * 1.0001)
            }
        }
        #expect(throws: QuantizationError.self) {
            _ = try FP8Format.dynamic.pack(rows: 1, columns: 16, codes: UnsafeRawBufferPointer(start: [UInt8](repeating: 0x7F, count: 16), count: 16), scales: [1])
        }
    }

    /// out = (Σ decode(q_x) decode(code)) · (s_x s_w) + bias, in Double.
    static func reference(_ x: [Float], n: Int, k: Int, weight: HostTensor, bias: [Float]?) -> [Float] {
        var codes = [Float](repeating: 0, count: n * k), scales = [Float](repeating: 0, count: n)
        FP8E4M3.quantizeActivations(x, rows: n, columns: k, inputScale: weight.fp8!.inputScale, codes: &codes, scales: &scales)
        let m = weight.rowCount
        var out = [Float](repeating: 0, count: n * m)
        for r in 0..<m {
            let (wc, sw) = weight.fp8Row(r)
            for t in 0..<n {
                var dot = 0.0
                for j in 0..<k { dot += Double(codes[t * k + j]) * Double(FP8E4M3.decode(wc[j])) }
                out[t * m + r] = Float(dot * Double(scales[t] * sw)) + (bias?[r] ?? 0)
            }
        }
        return out
    }

    @Test(arguments: [Float?.none, 0.004])
    func cpuMatmulMatchesTheReference(inputScale: Float?) throws {
        var rng = LCG(state: 7)
        let backend = CPUBackend()
        for (k, m) in [(72, 40), (576, 96), (1536, 64)] {
            let w = try HostTensor.float32(rng.array(m * k, scale: 0.1), shape: [m, k]).quantizedFP8()
            let weight = inputScale.map { s in
                HostTensor(dtype: .e4m3, shape: w.shape, bytes: w.bytes, owner: w.owner, fp8: FP8Format(inputScale: s))
            } ?? w
            let bias = rng.array(m)
            let wt = try backend.upload(weight), bt = try backend.upload(.float32(bias, shape: [m]))
            var rows: [[Float]] = []
            for n in [1, 3, 70] {
                let x = rng.array(n * k)
                let xt = try backend.upload(.float32(x, shape: [n, k])), out = backend.makeActivation([n, m])
                backend.matmul(xt, weight: wt, bias: bt, into: out)
                let got = backend.download(out), want = Self.reference(x, n: n, k: k, weight: weight, bias: bias)
                #expect(relativeError(got, want) < 1e-6, "k \(k) m \(m) n \(n)")
                rows.append(Array(got[0..<m]))
                // Batch invariance: row 0 alone gives the same bits.
                let x0 = try backend.upload(.float32(Array(x[0..<k]), shape: [1, k])), o0 = backend.makeActivation([1, m])
                backend.matmul(x0, weight: wt, bias: bt, into: o0)
                #expect(backend.download(o0) == Array(got[0..<m]), "k \(k) n \(n): the first token's result depends on the batch")
            }
        }
    }

    @Test func backendsSayWhetherTheyMultiplyFP8() {
        #expect(CPUBackend().multipliesFP8)
    }
}
