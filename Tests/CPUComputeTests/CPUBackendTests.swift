// CPU backend ops against naive Swift references, over several shapes and every weight type.
import Compute
import CPUCompute
import Foundation
import Testing

/// GGML-style reference quantizers, so tests can make weights of every type.
enum Quantize {
    static func half(_ f: Float) -> UInt16 {
        // round-to-nearest-even float → half, normal range only (test data is small)
        let b = f.bitPattern
        let sign = UInt16((b >> 16) & 0x8000)
        let exp = Int((b >> 23) & 0xFF) - 127 + 15
        if f == 0 || exp <= 0 { return sign }
        var man = (b & 0x7F_FFFF) + 0x1000
        var e = exp
        if man & 0x80_0000 != 0 { man = 0; e += 1 }
        return sign | UInt16(e << 10) | UInt16(man >> 13)
    }

    static func bytes(_ values: [Float], _ type: DType) -> [UInt8] {
        var out: [UInt8] = []
        func put16(_ v: UInt16) { out.append(UInt8(v & 0xFF)); out.append(UInt8(v >> 8)) }
        switch type {
        case .f32: for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        case .f16: for v in values { put16(half(v)) }
        case .bf16: for v in values { put16(UInt16(v.bitPattern >> 16)) }
        case .q8_0:
            for b in stride(from: 0, to: values.count, by: 32) {
                let blk = values[b..<b + 32]
                let amax = blk.map(abs).max()!
                let d = amax / 127, id: Float = d > 0 ? 1 / d : 0
                put16(half(d))
                for v in blk { out.append(UInt8(bitPattern: Int8((v * id).rounded()))) }
            }
        case .q4_0:
            for b in stride(from: 0, to: values.count, by: 32) {
                let blk = Array(values[b..<b + 32])
                let mx = blk.max(by: { abs($0) < abs($1) })!
                let d = mx / -8, id: Float = d != 0 ? 1 / d : 0
                put16(half(d))
                for j in 0..<16 {
                    let lo = UInt8(min(15, max(0, Int(blk[j] * id + 8.5))))
                    let hi = UInt8(min(15, max(0, Int(blk[j + 16] * id + 8.5))))
                    out.append(lo | hi << 4)
                }
            }
        case .q4_1:
            for b in stride(from: 0, to: values.count, by: 32) {
                let blk = Array(values[b..<b + 32])
                let mn = blk.min()!, mx = blk.max()!
                let d = (mx - mn) / 15, id: Float = d != 0 ? 1 / d : 0
                put16(half(d)); put16(half(mn))
                for j in 0..<16 {
                    let lo = UInt8(min(15, max(0, Int((blk[j] - mn) * id + 0.5))))
                    let hi = UInt8(min(15, max(0, Int((blk[j + 16] - mn) * id + 0.5))))
                    out.append(lo | hi << 4)
                }
            }
        case .q5_0, .q5_1, .q4_K, .q5_K, .q6_K, .w8, .w4, .e4m3:
            preconditionFailure("bytes(_:_:) makes float and Q8_0/Q4_0/Q4_1 blocks only, not \(type)")
        }
        return out
    }

    static func tensor(_ values: [Float], shape: [Int], _ type: DType) -> HostTensor {
        let raw = bytes(values, type)
        let buffer = OwnedBuffer(byteCount: raw.count)
        raw.withUnsafeBytes { buffer.mutableBytes.copyMemory(from: $0) }
        return HostTensor(dtype: type, shape: shape, bytes: UnsafeRawBufferPointer(buffer.mutableBytes), owner: buffer)
    }
}

struct LCG {
    var state: UInt64
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
    }
    mutating func array(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
}

func relativeError<A: Collection<Float>, B: Collection<Float>>(_ a: A, _ b: B) -> Float {
    var num: Float = 0, den: Float = 0
    for (x, y) in zip(a, b) { num += (x - y) * (x - y); den += y * y }
    return (num / max(den, 1e-30)).squareRoot()
}

