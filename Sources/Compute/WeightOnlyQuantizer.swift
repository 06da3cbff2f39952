// WeightOnlyQuantizer: how HostTensor.quantized chooses each group's fp16 scale and zero point,
// without calibration data. It fills WeightOnly.swift's layout and changes nothing in it.
//
// Per group, a search over scale candidates (llama.cpp's make_qx_quants / make_qkx2_quants): each
// candidate's codes, then the weighted least-squares scale (and offset) for those codes; the best
// fit, rounded to fp16, competes with the plain round-to-nearest recipes on the weighted squared
// error of the values as stored, so no group ends up worse than under plain rounding.
// Zero points stay integral (0…maxCode): a fractional zero leaves no code for w = 0 and measured
// far worse (docs/BENCHMARKS.md, "int4_wo accuracy").

/// Fits groups, keeping its scratch space (one per thread).
struct GroupFitter {
    let format: WeightOnlyFormat
    private var weight: [Float]

    /// Candidates on each side of the plain scale: the group's extreme (symmetric) or range (zero
    /// points) spread over `plain + step · i` codes, i in −steps…steps.
    static let steps = 10
    static let step: Float = 0.1

    init(format: WeightOnlyFormat, maxColumns: Int) {
        self.format = format
        weight = [Float](repeating: 1, count: maxColumns)
    }

    @inline(__always) static func fp16(_ v: Float) -> Float { halfToFloat(halfBits(v)) }

    /// Round to nearest even for |v| < 2²², in plain float arithmetic that vectorizes on any x86-64.
    @inline(__always) static func round(_ v: Float) -> Float { (v + 12_582_912) - 12_582_912 }

    /// The code of w: the nearest to w · (1 / s) + z in 0…top.
    @inline(__always) static func code(_ w: Float, inverse: Float, zero z: Float, top: Float) -> Float {
        min(max(round(w * inverse + z), 0), top)
    }

    /// Σ c (x − (u − z) s)², u each x's code.
    static func error(_ x: UnsafePointer<Float>, _ c: UnsafePointer<Float>, _ n: Int, scale s: Float, zero z: Float,
                      top: Float) -> Float {
        var e: Float = 0
        let inverse = 1 / s
        for k in 0..<n {
            let d = (code(x[k], inverse: inverse, zero: z, top: top) - z) * s - x[k]
            e += c[k] * d * d
        }
        return e
    }

    /// The error weight of each element: llama.cpp's for Q4_K without an importance matrix,
    /// rms(group) + |x|, which keeps large weights closer than plain squared error does (plain
    /// squared error clips them and measured worse).
    static func fillWeights(_ c: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
        var sumSquares: Float = 0
        for k in 0..<n { sumSquares += x[k] * x[k] }
        let rms = (sumSquares / Float(n)).squareRoot()
        for k in 0..<n { c[k] = rms + abs(x[k]) }
    }

    /// fp16 (scale, zero) of the n values at x; (0, z) for an all-zero group.
    mutating func fit(_ x: UnsafePointer<Float>, _ n: Int) -> (scale: Float, zero: Float) {
        let format = self.format, top = Float(format.maxCode)
        var lo = x[0], hi = x[0], extreme = x[0]
        for k in 0..<n {
            lo = min(lo, x[k]); hi = max(hi, x[k])
            if abs(x[k]) > abs(extreme) { extreme = x[k] }
        }
        if extreme == 0 { return (0, format.hasZeros ? 0 : format.symmetricZero) }
        return weight.withUnsafeMutableBufferPointer { wb in
            let c = wb.baseAddress!
            Self.fillWeights(c, x, n)
            var best: (scale: Float, zero: Float) = (0, format.hasZeros ? 0 : format.symmetricZero)
            var bestError = Float.infinity
            func consider(_ s: Float, _ z: Float) {
                guard s.isFinite, s != 0 else { return }
                let e = Self.error(x, c, n, scale: s, zero: z, top: top)
                if e < bestError { bestError = e; best = (s, z) }
            }
            func integral(_ z: Float) -> Float { min(max(z.rounded(), 0), top) }
            // Each candidate is one pass: its codes and the sums of the least-squares fit for them;
            // the fit's own residual ranks the candidates, and only the plain recipes and the best
            // fit are measured as stored (fp16 scale, integral zero).
            var fit: (scale: Float, zero: Float)?, fitGain = -Float.infinity
            if format.hasZeros {
                // The plain recipe: the range with 0 in it.
                let lo0 = min(lo, 0), hi0 = max(hi, 0)
                let s0 = Self.fp16((hi0 - lo0) / top)
                consider(s0, integral(-lo0 / s0))
                guard hi > lo else { return best }
                var sw: Float = 0, sx: Float = 0
                for k in 0..<n { sw += c[k]; sx += c[k] * x[k] }
                for i in -Self.steps...Self.steps {
                    // Codes of the range spread over top + step·i codes, then the least-squares
                    // w ≈ s u + m for those codes (a 2×2 system); its residual is Σ c x² − (s Σ c u x + m Σ c x).
                    let inverse = (top + Self.step * Float(i)) / (hi - lo), z = integral(-lo * inverse)
                    var sl: Float = 0, sl2: Float = 0, slx: Float = 0
                    for k in 0..<n {
                        let u = Self.code(x[k], inverse: inverse, zero: z, top: top)
                        sl += c[k] * u; sl2 += c[k] * u * u; slx += c[k] * u * x[k]
                    }
                    let det = sw * sl2 - sl * sl
                    guard det > 0 else { continue }
                    let s = (sw * slx - sx * sl) / det, m = (sl2 * sx - sl * slx) / det
                    if s > 0 && s * slx + m * sx > fitGain { fitGain = s * slx + m * sx; fit = (s, -m / s) }
                }
                if let fit { let s = Self.fp16(fit.scale); consider(s, integral(fit.zero * fit.scale / s)) }
            } else {
                let z = format.symmetricZero
                // The plain recipes: max|w| / 7 (8 bits: 127), and the extreme onto code 0.
                consider(Self.fp16(abs(extreme) / (z - 1)), z)
                consider(Self.fp16(-extreme / z), z)
                for i in -Self.steps...Self.steps {
                    // The extreme onto code 0 − step·i, then the least-squares scale for those codes;
                    // its residual is Σ c x² − (Σ c x q)² / Σ c q².
                    let inverse = -(z + Self.step * Float(i)) / extreme
                    var sxl: Float = 0, sl2: Float = 0
                    for k in 0..<n {
                        let q = Self.code(x[k], inverse: inverse, zero: z, top: top) - z
                        sxl += c[k] * x[k] * q; sl2 += c[k] * q * q
                    }
                    if sl2 > 0 && sxl * sxl / sl2 > fitGain { fitGain = sxl * sxl / sl2; fit = (sxl / sl2, z) }
                }
                if let fit { consider(Self.fp16(fit.scale), z) }
            }
            return best
        }
    }
}
