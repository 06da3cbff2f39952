// RoPE scaling: every kind Llama-family checkpoints carry, and the one place the inverse
// frequencies and the attention factor are computed (as transformers' ROPE_INIT_FUNCTIONS do).
import Foundation

extension TransformerConfig {
    /// How a checkpoint stretches its rotary position embedding past the trained context.
    public enum RopeScaling: Sendable, Equatable {
        /// Position interpolation: every inverse frequency divided by `factor` (`linear`).
        case linear(factor: Double)
        /// Dynamic NTK (`dynamic`): past `maxPositions` tokens the base grows with the sequence
        /// length (transformers' `_compute_dynamic_ntk_parameters`).
        case dynamic(factor: Double)
        case yarn(YaRN)
        case llama3(Llama3)
        case longRoPE(LongRoPE)
        /// Per-dimension divisors of the inverse frequencies (GGUF `rope_freqs.weight`, which
        /// llama.cpp's converter writes for Llama 3.1 / 3.2 instead of the llama3 fields).
        case frequencyDivisors([Float])

        /// The `rope_type` name config.json gives it.
        public var typeName: String {
            switch self {
            case .linear: "linear"
            case .dynamic: "dynamic"
            case .yarn: "yarn"
            case .llama3: "llama3"
            case .longRoPE: "longrope"
            case .frequencyDivisors: "frequency_divisors"
            }
        }
    }

    /// Llama 3.1 scaling (`llama3`): low frequencies divided by `factor`, high ones kept, a
    /// smooth ramp between.
    public struct Llama3: Sendable, Equatable {
        public var factor: Double
        public var lowFrequencyFactor: Double
        public var highFrequencyFactor: Double
        public var originalMaxPositions: Int

        public init(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositions: Int) {
            self.factor = factor
            self.lowFrequencyFactor = lowFrequencyFactor
            self.highFrequencyFactor = highFrequencyFactor
            self.originalMaxPositions = originalMaxPositions
        }
    }

    /// YaRN (`yarn`): interpolation below a band of dimensions set by beta_fast / beta_slow,
    /// extrapolation above, and an attention factor multiplying cos and sin.
    public struct YaRN: Sendable, Equatable {
        /// nil: maxPositions / originalMaxPositions (DeepSeek-V3's convention).
        public var factor: Double?
        public var originalMaxPositions: Int
        public var betaFast: Double
        public var betaSlow: Double
        /// nil: derived from factor, mscale and mscaleAllDim.
        public var attentionFactor: Double?
        public var mscale: Double?
        public var mscaleAllDim: Double?
        /// Round the correction band outward to whole dimensions (transformers' default).
        public var truncate: Bool

        public init(factor: Double?, originalMaxPositions: Int, betaFast: Double = 32, betaSlow: Double = 1,
                    attentionFactor: Double? = nil, mscale: Double? = nil, mscaleAllDim: Double? = nil, truncate: Bool = true) {
            self.factor = factor
            self.originalMaxPositions = originalMaxPositions
            self.betaFast = betaFast
            self.betaSlow = betaSlow
            self.attentionFactor = attentionFactor
            self.mscale = mscale
            self.mscaleAllDim = mscaleAllDim
            self.truncate = truncate
        }
    }

    /// LongRoPE (`longrope`, Phi-3 style): per-dimension factors, the short set while the
    /// sequence fits `originalMaxPositions`, the long set past it; an attention factor.
    public struct LongRoPE: Sendable, Equatable {
        public var shortFactor: [Double]
        public var longFactor: [Double]
        public var originalMaxPositions: Int
        /// nil: maxPositions / originalMaxPositions.
        public var factor: Double?
        /// nil: sqrt(1 + ln(factor) / ln(originalMaxPositions)), 1 when factor <= 1.
        public var attentionFactor: Double?