/// out (n, m) = x (n, k) · wᵀ (m, k) [+ bias (m)], summed in Double.
func referenceMatmul(_ x: [Float], _ w: [Float], n: Int, k: Int, m: Int, bias: [Float]?) -> [Float] {
    var out = [Float](repeating: 0, count: n * m)
    x.withUnsafeBufferPointer { x in
        w.withUnsafeBufferPointer { w in
            for t in 0..<n { for r in 0..<m {
                var s: Double = 0
                for i in 0..<k { s += Double(x[t * k + i]) * Double(w[r * k + i]) }
                out[t * m + r] = Float(s) + (bias?[r] ?? 0)
            } }
        }
    }
    return out
}

/// A float32 activation of the given values, owned by the backend.
func activation(_ b: CPUBackend, _ values: [Float], _ shape: [Int]) -> Tensor {
    let t = b.makeActivation(shape)
    let host = HostTensor.float32(values, shape: shape)
    let w = try! b.upload(host)
    b.gatherRows(w, rows: Array(0..<shape[0]), into: t)   // copy into an owned activation
    return t
}

/// Fresh output filled with NaN so a kernel that skips elements fails.
func poisoned(_ b: CPUBackend, _ shape: [Int]) -> Tensor {
    let n = shape.reduce(1, *)
    return activation(b, [Float](repeating: .nan, count: n), shape)
}

@Suite struct CPUBackendTests {
    let exact = CPUBackend(exactQuantizedMath: true)
    let fast = CPUBackend(exactQuantizedMath: false)

    @Test(arguments: [DType.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1])
    func matmulMatchesReference(type: DType) throws {
        var rng = LCG(state: UInt64(type.rawValue) + 7)
        for (n, k, m) in [(1, 64, 16), (3, 96, 40), (17, 256, 33), (33, 576, 7)] {
            let wValues = rng.array(m * k, scale: 0.5)
            let w = Quantize.tensor(wValues, shape: [m, k], type)
            let deq = w.floatValues()   // the exact weights the kernel sees
            let x = rng.array(n * k)
            let bias = rng.array(m)
            let expected = referenceMatmul(x, deq, n: n, k: k, m: m, bias: bias)
            for backend in [exact, fast] {
                let out = poisoned(backend, [n, m])
                backend.matmul(activation(backend, x, [n, k]), weight: try backend.upload(w),
                               bias: activation(backend, bias, [1, m]), into: out)
                let got = backend.download(out)
                let err = relativeError(got, expected)
                // Exact path: float32 rounding. Fast path: activations quantized to 8 bits.
                let tolerance: Float = backend.exactQuantizedMath || !type.isQuantized ? 1e-5 : 1.5e-2
                #expect(err < tolerance, "\(type) n=\(n) k=\(k) m=\(m) exact=\(backend.exactQuantizedMath): relative error \(err)")
            }
        }
    }

    /// A token's matmul result must not depend on which other tokens share the call
    /// (the engine's batch invariance rests on this): bit-identical, every type, both paths.
    @Test(arguments: [DType.f32, .bf16, .q8_0, .q4_0, .q4_1])
    func matmulIsBatchInvariant(type: DType) throws {
        var rng = LCG(state: 99)
        let n = 11, k = 128, m = 24
        let w = Quantize.tensor(rng.array(m * k), shape: [m, k], type)
        let x = rng.array(n * k)
        for backend in [exact, fast] {
            let weight = try backend.upload(w)
            let all = poisoned(backend, [n, m])
            backend.matmul(activation(backend, x, [n, k]), weight: weight, bias: nil, into: all)
            let together = backend.download(all)
            for t in 0..<n {
                let one = poisoned(backend, [1, m])
                backend.matmul(activation(backend, Array(x[t * k..<(t + 1) * k]), [1, k]), weight: weight, bias: nil, into: one)
                #expect(backend.download(one) == Array(together[t * m..<(t + 1) * m]), "\(type) token \(t)")
            }
        }
    }

