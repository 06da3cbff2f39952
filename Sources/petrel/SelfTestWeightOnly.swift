// The self-test's weight-only matmuls (kernels/cuda/weight_only.cu): every .w8 / .w4 format, fused
// variant and path against the reference's float32 matmul of the same matrices dequantized.
import CUDACompute
import Compute

extension OpCheck {
    /// The matmuls a weight-only matrix (.w8 / .w4) can be given.
    enum WeightOnlyOp: CaseIterable {
        case matmul, matmulBias, matmulAdd, matmulSwiGLU, rmsNormMatmul, rmsNormMatmulSwiGLU
    }

    /// A random (rows, cols) weight-only matrix: floats ~N(0, 0.05) quantized by
    /// HostTensor.quantized (integer zeros), or, `packed`, random codes, scales and fractional
    /// zeros (as GGUF's K-quants convert) through WeightOnlyFormat.pack.
    mutating func randomWeightOnly(_ f: WeightOnlyFormat, rows: Int, cols: Int, packed: Bool) throws -> HostTensor {
        if !packed { return try HostTensor.float32((0..<(rows * cols)).map { _ in rng.normal() * 0.05 }, shape: [rows, cols]).quantized(f) }
        let groups = f.groupCount(columns: cols)
        let codes = (0..<(rows * cols)).map { _ in UInt8(rng.below(f.maxCode + 1)) }
        // Either sign: the quantizer's symmetric 4-bit groups have negative scales too.
        let scales = (0..<(rows * groups)).map { _ in Float((rng.below(2) == 0 ? 1 : -1) * 0.05 * (1 + rng.uniform()) / Double(f.maxCode)) }
        let zeros = f.hasZeros ? (0..<(rows * groups)).map { _ in Float(rng.uniform()) * Float(f.maxCode) } : nil
        return f.pack(rows: rows, columns: cols, codes: codes, scales: scales, zeros: zeros)
    }

    /// Weight-only matmuls (kernels/cuda/weight_only.cu) against the reference's float32 matmul of
    /// the same matrices dequantized (HostTensor.floatValues): every format (int8 per-channel, g16,
    /// g32 with zeros; int4 g32, g64 with zeros, g128 with and without), every fused variant, all
    /// three paths (the GEMV to 4 rows, the tiled GEMM, dequantize + cuBLAS from 512 rows), odd
    /// output counts, k not a multiple of the group (576 in groups of 128, 96 in groups of 64),
    /// k = 4096 and 11008. Tolerance as the fp16 matmuls' (bf16: 8x): the device rounds each weight
    /// to its element type once. Then the GEMV's row-count independence, bit for bit.
    mutating func weightOnlyMatmuls() throws {
        guard dev is CUDABackend else { return }   // the reference backend has no .w8 / .w4 kernels
        let formats = [WeightOnlyFormat.int8PerChannel, WeightOnlyFormat(bits: 8, groupSize: 16, hasZeros: false),
                       WeightOnlyFormat(bits: 8, groupSize: 32, hasZeros: true), WeightOnlyFormat(bits: 4, groupSize: 32, hasZeros: false),
                       WeightOnlyFormat(bits: 4, groupSize: 64, hasZeros: true), WeightOnlyFormat(bits: 4, groupSize: 128, hasZeros: false),
                       WeightOnlyFormat(bits: 4, groupSize: 128, hasZeros: true)]
        let shapes = [(1, 576, 1001), (3, 96, 37), (4, 4096, 515), (5, 576, 1001), (17, 11008, 129), (64, 4096, 515),
                      (300, 576, 257), (600, 96, 37)]   // (n, k, m)
        // Ops and weight sources rotate across shapes and formats, so every op meets every path
        // (GEMV, GEMM, dequantize + cuBLAS) and both weight sources somewhere: the op index and the
        // source do not step together (6 ops, 2 sources, 8 shapes; one extra step per format).
        var variant = 0
        for (i, format) in formats.enumerated() {
            for (j, (n, k, m)) in shapes.enumerated() where format.problem(columns: k) == nil {
                let op = WeightOnlyOp.allCases[variant % WeightOnlyOp.allCases.count]
                try weightOnlyCase(op, format: format, n: n, k: k, m: m, packed: (i + j / 2) % 2 == 1)
                variant += 1
            }
            variant += 1
        }
        // The fused norm's copy of x in shared memory past 40 KiB (norm + SwiGLU, the most of it).
        for (n, k) in [(4, 6144), (3, 8192)] {
            try weightOnlyCase(.rmsNormMatmulSwiGLU, format: WeightOnlyFormat(bits: 4, groupSize: 128, hasZeros: true), n: n, k: k, m: 129,
                               packed: false)
        }
        for format in [WeightOnlyFormat.int8PerChannel, WeightOnlyFormat(bits: 4, groupSize: 128, hasZeros: true)] {
            for op in [WeightOnlyOp.matmul, .rmsNormMatmulSwiGLU] {
                let k = 4096, m = 1001, swiGLU = op == .rmsNormMatmulSwiGLU
                let xs = normals(4 * k)
                let norm = try dev.upload(.float32(normals(k, scale: 0.2).map { rounded(1 + $0) }, shape: [k]))
                let w = try dev.upload(try randomWeightOnly(format, rows: swiGLU ? 2 * m : m, cols: k, packed: false))
                var rows: [[Float]] = []
                for n in [1, 4] {
                    let x = try dev.upload(.float32(Array(xs[0..<(n * k)]), shape: [n, k]))
                    let normed = dev.makeActivation([n, k]), out = dev.makeActivation([n, m])
                    if swiGLU {
                        dev.rmsNormMatmulSwiGLU(x, norm: norm, eps: 1e-5, gateUp: w, normed: normed, into: out)
                    } else {
                        dev.matmul(x, weight: w, bias: nil, into: out)
                    }
                    rows.append(Array(dev.download(out)[0..<m]))
                }
                record("\(op) \(format) batch invariance", "row 0 of 4 vs alone, (\(m), \(k))", rows[0], rows[1], tolerance: 0)
            }
        }
    }