        public init(shortFactor: [Double], longFactor: [Double], originalMaxPositions: Int, factor: Double? = nil,
                    attentionFactor: Double? = nil) {
            self.shortFactor = shortFactor
            self.longFactor = longFactor
            self.originalMaxPositions = originalMaxPositions
            self.factor = factor
            self.attentionFactor = attentionFactor
        }
    }

    /// Whether the inverse frequencies depend on the sequence's length (dynamic, longrope):
    /// then each sequence of a step needs `ropeInverseFrequencies(sequenceLength:)` of its own.
    public var ropeDependsOnSequenceLength: Bool {
        switch ropeScaling {
        case .dynamic, .longRoPE: true
        default: false
        }
    }

    /// The RoPE inverse frequencies (headDim / 2 values) for a sequence whose highest position
    /// is `sequenceLength - 1` (nil: one that fits the trained context; only dynamic and
    /// longrope look at it). Computed in float32 step by step the way transformers does
    /// (`1 / base ** (arange(0, d, 2) / d)`, each step rounded to float32), not once in float64:
    /// the last bit of a frequency moves every angle by up to 4e-6 rad at position 60, which a
    /// 32-layer network with sharp attention amplifies past 1e-3 in its logits.
    public func ropeInverseFrequencies(sequenceLength: Int? = nil) -> [Float] {
        let half = headDim / 2
        func powers(base: Float) -> [Float] { (0..<half).map { powf(base, Float(2 * $0) / Float(headDim)) } }
        let plain = powers(base: Float(ropeTheta)).map { 1 / $0 }
        switch ropeScaling {
        case nil:
            return plain
        case .linear(let factor):
            return plain.map { $0 / Float(factor) }
        case .dynamic(let factor):
            // transformers recomputes inv_freq once max(position_ids) + 1 passes
            // max_position_embeddings, with the length as a float32 tensor.
            guard let length = sequenceLength, length > maxPositions else { return plain }
            let f = Float(factor)
            let growth = powf(f * Float(length) / Float(maxPositions) - (f - 1), Float(headDim) / Float(headDim - 2))
            return powers(base: Float(ropeTheta) * growth).map { 1 / $0 }
        case .llama3(let s):
            let low = Float(s.originalMaxPositions) / Float(s.lowFrequencyFactor)
            let high = Float(s.originalMaxPositions) / Float(s.highFrequencyFactor)
            let factor = Float(s.factor)
            return plain.map { f in
                let wavelength = Float(2 * Double.pi) / f
                if wavelength < high { return f }
                if wavelength > low { return f / factor }
                let smooth = (Float(s.originalMaxPositions) / wavelength - Float(s.lowFrequencyFactor))
                    / Float(s.highFrequencyFactor - s.lowFrequencyFactor)
                return (1 - smooth) * f / factor + smooth * f
            }
        case .yarn(let s):
            let factor = Float(yarnFactor(s))
            let pos = powers(base: Float(ropeTheta))
            // find_correction_range: the dimensions that turn beta_fast and beta_slow times over
            // the original context.
            func correctionDim(_ rotations: Double) -> Double {
                Double(headDim) * log(Double(s.originalMaxPositions) / (rotations * 2 * Double.pi)) / (2 * log(ropeTheta))
            }
            var low = correctionDim(s.betaFast), high = correctionDim(s.betaSlow)
            if s.truncate { (low, high) = (floor(low), ceil(high)) }
            low = max(low, 0)
            high = min(high, Double(headDim - 1))
            if low == high { high += 0.001 }
            return (0..<half).map { i in
                let ramp = min(max((Float(i) - Float(low)) / Float(high - low), 0), 1)
                let extrapolation = 1 - ramp
                return 1 / (factor * pos[i]) * (1 - extrapolation) + 1 / pos[i] * extrapolation
            }
        case .longRoPE(let s):
            let long = (sequenceLength ?? 0) > s.originalMaxPositions
            return zip(long ? s.longFactor : s.shortFactor, powers(base: Float(ropeTheta))).map { 1 / (Float($0) * $1) }
        case .frequencyDivisors(let divisors):
            return zip(plain, divisors).map { $0 / $1 }
        }
    }