    @Test func dequantizationAgreesWithSwift() throws {
        var rng = LCG(state: 3)
        for type in [DType.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1] {
            let values = rng.array(4 * 64)
            let t = Quantize.tensor(values, shape: [4, 64], type)
            let swift = t.floatValues()
            let kernel = fast.download(try fast.upload(t))
            #expect(swift == kernel, "\(type)")
            let err = relativeError(swift, values)
            let tol: Float = [.f32: 0, .f16: 1e-3, .bf16: 1e-2, .q8_0: 1e-2, .q4_0: 0.15, .q4_1: 0.1][type]!
            #expect(err <= tol, "\(type) quantization error \(err)")
        }
    }

    @Test func rmsNormSwigluAddEmbed() throws {
        var rng = LCG(state: 11)
        let n = 5, d = 72
        let x = rng.array(n * d), w = rng.array(d)
        let out = poisoned(fast, [n, d])
        fast.rmsNorm(activation(fast, x, [n, d]), weight: activation(fast, w, [1, d]), eps: 1e-5, into: out)
        var expected: [Float] = []
        for t in 0..<n {
            let row = x[t * d..<(t + 1) * d]
            let scale = 1 / (row.reduce(0) { $0 + $1 * $1 } / Float(d) + 1e-5).squareRoot()
            expected += zip(row, w).map { $0 * scale * $1 }
        }
        #expect(relativeError(fast.download(out), expected) < 1e-6)

        let gu = rng.array(n * 2 * d)
        let act = poisoned(fast, [n, d])
        fast.swiglu(activation(fast, gu, [n, 2 * d]), into: act)
        var sw: [Float] = []
        for t in 0..<n { for i in 0..<d { let g = gu[t * 2 * d + i]; sw.append(g / (1 + expf(-g)) * gu[t * 2 * d + d + i]) } }
        #expect(relativeError(fast.download(act), sw) < 1e-6)

        let acc = activation(fast, x, [n, d])
        fast.add(activation(fast, gu.prefix(n * d).map { $0 }, [n, d]), into: acc)
        #expect(fast.download(acc) == zip(x, gu.prefix(n * d)).map { $0 + $1 })

        let table = Quantize.tensor(rng.array(10 * 64), shape: [10, 64], .q8_0)
        let emb = poisoned(fast, [3, 64])
        fast.embed([7, 0, 7], table: try fast.upload(table), into: emb)
        let all = table.floatValues()
        #expect(fast.download(emb) == Array(all[448..<512]) + Array(all[0..<64]) + Array(all[448..<512]))
    }

    /// GPTQ act-order's column gather through the protocol, as a model calls it: a permutation,
    /// an order with repeats narrower than its input, and one row, odd and even widths.
    @Test(arguments: [(1, 7), (3, 8), (17, 129)])
    func gatherColumnsFollowsTheOrder(n: Int, d: Int) throws {
        var rng = LCG(state: UInt64(n * 1000 + d))
        let backend: ComputeBackend = fast
        let x = rng.array(n * d)
        let permutation = (0..<d).map { Int32(($0 * 5 + 3) % d) }   // 5 is prime to 7, 8 and 129
        for columns in [permutation, [Int32(d - 1), 0, 2, 2, 1]] {
            let order = try backend.makeColumnOrder(columns)
            #expect(order.count == columns.count && order.inputWidth == Int(columns.max()!) + 1)
            let out = poisoned(fast, [n, columns.count])
            backend.gatherColumns(activation(fast, x, [n, d]), order: order, into: out)
            #expect(fast.download(out) == (0..<n).flatMap { r in columns.map { x[r * d + Int($0)] } })
        }
    }

    @Test func ropeRotatesHalves() {
        var rng = LCG(state: 5)
        let n = 3, heads = 3, hd = 8, stride = 40
        let x = rng.array(n * stride)
        let t = activation(fast, x, [n, stride])
        let inv: [Float] = (0..<hd / 2).map { 1 / powf(10000, Float(2 * $0) / Float(hd)) }
        let pos: [Int32] = [0, 5, 17]
        fast.rope(t, headCount: heads, headDim: hd, positions: pos, inverseFrequencies: inv)
        var expected = x
        for r in 0..<n { for h in 0..<heads { for i in 0..<hd / 2 {
            let a = x[r * stride + h * hd + i], b = x[r * stride + h * hd + i + hd / 2]
            let ang = Float(pos[r]) * inv[i]
            expected[r * stride + h * hd + i] = a * cosf(ang) - b * sinf(ang)
            expected[r * stride + h * hd + i + hd / 2] = b * cosf(ang) + a * sinf(ang)
        } } }
        #expect(relativeError(fast.download(t), expected) < 1e-6)
    }