    mutating func weightOnlyCase(_ op: WeightOnlyOp, format f: WeightOnlyFormat, n: Int, k: Int, m: Int, packed: Bool) throws {
        let swiGLU = op == .matmulSwiGLU || op == .rmsNormMatmulSwiGLU, rows = swiGLU ? 2 * m : m
        let host = try randomWeightOnly(f, rows: rows, cols: k, packed: packed)
        let w = (try ref.upload(.float32(host.floatValues(), shape: [rows, k])), try dev.upload(host))
        let x = try pair(normals(n * k), [n, k])
        let out = op == .matmulAdd ? try pair(normals(n * m), [n, m]) : try poisoned([n, m])
        switch op {
        case .matmul, .matmulBias:
            let bias = op == .matmulBias ? try pair(normals(m), [m]) : nil
            ref.matmul(x.0, weight: w.0, bias: bias?.0, into: out.0)
            dev.matmul(x.1, weight: w.1, bias: bias?.1, into: out.1)
        case .matmulAdd:
            ref.matmulAdd(x.0, weight: w.0, into: out.0)
            dev.matmulAdd(x.1, weight: w.1, into: out.1)
        case .matmulSwiGLU:
            ref.matmulSwiGLU(x.0, gateUp: w.0, into: out.0)
            dev.matmulSwiGLU(x.1, gateUp: w.1, into: out.1)
        case .rmsNormMatmul, .rmsNormMatmulSwiGLU:
            let norm = try pair(normals(k, scale: 0.2).map { rounded(1 + $0) }, [k])
            let normed = try poisoned([n, k])
            if swiGLU {
                ref.rmsNormMatmulSwiGLU(x.0, norm: norm.0, eps: 1e-5, gateUp: w.0, normed: normed.0, into: out.0)
                dev.rmsNormMatmulSwiGLU(x.1, norm: norm.1, eps: 1e-5, gateUp: w.1, normed: normed.1, into: out.1)
            } else {
                ref.rmsNormMatmul(x.0, norm: norm.0, eps: 1e-5, weight: w.0, bias: nil, normed: normed.0, into: out.0)
                dev.rmsNormMatmul(x.1, norm: norm.1, eps: 1e-5, weight: w.1, bias: nil, normed: normed.1, into: out.1)
            }
        }
        compare("\(op) \(f)", "x (\(n), \(k)) w (\(rows), \(k))\(packed ? ", random codes" : "")", out, tolerance: tol(5e-3))
    }
}