    /// What multiplies cos and sin (YaRN's mscale, LongRoPE's attention factor; 1 otherwise).
    /// Both the query and the key are rotated, so attention scores grow by its square: the model
    /// folds that into the softmax scale instead of scaling every rotated value.
    public var ropeAttentionFactor: Double {
        switch ropeScaling {
        case .yarn(let s):
            if let a = s.attentionFactor { return a }
            let factor = yarnFactor(s)
            func mscale(_ m: Double) -> Double { factor <= 1 ? 1 : 0.1 * m * log(factor) + 1 }
            if let m = s.mscale, let all = s.mscaleAllDim, m != 0, all != 0 { return mscale(m) / mscale(all) }
            return mscale(1)
        case .longRoPE(let s):
            if let a = s.attentionFactor { return a }
            let factor = s.factor ?? Double(maxPositions) / Double(s.originalMaxPositions)
            return factor <= 1 ? 1 : (1 + log(factor) / log(Double(s.originalMaxPositions))).squareRoot()
        default:
            return 1
        }
    }

    private func yarnFactor(_ s: YaRN) -> Double { s.factor ?? Double(maxPositions) / Double(s.originalMaxPositions) }

    /// Checks the scaling's numbers fit the head; `field` names where they came from.
    func validateRopeScaling(path: String, field: String) throws {
        func fail(_ name: String, _ why: String) -> CheckpointError { CheckpointError(path, "\(field).\(name): \(why)") }
        func positive(_ name: String, _ v: Double?) throws {
            if let v, !(v > 0) { throw fail(name, "must be positive, got \(v)") }
        }
        let half = headDim / 2
        switch ropeScaling {
        case nil: break
        case .linear(let f), .dynamic(let f): try positive("factor", f)
        case .llama3(let s):
            try positive("factor", s.factor)
            try positive("low_freq_factor", s.lowFrequencyFactor)
            try positive("original_max_position_embeddings", Double(s.originalMaxPositions))
            if !(s.highFrequencyFactor > s.lowFrequencyFactor) {
                throw fail("high_freq_factor", "must be above low_freq_factor (\(s.lowFrequencyFactor)), got \(s.highFrequencyFactor)")
            }
        case .yarn(let s):
            try positive("factor", s.factor)
            try positive("original_max_position_embeddings", Double(s.originalMaxPositions))
            try positive("attention_factor", s.attentionFactor)
        case .longRoPE(let s):
            try positive("original_max_position_embeddings", Double(s.originalMaxPositions))
            for (name, v) in [("short_factor", s.shortFactor), ("long_factor", s.longFactor)] where v.count != half {
                throw fail(name, "has \(v.count) values, the head needs head_dim / 2 = \(half)")
            }
        case .frequencyDivisors(let d):
            if d.count != half { throw fail("divisors", "has \(d.count) values, the head needs head_dim / 2 = \(half)") }
            if let bad = d.first(where: { !($0 > 0) }) { throw fail("divisors", "holds \(bad), every divisor must be positive") }
        }
    }
}

// MARK: Reading the scaling from config.json and GGUF metadata