    /// Paged attention over scrambled block tables against a dense causal reference.
    @Test(arguments: [(4, 4), (4, 2), (4, 1), (6, 3)])
    func pagedAttentionMatchesDense(heads: Int, kvHeads: Int) throws {
        var rng = LCG(state: UInt64(heads * 10 + kvHeads))
        let hd = 16, blockSize = 4
        let layout = KVCacheLayout(layerCount: 2, blockCount: 24, blockSize: blockSize, kvHeadCount: kvHeads, headDim: hd)
        let cache = try fast.makeKVCache(layout)
        let width = (heads + 2 * kvHeads) * hd
        // Two sequences: A prefills 7 tokens then decodes 1 (batched with B's 10-token prefill).
        let tablesA: [Int32] = [9, 2, 17], tablesB: [Int32] = [5, 0, 21, 3]
        let qkvA = rng.array(8 * width), qkvB = rng.array(10 * width)
        // Step 1: A's first 7 tokens alone.
        let step1 = activation(fast, Array(qkvA[0..<7 * width]), [7, width])
        let out1 = poisoned(fast, [7, heads * hd])
        fast.attention(qkv: step1, headCount: heads, kvHeadCount: kvHeads, headDim: hd, cache: cache, layer: 1,
                       sequences: [AttentionSequence(tokenBegin: 0, tokenCount: 7, contextBefore: 0, blockTable: tablesA)],
                       scale: 0.25, into: out1)
        // Step 2: B's 10-token prefill then A's 8th token, in one ragged batch.
        let step2 = activation(fast, qkvB + Array(qkvA[7 * width..<8 * width]), [11, width])
        let out2 = poisoned(fast, [11, heads * hd])
        fast.attention(qkv: step2, headCount: heads, kvHeadCount: kvHeads, headDim: hd, cache: cache, layer: 1,
                       sequences: [AttentionSequence(tokenBegin: 0, tokenCount: 10, contextBefore: 0, blockTable: tablesB),
                                   AttentionSequence(tokenBegin: 10, tokenCount: 1, contextBefore: 7, blockTable: tablesA)],
                       scale: 0.25, into: out2)
        func dense(_ qkv: [Float], _ count: Int) -> [Float] {
            var out = [Float](repeating: 0, count: count * heads * hd)
            for t in 0..<count { for h in 0..<heads {
                let kvh = h / (heads / kvHeads)
                var scores: [Float] = []
                for j in 0...t {
                    var s: Float = 0
                    for d in 0..<hd { s += qkv[t * width + h * hd + d] * qkv[j * width + (heads + kvh) * hd + d] }
                    scores.append(s * 0.25)
                }
                let mx = scores.max()!
                let e = scores.map { expf($0 - mx) }
                let sum = e.reduce(0, +)
                for j in 0...t { for d in 0..<hd { out[t * heads * hd + h * hd + d] += e[j] / sum * qkv[j * width + (heads + kvHeads + kvh) * hd + d] } }
            } }
            return out
        }
        let refA = dense(qkvA, 8), refB = dense(qkvB, 10)
        let got1 = fast.download(out1), got2 = fast.download(out2)
        #expect(relativeError(got1, Array(refA[0..<7 * heads * hd])) < 1e-5)
        #expect(relativeError(Array(got2[0..<10 * heads * hd]), refB) < 1e-5)
        #expect(relativeError(Array(got2[10 * heads * hd..<11 * heads * hd]), Array(refA[7 * heads * hd..<8 * heads * hd])) < 1e-5)
    }
}
