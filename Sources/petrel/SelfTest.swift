// `petrel selftest --device cuda`: every ComputeBackend op of a device against the CPU reference
// over several shapes (fresh random inputs, outputs poisoned with NaN before each run), then
// whole-model logits of the tiny fixture, a GPTQ act-order fixture and a random SmolLM2-shaped model. Prints one table
// row per check and exits non-zero if any fails. This is how kernels are tested on the GPU
// machine, which has no Swift toolchain.
import ArgumentParser
import CPUCompute
import Compute
import CUDACompute
import Foundation
import Synchronization
import Dispatch
import Runtime
import Engine
import Models
import Checkpoints

struct SelfTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest", abstract: "Check a device's backend against the CPU reference, op by op and end to end.")

    @Option(help: "The device to check: cuda (or cpu, which checks the reference against itself).") var device: Device = .cuda
    @Option(help: "A small Hugging Face checkpoint folder for the end-to-end check.") var fixture = "Tests/Fixtures/tiny-llama"
    @Option(help: "A small GPTQ act-order (desc_act) checkpoint folder for the end-to-end and step-graph checks.")
    var actOrderFixture = "Tests/Fixtures/quantized/gptq-4bit-actorder"
    @Option(help: "Seed for the random inputs.") var seed: UInt64 = 7

    @Option(help: "Element types to check on the GPU, separated by ','.") var gpuDtypes = "f16,bf16"
    @OptionGroup var cuda: CUDAFlags

    func run() throws {
        let types = device == .cpu ? [GPUDType.f16] : try gpuDtypes.split(separator: ",").map {
            guard let t = GPUDType(rawValue: String($0)) else { throw ValidationError("--gpu-dtypes: '\($0)' is not f16 or bf16") }
            return t
        }
        var passed = 0, failed = 0
        for type in types {
            let gpu = try device.makeBackend(exactQuantizedMath: true, gpuDtype: type, cuda: cuda.options)
            print("device: \(describe(gpu))\(device == .cuda ? ", \(type)" : "")")
            var check = OpCheck(ref: CPUBackend(exactQuantizedMath: true), dev: gpu, seed: seed,
                                elementType: device == .cuda ? type.dtype : .f16)
            print("| op | shape | max rel error | tolerance | ok |")
            print("|---|---|---|---|---|")
            try check.all(fixtures: [fixture, actOrderFixture])
            print("\(type): \(check.passed) passed, \(check.failed) failed\n")
            passed += check.passed
            failed += check.failed
        }
        print("\(passed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}

/// Runs each op on the reference and the device from identical inputs (rounded to the device's
/// element type, so both start from the same numbers) and compares: max |dev - ref| / max |ref|;
/// NaN always fails. Tolerances are stated for fp16 and widened 8x for bf16 (3 fewer mantissa
/// bits: 8x the rounding of every stored value).
struct OpCheck {
    let ref: ComputeBackend
    let dev: ComputeBackend
    let elementType: DType
    var rng: SplitMix64
    var passed = 0
    var failed = 0

    init(ref: ComputeBackend, dev: ComputeBackend, seed: UInt64, elementType: DType = .f16) {
        self.ref = ref
        self.dev = dev
        self.elementType = elementType
        rng = SplitMix64(seed: seed)
    }

    /// `f` as the device stores it.
    func rounded(_ f: Float) -> Float {
        elementType == .bf16 ? Float(bitPattern: UInt32(bfloat16Bits(f)) << 16) : roundToHalf(f)
    }

    /// A tolerance stated for fp16, for this device's element type.
    func tol(_ fp16: Float) -> Float { elementType == .bf16 ? fp16 * 8 : fp16 }

    // MARK: inputs

    mutating func normals(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in rounded(rng.normal() * scale) }
    }

    /// The same values on both backends.
    func pair(_ values: [Float], _ shape: [Int]) throws -> (Tensor, Tensor) {
        let host = HostTensor.float32(values, shape: shape)
        return (try ref.upload(HostTensor.float32(values, shape: shape)), try dev.upload(host))
    }

    /// Output tensors filled with NaN on both backends.
    func poisoned(_ shape: [Int]) throws -> (Tensor, Tensor) {
        try pair([Float](repeating: .nan, count: shape.reduce(1, *)), shape)
    }

    mutating func record(_ op: String, _ shape: String, _ a: [Float], _ b: [Float], tolerance: Float) {
        var maxDiff: Float = 0, maxRef: Float = 0
        var bad = a.count != b.count
        for i in 0..<min(a.count, b.count) {
            if !b[i].isFinite || !a[i].isFinite { bad = true; break }
            maxDiff = max(maxDiff, abs(a[i] - b[i]))
            maxRef = max(maxRef, abs(a[i]))
        }
        let err = bad ? Float.infinity : maxDiff / max(maxRef, 1e-20)
        let ok = err <= tolerance
        if ok { passed += 1 } else { failed += 1 }
        print("| \(op) | \(shape) | \(bad ? "NaN/size" : String(format: "%.2e", err)) | \(String(format: "%.0e", tolerance)) | \(ok ? "ok" : "FAIL") |")
    }

    mutating func compare(_ op: String, _ shape: String, _ outs: (Tensor, Tensor), tolerance: Float) {
        record(op, shape, ref.download(outs.0), dev.download(outs.1), tolerance: tolerance)
    }

    /// A weight of `dtype` with valid random contents: floats ~N(0, 0.05), quantized blocks with
    /// random codes and small scales.
    mutating func randomWeight(_ dtype: DType, rows: Int, cols: Int) -> HostTensor {
        let count = rows * cols
        let buffer = OwnedBuffer(byteCount: dtype.byteCount(elements: count)!)
        let raw = buffer.mutableBytes
        switch dtype {
        case .f32:
            for i in 0..<count { raw.storeBytes(of: rng.normal() * 0.05, toByteOffset: i * 4, as: Float.self) }
        case .f16:
            for i in 0..<count { raw.storeBytes(of: halfBits(rng.normal() * 0.05), toByteOffset: i * 2, as: UInt16.self) }
        case .bf16:
            for i in 0..<count { raw.storeBytes(of: UInt16((rng.normal() * 0.05).bitPattern >> 16), toByteOffset: i * 2, as: UInt16.self) }
        case .q8_0, .q4_0, .q4_1:
            for i in 0..<raw.count { raw[i] = UInt8(truncatingIfNeeded: rng.next()) }
            for b in 0..<(count / 32) {
                let base = b * dtype.blockBytes
                raw.storeBytes(of: halfBits(Float(rng.uniform()) * 0.01 + 0.001), toByteOffset: base, as: UInt16.self)
                if dtype == .q4_1 { raw.storeBytes(of: halfBits(-Float(rng.uniform()) * 0.05), toByteOffset: base + 2, as: UInt16.self) }
            }
        case .q5_0, .q5_1, .q4_K, .q5_K, .q6_K, .w8, .w4, .e4m3:
            preconditionFailure("randomWeight(\(dtype)): the self-test makes these by converting or quantizing")
        }
        return HostTensor(dtype: dtype, shape: [rows, cols], bytes: UnsafeRawBufferPointer(raw), owner: buffer)
    }

    // MARK: checks

    /// Every check; `fixtures` are checkpoint folders for the end-to-end checks, the second a GPTQ
    /// act-order one (its input orders gathered inside the step graphs too).
    mutating func all(fixtures: [String]) throws {
        for (vocab, dim, count) in [(300, 64, 1), (300, 576, 17), (1000, 4096, 33)] {
            let table = normals(vocab * dim)
            let t = try pair(table, [vocab, dim])
            let ids = (0..<count).map { _ in Int32(rng.below(vocab)) }
            let out = try poisoned([count, dim])
            ref.embed(ids, table: t.0, into: out.0)
            dev.embed(ids, table: t.1, into: out.1)
            compare("embed", "vocab \(vocab) dim \(dim) ids \(count)", out, tolerance: 0)
        }
        // Rows in registers (d <= 8192, even: 1, 2 or 4 pairs a thread), else the plain kernel.
        for (n, d, inPlace) in [(1, 64, false), (5, 576, false), (33, 4096, false), (7, 4096, true), (3, 6144, true),
                                (33, 4097, false), (2, 9000, true)] {
            let x = try pair(normals(n * d), [n, d])
            let w = try pair(normals(d, scale: 0.2).map { rounded(1 + $0) }, [d])
            let out = inPlace ? x : try poisoned([n, d])
            ref.rmsNorm(x.0, weight: w.0, eps: 1e-5, into: out.0)
            dev.rmsNorm(x.1, weight: w.1, eps: 1e-5, into: out.1)
            compare("rmsNorm", "(\(n), \(d))\(inPlace ? " in place" : "")", out, tolerance: tol(2e-3))
        }
        let matmulCases: [(Int, Int, Int, DType, Bool)] = [
            (1, 64, 128, .f16, false), (7, 576, 1536, .f16, true), (33, 4096, 512, .f16, false),
            (2, 4096, 12288, .f16, false), (3, 11008, 4096, .f16, true), (8, 4096, 1000, .f16, false),
            (9, 4096, 1000, .f16, true), (4, 72, 136, .f16, false), (1, 4096, 6144, .f16, false),
            (1, 4096, 11008, .f16, false), (128, 4096, 4096, .f16, false), (300, 1024, 1000, .f16, false),
            (5, 576, 1536, .f32, false), (5, 576, 1536, .bf16, false), (5, 576, 1536, .q8_0, false),
            (5, 576, 1536, .q4_0, false), (5, 576, 1536, .q4_1, false),
        ]
        for (n, k, m, dtype, withBias) in matmulCases {
            let x = try pair(normals(n * k), [n, k])
            let host = randomWeight(dtype, rows: m, cols: k)
            let w = (try ref.upload(host), try dev.upload(host))
            let bias = withBias ? try pair(normals(m), [m]) : nil
            let out = try poisoned([n, m])
            ref.matmul(x.0, weight: w.0, bias: bias?.0, into: out.0)
            dev.matmul(x.1, weight: w.1, bias: bias?.1, into: out.1)
            compare("matmul", "x (\(n), \(k)) w \(dtype) (\(m), \(k))\(withBias ? " + bias" : "")", out, tolerance: tol(5e-3))
        }
        // The streaming GEMV (n <= 4 rows by default) sums each row in the same order whatever n
        // is: row 0 of a 4-row product must equal, bit for bit, the same row multiplied alone.
        for (k, m) in [(4096, 4096), (576, 1536)] {
            let xs = normals(4 * k)
            let w = try dev.upload(randomWeight(.f16, rows: m, cols: k))
            let one = try dev.upload(.float32(Array(xs[0..<k]), shape: [1, k])), eight = try dev.upload(.float32(xs, shape: [4, k]))
            let outOne = dev.makeActivation([1, m]), outEight = dev.makeActivation([4, m])
            dev.matmul(one, weight: w, bias: nil, into: outOne)
            dev.matmul(eight, weight: w, bias: nil, into: outEight)
            record("matmul batch invariance", "row 0 of 4 vs alone, (\(m), \(k))", dev.download(outOne),
                   Array(dev.download(outEight)[0..<m]), tolerance: 0)
        }
        for (n, k, f) in [(1, 576, 1536), (5, 4096, 11008), (8, 64, 128), (16, 4096, 11008)] {
            let x = try pair(normals(n * k), [n, k])
            let host = randomWeight(.f16, rows: 2 * f, cols: k)
            let w = (try ref.upload(host), try dev.upload(host))
            let out = try poisoned([n, f])
            ref.matmulSwiGLU(x.0, gateUp: w.0, into: out.0)
            dev.matmulSwiGLU(x.1, gateUp: w.1, into: out.1)
            compare("matmulSwiGLU", "x (\(n), \(k)) w (2 x \(f), \(k))", out, tolerance: tol(5e-3))
        }
        // The fused norm + matmul (the GEMV normalises its own copy for a few rows; larger n: norm
        // into the scratch, then the matmul) and matmul + add, against the host's unfused ops.
        for (n, k, m, withBias, swiGLU) in [(1, 4096, 12288, false, false), (3, 576, 1536, true, false), (5, 4096, 1000, false, false),
                                            (12, 4096, 4096, false, false), (1, 4096, 2 * 11008, false, true),
                                            (4, 576, 2 * 1536, false, true), (9, 4096, 2 * 1024, false, true)] {
            let x = try pair(normals(n * k), [n, k])
            let norm = try pair(normals(k, scale: 0.2).map { rounded(1 + $0) }, [k])
            let host = randomWeight(.f16, rows: m, cols: k)
            let w = (try ref.upload(host), try dev.upload(host))
            let bias = withBias ? try pair(normals(m), [m]) : nil
            let normed = try poisoned([n, k])
            let out = try poisoned([n, swiGLU ? m / 2 : m])
            if swiGLU {
                ref.rmsNormMatmulSwiGLU(x.0, norm: norm.0, eps: 1e-5, gateUp: w.0, normed: normed.0, into: out.0)
                dev.rmsNormMatmulSwiGLU(x.1, norm: norm.1, eps: 1e-5, gateUp: w.1, normed: normed.1, into: out.1)
            } else {
                ref.rmsNormMatmul(x.0, norm: norm.0, eps: 1e-5, weight: w.0, bias: bias?.0, normed: normed.0, into: out.0)
                dev.rmsNormMatmul(x.1, norm: norm.1, eps: 1e-5, weight: w.1, bias: bias?.1, normed: normed.1, into: out.1)
            }
            compare(swiGLU ? "rmsNormMatmulSwiGLU" : "rmsNormMatmul", "x (\(n), \(k)) w (\(m), \(k))\(withBias ? " + bias" : "")", out,
                    tolerance: tol(5e-3))
        }
        for (n, k, m) in [(1, 4096, 4096), (3, 11008, 4096), (7, 576, 1536), (33, 4096, 512)] {
            let x = try pair(normals(n * k), [n, k])
            let acc = try pair(normals(n * m), [n, m])
            let host = randomWeight(.f16, rows: m, cols: k)
            let w = (try ref.upload(host), try dev.upload(host))
            ref.matmulAdd(x.0, weight: w.0, into: acc.0)
            dev.matmulAdd(x.1, weight: w.1, into: acc.1)
            compare("matmulAdd", "x (\(n), \(k)) w (\(m), \(k))", acc, tolerance: tol(5e-3))
        }
        // Batch invariance of the fused GEMV: row 0 of 4 equals the same row alone, bit for bit.
        for swiGLU in [false, true] {
            let k = 4096, m = swiGLU ? 2 * 2048 : 4096, f = swiGLU ? m / 2 : m
            let xs = normals(4 * k)
            let norm = try dev.upload(.float32(normals(k, scale: 0.2).map { rounded(1 + $0) }, shape: [k]))
            let w = try dev.upload(randomWeight(.f16, rows: m, cols: k))
            var rows: [[Float]] = []
            for n in [1, 4] {
                let x = try dev.upload(.float32(Array(xs[0..<(n * k)]), shape: [n, k]))
                let normed = dev.makeActivation([n, k]), out = dev.makeActivation([n, f])
                if swiGLU {
                    dev.rmsNormMatmulSwiGLU(x, norm: norm, eps: 1e-5, gateUp: w, normed: normed, into: out)
                } else {
                    dev.rmsNormMatmul(x, norm: norm, eps: 1e-5, weight: w, bias: nil, normed: normed, into: out)
                }
                rows.append(Array(dev.download(out)[0..<f]))
            }
            record("\(swiGLU ? "rmsNormMatmulSwiGLU" : "rmsNormMatmul") batch invariance", "row 0 of 4 vs alone, (\(m), \(k))",
                   rows[0], rows[1], tolerance: 0)
        }
        for (n, heads, kvHeads, hd) in [(3, 4, 2, 16), (17, 9, 3, 64), (33, 32, 32, 128), (5, 32, 8, 128)] {
            let width = (heads + 2 * kvHeads) * hd
            let x = try pair(normals(n * width), [n, width])
            let positions = (0..<n).map { _ in Int32(rng.below(4096)) }
            let inv = (0..<(hd / 2)).map { Float(1 / pow(10000.0, Double(2 * $0) / Double(hd))) }
            ref.rope(x.0, headCount: heads + kvHeads, headDim: hd, positions: positions, inverseFrequencies: inv)
            dev.rope(x.1, headCount: heads + kvHeads, headDim: hd, positions: positions, inverseFrequencies: inv)
            compare("rope", "(\(n), \(heads)+\(kvHeads) heads x \(hd))", x, tolerance: tol(3e-3))
        }
        for (heads, kvHeads, hd, blockSize) in [(4, 2, 16, 16), (9, 3, 64, 32), (32, 32, 128, 32), (32, 8, 128, 16), (14, 2, 64, 32)] {
            try attention(heads: heads, kvHeads: kvHeads, headDim: hd, blockSize: blockSize, rope: false)
        }
        for (heads, kvHeads, hd, blockSize) in [(9, 3, 64, 32), (32, 8, 128, 16)] {
            try attention(heads: heads, kvHeads: kvHeads, headDim: hd, blockSize: blockSize, rope: true)
        }
        for (heads, kvHeads, hd) in [(32, 32, 128), (32, 8, 128)] {
            try largeDecode(heads: heads, kvHeads: kvHeads, headDim: hd)
        }
        for (n, f) in [(1, 128), (9, 1536), (64, 11008)] {
            let gu = try pair(normals(n * 2 * f, scale: 2), [n, 2 * f])
            let out = try poisoned([n, f])
            ref.swiglu(gu.0, into: out.0)
            dev.swiglu(gu.1, into: out.1)
            compare("swiglu", "(\(n), \(f))", out, tolerance: tol(3e-3))
        }
        for (n, d) in [(1, 63), (9, 576), (64, 4096)] {
            let acc = try pair(normals(n * d), [n, d])
            let x = try pair(normals(n * d), [n, d])
            ref.add(x.0, into: acc.0)
            dev.add(x.1, into: acc.1)
            compare("add", "(\(n), \(d))", acc, tolerance: tol(2e-3))
        }
        for (n, d, rows) in [(5, 64, [4]), (40, 4096, [0, 39, 7, 7, 12])] {
            let x = try pair(normals(n * d), [n, d])
            let out = try poisoned([rows.count, d])
            ref.gatherRows(x.0, rows: rows, into: out.0)
            dev.gatherRows(x.1, rows: rows, into: out.1)
            compare("gatherRows", "(\(n), \(d)) rows \(rows.count)", out, tolerance: 0)
        }
        // GPTQ act-order's input gather (an order each backend made once): permutations of odd and
        // even widths, and an order narrower than its input with repeats; copied exactly.
        for (n, d, k) in [(1, 4096, 4096), (3, 577, 577), (17, 128, 77), (17, 11008, 11008), (2, 9, 16)] {
            let x = try pair(normals(n * d), [n, d])
            var columns = (0..<max(d, k)).map { Int32($0 % d) }
            for i in stride(from: columns.count - 1, to: 0, by: -1) { columns.swapAt(i, rng.below(i + 1)) }
            columns = Array(columns.prefix(k))
            let out = try poisoned([n, k])
            ref.gatherColumns(x.0, order: try ref.makeColumnOrder(columns), into: out.0)
            dev.gatherColumns(x.1, order: try dev.makeColumnOrder(columns), into: out.1)
            compare("gatherColumns", "(\(n), \(d)) columns \(k)\(k == d ? " permuted" : k < d ? " of \(d)" : " with repeats")", out,
                    tolerance: 0)
        }
        try weightOnlyMatmuls()
        try tokenSelection()
        try endToEnd(fixtures: fixtures)
        try stepGraphs(actOrderFixture: fixtures.count > 1 ? fixtures[1] : nil)
        try engineSampling()
        try deviceFaults()
    }

    /// The device's top-k (greedy is k = 1) against the host's reference (TokenSelectionReference):
    /// same ids and values, log-sum-exp within 1e-4; rows with planted ties (the lower id must
    /// come first); then with logit edits (penalties and masks, applied in fp32 on the device).
    mutating func tokenSelection() throws {
        guard let selector = dev as? DeviceTokenSelection else { return }
        for (rows, vocab, k, withEdits) in [(1, 32000, 1, false), (5, 49152, 8, false), (130, 32000, 1, false), (3, 151936, 40, false),
                                            (1, 32000, 1, true), (6, 32000, 64, true), (130, 32000, 4, true)] {
            var values = normals(rows * vocab, scale: 3)
            for r in 0..<rows where r % 2 == 0 {   // a tie for first place, and one further down
                let top = values[(r * vocab)..<((r + 1) * vocab)].max()!
                values[r * vocab + vocab - 1] = top
                values[r * vocab + 7] = top
            }
            var edits: [LogitEdit] = []
            if withEdits {
                for r in 0..<rows {
                    // The row's best ids get penalised (so the order changes), one is masked, and
                    // a few random ids get each kind of edit.
                    let row = Array(values[(r * vocab)..<((r + 1) * vocab)])
                    let best = row.indices.sorted { row[$0] > row[$1] }.prefix(6)
                    var touched = Set<Int>()
                    for (j, id) in best.enumerated() where touched.insert(id).inserted {
                        edits.append(LogitEdit(row: Int32(r), id: Int32(id), repetition: j == 0 ? 1 : 1.3,
                                               subtract: j % 2 == 0 ? 0.75 : 0, masked: j == 0))
                    }
                    for _ in 0..<20 {
                        let id = rng.below(vocab)
                        guard touched.insert(id).inserted else { continue }
                        edits.append(LogitEdit(row: Int32(r), id: Int32(id), repetition: 1.2, subtract: Float(rng.below(4)) * 0.4))
                    }
                }
            }
            let temperatures = withEdits ? (0..<rows).map { Float(0.5 + 0.25 * Double($0 % 4)) } : []
            let t = try dev.upload(.float32(values, shape: [rows, vocab]))
            let picked = selector.topCandidates(t, count: k, temperatures: temperatures, edits: edits)
            let want = TokenSelectionReference.topCandidates(values, rows: rows, vocab: vocab, count: k,
                                                             temperatures: temperatures, edits: edits)
            let idsOK = picked.ids == want.ids && picked.values == want.values
            var lseErr: Float = 0
            for r in 0..<rows { lseErr = max(lseErr, abs(picked.logSumExp[r] - want.logSumExp[r]) / max(abs(want.logSumExp[r]), 1)) }
            let what = "(\(rows), \(vocab)) k \(k)\(withEdits ? ", \(edits.count) edits, temperatures" : "")"
            record("topCandidates ids", what, [idsOK ? 0 : 1], [0], tolerance: 0)
            record("topCandidates logSumExp", what, [1], [1 + lseErr], tolerance: 1e-4)
            // The logits themselves are left as they were.
            if withEdits {
                let after = dev.download(t)
                record("topCandidates leaves logits", what, values, after, tolerance: 0)
            }
        }
    }

    /// Three steps through one paged cache: prefills of several lengths (one sequence split in
    /// two chunks; the 280-token one long enough for the cuBLAS prefill path, the others on the
    /// tiled kernel), then mixed decodes and a prefill chunk over cached prefixes, then decodes
    /// after copyKVBlock moved one sequence's first block elsewhere.
    /// With `rope`, the fused ropeAttention runs instead (positions = context positions).
    mutating func attention(heads: Int, kvHeads: Int, headDim hd: Int, blockSize: Int, rope: Bool) throws {
        let lengths = [1, 37, 100, 300, 280]
        let maxTokens = 300 + 40
        let blocksPerSeq = (maxTokens + blockSize - 1) / blockSize
        let blockCount = lengths.count * blocksPerSeq + 1
        var order = Array(0..<blockCount)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.below(i + 1)) }
        var tables = (0..<lengths.count).map { s in order[(s * blocksPerSeq)..<((s + 1) * blocksPerSeq)].map(Int32.init) }
        let spare = Int32(order[blockCount - 1])
        let layout = KVCacheLayout(layerCount: 2, blockCount: blockCount, blockSize: blockSize, kvHeadCount: kvHeads, headDim: hd)
        let caches = (try ref.makeKVCache(layout), try dev.makeKVCache(layout))
        let width = (heads + 2 * kvHeads) * hd
        let scale = 1 / Float(hd).squareRoot()
        var context = [Int](repeating: 0, count: lengths.count)

        func step(_ name: String, _ newTokens: [Int], _ me: inout OpCheck) throws {
            var seqs: [AttentionSequence] = []
            var begin = 0
            for (s, count) in newTokens.enumerated() where count > 0 {
                seqs.append(AttentionSequence(tokenBegin: begin, tokenCount: count, contextBefore: context[s], blockTable: tables[s]))
                begin += count
            }
            let qkv = try me.pair(me.normals(begin * width), [begin, width])
            let out = try me.poisoned([begin, heads * hd])
            if rope {
                var positions: [Int32] = []
                for s in seqs { positions += (0..<s.tokenCount).map { Int32(s.contextBefore + $0) } }
                let inv = (0..<(hd / 2)).map { Float(1 / pow(10000.0, Double(2 * $0) / Double(hd))) }
                me.ref.ropeAttention(qkv: qkv.0, headCount: heads, kvHeadCount: kvHeads, headDim: hd, positions: positions,
                                     inverseFrequencies: inv, cache: caches.0, layer: 1, sequences: seqs, scale: scale, into: out.0)
                me.dev.ropeAttention(qkv: qkv.1, headCount: heads, kvHeadCount: kvHeads, headDim: hd, positions: positions,
                                     inverseFrequencies: inv, cache: caches.1, layer: 1, sequences: seqs, scale: scale, into: out.1)
            } else {
                me.ref.attention(qkv: qkv.0, headCount: heads, kvHeadCount: kvHeads, headDim: hd, cache: caches.0, layer: 1,
                                 sequences: seqs, scale: scale, into: out.0)
                me.dev.attention(qkv: qkv.1, headCount: heads, kvHeadCount: kvHeads, headDim: hd, cache: caches.1, layer: 1,
                                 sequences: seqs, scale: scale, into: out.1)
            }
            me.compare(rope ? "ropeAttention" : "attention", "\(heads)/\(kvHeads) heads x \(hd), block \(blockSize): \(name)", out, tolerance: me.tol(5e-3))
            for (s, count) in newTokens.enumerated() { context[s] += count }
        }
        try step("prefill \(lengths.map { $0 == 300 ? 200 : $0 })", lengths.map { $0 == 300 ? 200 : $0 }, &self)
        try step("decode x3 + chunk 100 on 200 cached + decode", [1, 1, 1, 100, 1], &self)
        // Beam fork: sequence 2's first block copied to the spare block, which it reads instead.
        ref.copyKVBlock(caches.0, from: Int(tables[2][0]), to: Int(spare))
        dev.copyKVBlock(caches.1, from: Int(tables[2][0]), to: Int(spare))
        tables[2][0] = spare
        try step("decode x5 after copyKVBlock", [1, 1, 1, 1, 1], &self)
    }

    /// A decode batch large enough for the attention's variant without early K/V loads, which the
    /// kernels take for grids of more than 4 blocks an SM (kDecodeEarlyBlocksPerSM in
    /// kernels/cuda/attention_decode.cu) and `attention` above never reaches: the prompts of
    /// `count` sequences, then one decode step of them all, each context one split-K partition
    /// (at most 512 keys), count × kvHeads blocks.
    mutating func largeDecode(heads: Int, kvHeads: Int, headDim hd: Int) throws {
        guard let gpu = dev as? CUDABackend else { return }
        let count = 4 * gpu.multiprocessorCount / kvHeads + 8
        let blockSize = 16, blocksPerSequence = 4
        let lengths = (0..<count).map { 20 + $0 * 7 % 40 }   // prompts of 20-59 tokens
        let layout = KVCacheLayout(layerCount: 1, blockCount: count * blocksPerSequence, blockSize: blockSize,
                                   kvHeadCount: kvHeads, headDim: hd)
        let caches = (try ref.makeKVCache(layout), try dev.makeKVCache(layout))
        let tables = (0..<count).map { s in (0..<blocksPerSequence).map { Int32(s * blocksPerSequence + $0) } }
        let width = (heads + 2 * kvHeads) * hd, scale = 1 / Float(hd).squareRoot()
        for decode in [false, true] {
            var sequences: [AttentionSequence] = []
            var rows = 0
            for s in 0..<count {
                let n = decode ? 1 : lengths[s]
                sequences.append(AttentionSequence(tokenBegin: rows, tokenCount: n, contextBefore: decode ? lengths[s] : 0,
                                                   blockTable: tables[s]))
                rows += n
            }
            let qkv = try pair(normals(rows * width), [rows, width])
            let out = try poisoned([rows, heads * hd])
            ref.attention(qkv: qkv.0, headCount: heads, kvHeadCount: kvHeads, headDim: hd, cache: caches.0, layer: 0,
                          sequences: sequences, scale: scale, into: out.0)
            dev.attention(qkv: qkv.1, headCount: heads, kvHeadCount: kvHeads, headDim: hd, cache: caches.1, layer: 0,
                          sequences: sequences, scale: scale, into: out.1)
            compare("attention", "\(heads)/\(kvHeads) heads x \(hd): " +
                    (decode ? "decode x\(count), \(count * kvHeads) blocks (no early K/V loads)" : "prefill of \(count) prompts"),
                    out, tolerance: tol(5e-3))
        }
    }

    /// Whole-model logits: the fixture checkpoints and a random SmolLM2-135M-shaped model (GQA,
    /// head_dim 64, 30 layers), a prefill and two decode steps each.
    mutating func endToEnd(fixtures: [String]) throws {
        var models: [(String, LlamaModel, LlamaModel)] = []
        for fixture in fixtures {
            guard FileManager.default.fileExists(atPath: fixture) else {
                print("| model | \(fixture) | missing | - | FAIL |")
                failed += 1
                continue
            }
            let ckpt = try LoadedCheckpoint.open(fixture)
            models.append((URL(fileURLWithPath: fixture).lastPathComponent,
                           try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: ref),
                           try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: dev)))
        }
        let smol = BuiltinConfig.smollm2_135m.config
        let weights = LlamaWeights.random(config: smol, dtype: .f16, seed: 3)
        models.append(("random smollm2-135m f16", try LlamaModel(config: smol, weights: weights, backend: ref),
                       try LlamaModel(config: smol, weights: weights, backend: dev)))
        for (name, a, b) in models {
            let vocab = a.config.vocabularySize
            let blockSize = 16, promptLength = 40
            let layout = a.kvCacheLayout(blockCount: 4, blockSize: blockSize)
            let caches = (try a.backend.makeKVCache(layout), try b.backend.makeKVCache(layout))
            let table: [Int32] = [2, 0, 3, 1]
            var tokens = (0..<promptLength).map { _ in Int32(rng.below(vocab)) }
            var context = 0
            for stepIndex in 0..<3 {
                let n = tokens.count
                let batch = ForwardBatch(tokens: tokens, positions: (0..<n).map { Int32(context + $0) },
                                         sequences: [AttentionSequence(tokenBegin: 0, tokenCount: n, contextBefore: context, blockTable: table)],
                                         logitRows: Array(0..<n))
                let la = a.backend.download(a.forward(batch, cache: caches.0))
                let lb = b.backend.download(b.forward(batch, cache: caches.1))
                record("model logits", "\(name): \(stepIndex == 0 ? "prefill \(n)" : "decode \(stepIndex)") x \(vocab)", la, lb, tolerance: tol(1e-2))
                // Greedy agreement on the last row, unless the reference's two best are within fp16 rounding.
                let last = Array(la[((n - 1) * vocab)...]), lastDev = Array(lb[((n - 1) * vocab)...])
                let best = last.indices.max { last[$0] < last[$1] }!, bestDev = lastDev.indices.max { lastDev[$0] < lastDev[$1] }!
                let sorted = last.sorted(by: >)
                let tie = sorted[0] - sorted[1] < tol(2e-3) * max(abs(sorted[0]), 1)
                record("model argmax", "\(name): step \(stepIndex) (ref \(best), dev \(bestDev)\(tie ? ", near tie" : ""))",
                       [best == bestDev || tie ? 0 : 1], [0], tolerance: 0)
                context += n
                tokens = [Int32(best)]
            }
        }
    }

    /// Decode steps replayed from CUDA graphs (kernels/cuda/graphs.cu) against the same steps run
    /// kernel by kernel on a second context with graphs off (CUDABackend.Options): bit-identical
    /// logits at every step, over batches of 5 and then 4 sequences whose contexts cross KV-block,
    /// block-table-capacity and split-K-partition boundaries (so shapes are warmed up, captured,
    /// replayed, and captured anew); and graphs must really have been captured and replayed. A
    /// random SmolLM2-135M-shaped model, then the GPTQ act-order fixture (a column gather before
    /// three of each layer's matmuls, in the graphs), when there is one.
    mutating func stepGraphs(actOrderFixture: String?) throws {
        guard let gpu = dev as? CUDABackend else { return }
        guard gpu.options.cudaGraphs else {
            print("| step graphs | --no-cuda-graphs: not checked | - | - | skipped |")
            return
        }
        var kernelByKernel = gpu.options
        kernelByKernel.cudaGraphs = false
        let plain = try CUDABackend(libraryPath: gpu.libraryPath, elementType: elementType, options: kernelByKernel)
        let smol = BuiltinConfig.smollm2_135m.config
        try stepGraphs("random smollm2-135m", smol, LlamaWeights.random(config: smol, dtype: .f16, seed: 4), gpu: gpu, plain: plain)
        if let path = actOrderFixture, FileManager.default.fileExists(atPath: path) {   // endToEnd reports one missing
            let ckpt = try LoadedCheckpoint.open(path)
            try stepGraphs(URL(fileURLWithPath: path).lastPathComponent, ckpt.config, ckpt.weights, gpu: gpu, plain: plain)
        }
    }

    mutating func stepGraphs(_ name: String, _ config: TransformerConfig, _ weights: LlamaWeights, gpu: CUDABackend,
                             plain: CUDABackend) throws {
        let vocab = config.vocabularySize
        let a = try LlamaModel(config: config, weights: weights, backend: dev)
        let b = try LlamaModel(config: config, weights: weights, backend: plain)
        // The decode steps of `a` as a ModelRunner runs them: on buffers the step graphs keep.
        guard let graphs = DecodeStepGraphs(model: a) else { return }
        let blockSize = 16, perSequence = 16, count = 5
        let layout = a.kvCacheLayout(blockCount: perSequence * count, blockSize: blockSize)
        let caches = (try dev.makeKVCache(layout), try plain.makeKVCache(layout))
        var blocks = (0..<(perSequence * count)).map(Int32.init)
        for i in stride(from: blocks.count - 1, to: 0, by: -1) { blocks.swapAt(i, rng.below(i + 1)) }
        let tables = (0..<count).map { Array(blocks[($0 * perSequence)..<(($0 + 1) * perSequence)]) }
        func table(_ i: Int, covering tokens: Int) -> [Int32] { Array(tables[i].prefix((tokens + blockSize - 1) / blockSize)) }
        func argmax(_ l: [Float], row: Int) -> Int32 {
            let r = l[(row * vocab)..<((row + 1) * vocab)]
            return Int32(r.indices.max { r[$0] < r[$1] }! - row * vocab)
        }
        let before = gpu.graphCounts
        var contexts = [3, 17, 30, 64, 100]
        // The prompts in one ragged prefill (run kernel by kernel on both: not a decode step).
        var tokens: [Int32] = [], positions: [Int32] = [], sequences: [AttentionSequence] = [], rows: [Int] = []
        for (i, c) in contexts.enumerated() {
            sequences.append(AttentionSequence(tokenBegin: tokens.count, tokenCount: c, contextBefore: 0, blockTable: table(i, covering: c)))
            tokens += (0..<c).map { _ in Int32(rng.below(vocab)) }
            positions += (0..<c).map(Int32.init)
            rows.append(tokens.count - 1)
        }
        let prefill = ForwardBatch(tokens: tokens, positions: positions, sequences: sequences, logitRows: rows)
        let first = dev.download(a.forward(prefill, cache: caches.0))
        _ = plain.download(b.forward(prefill, cache: caches.1))
        var next = (0..<count).map { argmax(first, row: $0) }
        var allA: [Float] = [], allB: [Float] = []
        let steps = 70
        for step in 0..<steps {
            let active = step >= 30 && step < 45 ? [0, 1, 2, 4] : Array(0..<count)   // sequence 3 sits out a while
            let batch = ForwardBatch(
                tokens: active.map { next[$0] }, positions: active.map { Int32(contexts[$0]) },
                sequences: active.enumerated().map { j, i in
                    AttentionSequence(tokenBegin: j, tokenCount: 1, contextBefore: contexts[i], blockTable: table(i, covering: contexts[i] + 1))
                },
                logitRows: Array(active.indices))
            let la = dev.download(graphs.forward(batch, cache: caches.0) ?? a.forward(batch, cache: caches.0))
            let lb = plain.download(b.forward(batch, cache: caches.1))
            allA += la
            allB += lb
            for (j, i) in active.enumerated() {
                next[i] = argmax(la, row: j)
                contexts[i] += 1
            }
        }
        let after = gpu.graphCounts
        let captured = after.captured - before.captured, replayed = after.replayed - before.replayed
        record("step graphs = kernel by kernel",
               "\(name): \(steps) decode steps of 5 and 4 sequences, contexts 4-\(contexts.max()!), logits bit for bit",
               allB, allA, tolerance: 0)
        record("step graphs used", "\(name): \(captured) captured, \(replayed) of \(steps) steps replayed",
               [captured >= 3 && replayed >= steps - 12 ? 0 : 1], [0], tolerance: 0)
    }

    /// The engine on the device, tokens picked on the device (greedy, seeded top-k / top-p
    /// sampling) against the same requests with every step's logits downloaded and sampled on the
    /// host (ModelRunner.deviceSampling off), each request alone so both see the same logits: the
    /// same token ids and log probs. Then batch invariance where the kernels promise it: one-token
    /// prompts keep every matmul within the GEMV's 4 rows, so four greedy requests together must
    /// give what each gives alone (prefill chunks of more rows go through cuBLAS, whose kernel
    /// choice depends on the row count, and are not covered).
    mutating func engineSampling() throws {
        guard dev is DeviceTokenSelection else { return }
        let smol = BuiltinConfig.smollm2_135m.config
        let model = try LlamaModel(config: smol, weights: LlamaWeights.random(config: smol, dtype: .f16, seed: 3), backend: dev)
        let params = [SamplingParameters(returnLogProbs: true), SamplingParameters(temperature: 0.8, topK: 40, seed: 7, returnLogProbs: true),
                      SamplingParameters(temperature: 1.2, topK: 5, topP: 0.9, seed: 8, returnLogProbs: true),
                      SamplingParameters(temperature: 0.6, topK: 1, seed: 9, returnLogProbs: true),
                      // penalties, top-p without top-k (nucleus on the device or the full row), top log probs
                      SamplingParameters(repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: 0.3, returnLogProbs: true),
                      SamplingParameters(temperature: 0.9, topK: 20, seed: 10, repetitionPenalty: 1.2, frequencyPenalty: 0.5, returnLogProbs: true),
                      SamplingParameters(temperature: 0.5, topP: 0.8, seed: 11, returnLogProbs: true),
                      SamplingParameters(temperature: 1.5, topP: 0.95, seed: 12, presencePenalty: 0.6, returnLogProbs: true, topLogProbs: 3)]
        func run(_ prompts: [[Int32]], _ params: [SamplingParameters], device: Bool) throws -> [Int: ([Int32], [Float])] {
            let runner = try ModelRunner(model: model, blockCount: 64, blockSize: 16, deviceSampling: device)
            let engine = try Engine(config: SchedulerConfig(numBlocks: 64, blockSize: 16, maxBatchSize: 8, maxNumTokens: 2048,
                                                            enableChunkedContext: true, policy: .guaranteedNoEvict,
                                                            maxSequenceLength: smol.maxPositions), executor: runner)
            let box = ResultBox()
            let done = DispatchSemaphore(value: 0)
            Task {
                do {
                    try await withThrowingTaskGroup(of: (Int, [Int32], [Float]).self) { group in
                        for i in prompts.indices {
                            let stream = try engine.submit(Request(id: "r\(i)", prompt: prompts[i], parameters: params[i],
                                                                   stop: StopConditions(maxTokens: 24, ignoreEOS: true)))
                            group.addTask {
                                var tokens: [Int32] = [], logProbs: [Float] = []
                                for try await o in stream { tokens += o.newTokenIDs; logProbs += o.logProbs }
                                return (i, tokens, logProbs)
                            }
                        }
                        for try await (i, t, l) in group { box.put(i, t, l) }
                    }
                } catch { box.fail(error) }
                await engine.shutdown()
                done.signal()
            }
            done.wait()
            return try box.result()
        }
        for i in params.indices {
            let prompt = (0..<(12 + 5 * (i % 4))).map { _ in Int32(rng.below(smol.vocabularySize)) }
            let a = try run([prompt], [params[i]], device: true)[0]!, b = try run([prompt], [params[i]], device: false)[0]!
            let p = params[i]
            let kind = (p.temperature == 0 ? "greedy" : p.topK > 0 ? "top-k \(p.topK)" : "top-p \(p.topP)")
                + (p.repetitionPenalty != 1 || p.presencePenalty != 0 || p.frequencyPenalty != 0 ? ", penalties" : "")
                + (p.topLogProbs > 0 ? ", top \(p.topLogProbs) log probs" : "")
            record("engine sampling device = host", "request \(i): \(kind), 24 tokens",
                   [a.0 == b.0 && a.0.count == 24 ? 0 : 1], [0], tolerance: 0)
            record("engine log probs device vs host", "request \(i): \(b.1.count) values", b.1.count == 24 ? b.1 : [], a.1, tolerance: 1e-3)
        }
        let single = (0..<4).map { _ in [Int32(rng.below(smol.vocabularySize))] }
        let greedy = [SamplingParameters](repeating: SamplingParameters(), count: 4)
        let together = try run(single, greedy, device: true)
        var alone = true
        for i in 0..<4 {
            let solo = try run([single[i]], [greedy[i]], device: true)
            if solo[0]!.0 != together[i]!.0 { alone = false }
        }
        record("engine batch invariance", "4 greedy one-token prompts, alone vs together (GEMV range)", [alone ? 0 : 1], [0], tolerance: 0)
    }
}

/// Results of the engine check, filled from the task group.
final class ResultBox: Sendable {
    private let state = Mutex<(values: [Int: ([Int32], [Float])], error: (any Error)?)>(([:], nil))
    func put(_ i: Int, _ t: [Int32], _ l: [Float]) { state.withLock { $0.values[i] = (t, l) } }
    func fail(_ e: any Error) { state.withLock { $0.error = e } }
    func result() throws -> [Int: ([Int32], [Float])] {
        let (values, error) = state.withLock { $0 }
        if let error { throw error }
        return values
    }
}

/// Test inputs from the one SplitMix64.
extension SplitMix64 {
    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// Standard normal (Box-Muller).
    mutating func normal() -> Float {
        let u = max(uniform(), 1e-300), v = uniform()
        return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
    }
}

func roundToHalf(_ f: Float) -> Float { halfToFloat(halfBits(f)) }