extension TransformerConfig.RopeScaling {
    /// The scaling a config.json's `rope_scaling` / `rope_parameters` object describes (nil:
    /// `default`). `field` names the object in errors; `config` is the whole file (for
    /// `original_max_position_embeddings` and `max_position_embeddings`, which transformers
    /// falls back on). Unknown types are refused.
    static func huggingFace(_ o: [String: Any], field: String, config: [String: Any], path: String) throws -> Self? {
        func fail(_ name: String, _ why: String) -> CheckpointError { CheckpointError(path, "\(field).\(name): \(why)") }
        func number(_ key: String) throws -> Double? {
            guard let v = o[key], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber else { throw fail(key, "expected a number") }
            return n.doubleValue
        }
        func required(_ key: String) throws -> Double {
            guard let v = try number(key) else { throw fail(key, "missing; \(type) scaling needs it") }
            return v
        }
        func factors(_ key: String) throws -> [Double] {
            guard let a = o[key] as? [NSNumber] else { throw fail(key, "missing or not a list of numbers; longrope needs it") }
            return a.map(\.doubleValue)
        }
        /// transformers' standardize_rope_params: a top-level original_max_position_embeddings
        /// (Phi-3) wins over the object's, then max_position_embeddings.
        func originalMax() throws -> Int {
            if let top = config["original_max_position_embeddings"] as? NSNumber { return top.intValue }
            if let v = try number("original_max_position_embeddings") { return Int(v) }
            if let m = config["max_position_embeddings"] as? NSNumber { return m.intValue }
            throw fail("original_max_position_embeddings", "missing, and so is max_position_embeddings")
        }
        let typeKey = o["rope_type"] != nil ? "rope_type" : "type"
        let type = o[typeKey] as? String ?? "default"
        if let p = try number("partial_rotary_factor"), p != 1 {
            throw fail("partial_rotary_factor", "\(p) is not supported (Petrel rotates whole heads)")
        }
        switch type {
        case "default":
            return nil
        case "linear":
            return .linear(factor: try required("factor"))
        case "dynamic":
            return .dynamic(factor: try required("factor"))
        case "llama3":
            return .llama3(.init(factor: try required("factor"), lowFrequencyFactor: try required("low_freq_factor"),
                                 highFrequencyFactor: try required("high_freq_factor"), originalMaxPositions: try originalMax()))
        case "yarn":
            return .yarn(.init(factor: try number("factor"), originalMaxPositions: try originalMax(),
                               betaFast: try number("beta_fast").flatMap { $0 == 0 ? nil : $0 } ?? 32,
                               betaSlow: try number("beta_slow").flatMap { $0 == 0 ? nil : $0 } ?? 1,
                               attentionFactor: try number("attention_factor"), mscale: try number("mscale"),
                               mscaleAllDim: try number("mscale_all_dim"), truncate: o["truncate"] as? Bool ?? true))
        case "longrope":
            return .longRoPE(.init(shortFactor: try factors("short_factor"), longFactor: try factors("long_factor"),
                                   originalMaxPositions: try originalMax(), factor: try number("factor"),
                                   attentionFactor: try number("attention_factor")))
        case "frequency_divisors":
            // Petrel's own: how an engine folder built from a GGUF keeps rope_freqs.weight.
            guard let d = o["divisors"] as? [NSNumber] else { throw fail("divisors", "missing or not a list of numbers") }
            return .frequencyDivisors(d.map(\.floatValue))
        default:
            throw fail(typeKey, "\"\(type)\" is not supported (default, linear, dynamic, yarn, llama3, longrope are)")
        }
    }

    /// The object `huggingFace(_:)` reads back as this scaling.
    var huggingFaceJSON: [String: Any] {
        var o: [String: Any] = ["rope_type": typeName]
        switch self {
        case .linear(let f), .dynamic(let f):
            o["factor"] = f
        case .llama3(let s):
            o["factor"] = s.factor
            o["low_freq_factor"] = s.lowFrequencyFactor
            o["high_freq_factor"] = s.highFrequencyFactor
            o["original_max_position_embeddings"] = s.originalMaxPositions
        case .yarn(let s):
            o["original_max_position_embeddings"] = s.originalMaxPositions
            o["beta_fast"] = s.betaFast
            o["beta_slow"] = s.betaSlow
            o["truncate"] = s.truncate
            if let f = s.factor { o["factor"] = f }
            if let a = s.attentionFactor { o["attention_factor"] = a }
            if let m = s.mscale { o["mscale"] = m }
            if let m = s.mscaleAllDim { o["mscale_all_dim"] = m }
        case .longRoPE(let s):
            o["short_factor"] = s.shortFactor
            o["long_factor"] = s.longFactor
            o["original_max_position_embeddings"] = s.originalMaxPositions
            if let f = s.factor { o["factor"] = f }
            if let a = s.attentionFactor { o["attention_factor"] = a }
        case .frequencyDivisors(let d):
            o["divisors"] = d.map(Double.init)
        }
        return o
    }

    /// The scaling GGUF metadata (`{arch}.rope.scaling.*`) and the `rope_freqs.weight` tensor
    /// describe. Keys whose meaning Petrel does not reproduce are refused, naming the key.
    static func gguf(_ file: GGUFFile, arch: String, headDim: Int) throws -> Self? {
        let m = file.metadata, path = file.path
        let prefix = "\(arch).rope.scaling."
        func fail(_ key: String, _ why: String) -> CheckpointError { CheckpointError(path, "\(key): \(why)") }
        func number(_ name: String) throws -> Double? {
            guard let v = m[prefix + name] else { return nil }
            guard let d = v.double else { throw fail(prefix + name, "expected a number") }
            return d
        }
        func required(_ name: String, for type: String) throws -> Double {
            guard let v = try number(name) else { throw fail(prefix + name, "missing; \(type) scaling needs it") }
            return v
        }
        // llama.cpp's own YaRN knobs: only their neutral values mean what transformers' yarn means.
        for (name, neutral) in [("yarn_ext_factor", -1.0), ("yarn_attn_factor", 1.0), ("yarn_log_multiplier", 0.0),
                                ("attn_factor", 1.0)] {
            if let v = try number(name), v != neutral, !(name == "yarn_ext_factor" && v == 1) {
                throw fail(prefix + name, "\(v) is not supported (Petrel reads \(neutral) only)")
            }
        }
        var type = m[prefix + "type"]?.string ?? "none"
        if m[prefix + "type"] != nil && m[prefix + "type"]?.string == nil { throw fail(prefix + "type", "expected a string") }
        if let info = file.tensorInfo("rope_freqs.weight") {
            guard type == "none" || type == "llama3" else {
                throw fail(prefix + "type", "\"\(type)\" together with a rope_freqs.weight tensor is not supported")
            }
            guard info.dtype == .f32, info.shape.reduce(1, *) == headDim / 2 else {
                throw fail("rope_freqs.weight", "expected \(headDim / 2) F32 values (head_dim / 2), got shape \(info.shape) of GGML type \(info.ggmlType)")
            }
            return .frequencyDivisors(try file.tensor("rope_freqs.weight").floatValues())
        }
        if file.tensorInfo("rope_factors_long.weight") != nil || file.tensorInfo("rope_factors_short.weight") != nil {
            type = "longrope"
        }
        switch type {
        case "none":
            return nil
        case "linear":
            return .linear(factor: try required("factor", for: type))
        case "llama3":
            // Not what llama.cpp's converter writes (it stores rope_freqs.weight), but some files carry it.
            return .llama3(.init(factor: try required("factor", for: type),
                                 lowFrequencyFactor: try number("low_freq_factor") ?? 1,
                                 highFrequencyFactor: try number("high_freq_factor") ?? 4,
                                 originalMaxPositions: Int(try required("original_context_length", for: type))))
        case "yarn":
            return .yarn(.init(factor: try required("factor", for: type),
                               originalMaxPositions: Int(try required("original_context_length", for: type)),
                               betaFast: try number("yarn_beta_fast") ?? 32, betaSlow: try number("yarn_beta_slow") ?? 1))
        case "longrope":
            throw fail(prefix + "type", "longrope GGUF files (rope_factors_long / rope_factors_short, Phi-3) are not supported")
        default:
            throw fail(prefix + "type", "\"\(type)\" is not supported (none, linear, yarn, and rope_freqs.weight are)")
        }
    }
}
