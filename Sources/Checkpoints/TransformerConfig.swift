// TransformerConfig: the hyperparameters of a Llama-family model, read from a Hugging Face
// config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) or GGUF metadata.
import Foundation

public struct TransformerConfig: Sendable, Equatable {
    public enum Architecture: String, Sendable { case llama, mistral, qwen2 }

    public var architecture: Architecture
    public var vocabularySize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var rmsNormEps: Double
    public var maxPositions: Int
    public var tieEmbeddings: Bool
    /// Qwen2 has biases on the Q, K and V projections.
    public var attentionBias: Bool
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]
    /// How the checkpoint's projections are stored when it is pre-quantized (config.json's
    /// `quantization_config`); nil: float weights.
    public var quantization: CheckpointQuantization? = nil
    /// Sliding-window attention per layer: a query at position p sees keys p - w + 1 ... p
    /// (transformers' sliding_window mask); 0 or an empty array: every earlier key. Mistral's
    /// `sliding_window`, Qwen2's `use_sliding_window` / `max_window_layers`, transformers'
    /// `layer_types`, GGUF's `{arch}.attention.sliding_window`.
    public var slidingWindows: [Int] = []

    /// The window of layer `layer` (0: none).
    public func slidingWindow(layer: Int) -> Int { layer < slidingWindows.count ? slidingWindows[layer] : 0 }

    public init(architecture: Architecture = .llama, vocabularySize: Int, hiddenSize: Int, intermediateSize: Int,
                layerCount: Int, headCount: Int, kvHeadCount: Int, headDim: Int? = nil, ropeTheta: Double = 10000,
                ropeScaling: RopeScaling? = nil, rmsNormEps: Double = 1e-5, maxPositions: Int = 4096,
                tieEmbeddings: Bool = false, attentionBias: Bool = false, bosTokenID: Int? = 1, eosTokenIDs: [Int] = [2]) {
        self.architecture = architecture
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim ?? hiddenSize / headCount
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.rmsNormEps = rmsNormEps
        self.maxPositions = maxPositions
        self.tieEmbeddings = tieEmbeddings
        self.attentionBias = attentionBias
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
    }

    /// Checks the shapes fit together; throws naming `path` and the offending field.
    public func validate(path: String) throws {
        func fail(_ field: String, _ why: String) -> CheckpointError { CheckpointError(path, "\(field): \(why)") }
        for (name, v) in [("vocab_size", vocabularySize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                          ("num_hidden_layers", layerCount), ("num_attention_heads", headCount),
                          ("num_key_value_heads", kvHeadCount), ("head_dim", headDim)] where v <= 0 {
            throw fail(name, "must be positive, got \(v)")
        }
        if headCount % kvHeadCount != 0 { throw fail("num_key_value_heads", "\(kvHeadCount) does not divide num_attention_heads \(headCount)") }
        if headDim % 2 != 0 { throw fail("head_dim", "must be even for RoPE, got \(headDim)") }
        if rmsNormEps <= 0 { throw fail("rms_norm_eps", "must be positive") }
        if ropeTheta <= 0 { throw fail("rope_theta", "must be positive") }
        try validateRopeScaling(path: path, field: "rope_scaling")
    }

    // MARK: Hugging Face config.json

    public init(huggingFaceConfigAt path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw CheckpointError(path, "cannot read file") }
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data) } catch {
            throw CheckpointError(path, "malformed JSON (\(error.localizedDescription))")
        }
        guard let o = json as? [String: Any] else { throw CheckpointError(path, "expected a JSON object") }
        func int(_ key: String) throws -> Int {
            guard let v = o[key] as? NSNumber else { throw CheckpointError(path, "\(key): missing or not a number") }
            return v.intValue
        }
        func optInt(_ key: String) -> Int? { (o[key] as? NSNumber)?.intValue }
        func double(_ key: String, _ fallback: Double) -> Double { (o[key] as? NSNumber)?.doubleValue ?? fallback }

        let archs = o["architectures"] as? [String] ?? []
        let modelType = o["model_type"] as? String ?? ""
        let architecture: Architecture
        if archs.contains("Qwen2ForCausalLM") || modelType == "qwen2" { architecture = .qwen2 }
        else if archs.contains("MistralForCausalLM") || modelType == "mistral" { architecture = .mistral }
        else if archs.contains("LlamaForCausalLM") || modelType == "llama" || archs.isEmpty { architecture = .llama }
        else { throw CheckpointError(path, "architectures: \(archs) is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM are)") }

        let hidden = try int("hidden_size")
        let heads = try int("num_attention_heads")
        // transformers >= 5 writes "rope_parameters" (theta and scaling together); older
        // files have top-level "rope_theta" and an optional "rope_scaling".
        let ropeParameters = o["rope_parameters"] as? [String: Any]
        let ropeTheta = (o["rope_theta"] as? NSNumber)?.doubleValue ?? (ropeParameters?["rope_theta"] as? NSNumber)?.doubleValue ?? 10000
        if let p = o["partial_rotary_factor"] as? NSNumber, p.doubleValue != 1 {
            throw CheckpointError(path, "partial_rotary_factor: \(p) is not supported (Petrel rotates whole heads)")
        }
        let scalingField = o["rope_scaling"] is [String: Any] ? "rope_scaling" : "rope_parameters"
        let scaling = try ((o["rope_scaling"] as? [String: Any]) ?? ropeParameters).flatMap {
            try RopeScaling.huggingFace($0, field: scalingField, config: o, path: path)
        }
        var eos: [Int] = []
        if let n = o["eos_token_id"] as? NSNumber { eos = [n.intValue] }
        else if let a = o["eos_token_id"] as? [NSNumber] { eos = a.map(\.intValue) }
        let quantization = try o["quantization_config"].map { try CheckpointQuantization(json: $0, path: path) }
        self.init(architecture: architecture,
                  vocabularySize: try int("vocab_size"),
                  hiddenSize: hidden,
                  intermediateSize: try int("intermediate_size"),
                  layerCount: try int("num_hidden_layers"),
                  headCount: heads,
                  kvHeadCount: optInt("num_key_value_heads") ?? heads,
                  headDim: optInt("head_dim") ?? (heads > 0 ? hidden / heads : 0),
                  ropeTheta: ropeTheta,
                  ropeScaling: scaling,
                  rmsNormEps: double("rms_norm_eps", 1e-6),
                  maxPositions: optInt("max_position_embeddings") ?? 4096,
                  tieEmbeddings: o["tie_word_embeddings"] as? Bool ?? false,
                  attentionBias: architecture == .qwen2 ? true : (o["attention_bias"] as? Bool ?? false),
                  bosTokenID: optInt("bos_token_id"),
                  eosTokenIDs: eos)
        self.quantization = quantization
        slidingWindows = try Self.huggingFaceWindows(o, architecture: architecture, layers: layerCount, path: path)
        try validateRopeScaling(path: path, field: scalingField)
        try validate(path: path)
    }

    /// Each layer's window from config.json, as transformers reads it: none for Llama; Qwen2 only
    /// with `use_sliding_window`; then `layer_types` where given ("sliding_attention" layers get
    /// `sliding_window`), else Qwen2's layers from `max_window_layers` on and every Mistral layer;
    /// a null or absent `sliding_window` means none.
    static func huggingFaceWindows(_ o: [String: Any], architecture: Architecture, layers: Int, path: String) throws -> [Int] {
        // transformers' Llama has no sliding window; Qwen2 drops it unless use_sliding_window.
        if architecture == .llama || (architecture == .qwen2 && o["use_sliding_window"] as? Bool != true) { return [] }
        guard let raw = o["sliding_window"], !(raw is NSNull) else { return [] }
        guard let n = raw as? NSNumber, n.doubleValue == n.doubleValue.rounded(), n.intValue >= 1 else {
            throw CheckpointError(path, "sliding_window: must be a positive integer or null, got \(raw)")
        }
        let w = n.intValue
        if let types = o["layer_types"] as? [String] {
            guard types.count == layers else {
                throw CheckpointError(path, "layer_types: \(types.count) entries for \(layers) layers")
            }
            return try types.enumerated().map { i, t in
                switch t {
                case "sliding_attention": return w
                case "full_attention": return 0
                default: throw CheckpointError(path, "layer_types[\(i)]: \"\(t)\" is not supported (full_attention, sliding_attention are)")
                }
            }
        }
        if architecture == .qwen2 {
            let first = (o["max_window_layers"] as? NSNumber)?.intValue ?? layers
            return (0..<layers).map { $0 >= first ? w : 0 }
        }
        return Array(repeating: w, count: layers)
    }

    // MARK: GGUF metadata

    public init(gguf: GGUFFile) throws {
        let m = gguf.metadata
        let path = gguf.path
        guard let arch = m["general.architecture"]?.string else { throw CheckpointError(path, "general.architecture: missing") }
        let architecture: Architecture
        switch arch {
        case "llama": architecture = .llama
        case "mistral": architecture = .mistral
        case "qwen2": architecture = .qwen2
        default: throw CheckpointError(path, "general.architecture: \"\(arch)\" is not supported (llama, mistral, qwen2 are)")
        }
        func int(_ key: String) throws -> Int {
            guard let v = m["\(arch).\(key)"]?.int else { throw CheckpointError(path, "\(arch).\(key): missing or not an integer") }
            return v
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let vocab = m["\(arch).vocab_size"]?.int ?? m["tokenizer.ggml.tokens"]?.array?.count
            ?? gguf.tensorInfo("token_embd.weight")?.shape.first ?? 0
        let headDim = m["\(arch).attention.key_length"]?.int ?? m["\(arch).rope.dimension_count"]?.int ?? hidden / max(heads, 1)
        let scaling = try RopeScaling.gguf(gguf, arch: arch, headDim: headDim)
        var eos: [Int] = []
        if let e = m["tokenizer.ggml.eos_token_id"]?.int { eos.append(e) }
        if let e = m["tokenizer.ggml.eot_token_id"]?.int, !eos.contains(e) { eos.append(e) }
        self.init(architecture: architecture,
                  vocabularySize: vocab,
                  hiddenSize: hidden,
                  intermediateSize: try int("feed_forward_length"),
                  layerCount: try int("block_count"),
                  headCount: heads,
                  kvHeadCount: m["\(arch).attention.head_count_kv"]?.int ?? heads,
                  headDim: headDim,
                  ropeTheta: m["\(arch).rope.freq_base"]?.double ?? 10000,
                  ropeScaling: scaling,
                  rmsNormEps: m["\(arch).attention.layer_norm_rms_epsilon"]?.double ?? 1e-5,
                  maxPositions: m["\(arch).context_length"]?.int ?? 4096,
                  tieEmbeddings: gguf.tensorInfo("output.weight") == nil,
                  attentionBias: gguf.tensorInfo("blk.0.attn_q.bias") != nil,
                  bosTokenID: m["tokenizer.ggml.bos_token_id"]?.int,
                  eosTokenIDs: eos)
        if let w = m["\(arch).attention.sliding_window"]?.int, w > 0 { slidingWindows = Array(repeating: w, count: layerCount) }
        try validateRopeScaling(path: path, field: "\(arch).rope.scaling")
        try validate(path: path)
    }
}

/// A pre-quantized Hugging Face checkpoint's `quantization_config`: AutoAWQ's GEMM layout,
/// AutoGPTQ / GPTQModel's "gptq" layout, or FP8 E4M3 weights with per-tensor or per-channel scales
/// (compressed-tensors "float-quantized", quant_method "fp8", ModelOpt quant_algo "FP8")
/// (Models/QuantizedCheckpoints.swift reads the tensors).
public struct CheckpointQuantization: Sendable, Equatable {
    public enum Method: String, Sendable { case awq, gptq, fp8 }

    public var method: Method
    /// 4 (AWQ); 4 or 8 (GPTQ).
    public var bits: Int
    /// Input features per scale and zero; 0 when the file says -1 (one group per row).
    public var groupSize: Int
    /// GPTQ `desc_act`: groups follow an activation order given by `g_idx`, not the column order.
    public var actOrder: Bool
    /// GPTQ `sym` (AWQ: !zero_point). Informational: the zeros stored decide.
    public var symmetric: Bool
    /// What a stored zero is short of the zero point: 1 for GPTQ's v1 "gptq" format (it stores
    /// z - 1), 0 for AWQ and "gptq_v2".
    public var zeroOffset: Int
    /// FP8: the config says activations have static scales (every quantized projection then needs
    /// its input_scale); false: per token at run time (an input_scale present is still used).
    public var staticActivations: Bool

    public init(method: Method, bits: Int, groupSize: Int, actOrder: Bool = false, symmetric: Bool = false, zeroOffset: Int = 0,
                staticActivations: Bool = false) {
        self.method = method
        self.bits = bits
        self.groupSize = groupSize
        self.actOrder = actOrder
        self.symmetric = symmetric
        self.zeroOffset = zeroOffset
        self.staticActivations = staticActivations
    }

    /// FP8 checkpoints' three dialects; errors name the field.
    static func fp8(_ o: [String: Any], method name: String, fail: (String, String) -> CheckpointError) throws -> CheckpointQuantization {
        func fp8(static s: Bool) -> CheckpointQuantization {
            CheckpointQuantization(method: .fp8, bits: 8, groupSize: 0, symmetric: true, staticActivations: s)
        }
        switch name {
        case "compressed-tensors":
            let format = (o["format"] as? String) ?? "float-quantized"
            guard format == "float-quantized" else {
                throw fail("format", "\"\(format)\" is not supported (compressed-tensors FP8, \"float-quantized\", is)")
            }
            guard let groups = o["config_groups"] as? [String: Any], !groups.isEmpty else {
                throw fail("config_groups", "missing or empty")
            }
            var isStatic: Bool?
            for key in groups.keys.sorted() {
                let field = "config_groups.\(key)"
                guard let g = groups[key] as? [String: Any], let w = g["weights"] as? [String: Any] else {
                    throw fail(field + ".weights", "missing or not an object")
                }
                if let f = g["format"] as? String, f != "float-quantized" {
                    throw fail(field + ".format", "\"\(f)\" is not supported (\"float-quantized\" is)")
                }
                guard (w["type"] as? String) == "float", (w["num_bits"] as? NSNumber)?.intValue == 8 else {
                    throw fail(field + ".weights", "only 8-bit float (FP8 E4M3) weights are supported")
                }
                let strategy = (w["strategy"] as? String) ?? "tensor"
                guard strategy == "channel" || strategy == "tensor" else {
                    throw fail(field + ".weights.strategy", "\"\(strategy)\" is not supported (channel and tensor are)")
                }
                guard let a = g["input_activations"] as? [String: Any] else {
                    throw fail(field + ".input_activations", "missing: FP8 weight-only (W8A16) checkpoints are not supported (W8A8 is)")
                }
                guard (a["type"] as? String) == "float", (a["num_bits"] as? NSNumber)?.intValue == 8 else {
                    throw fail(field + ".input_activations", "only 8-bit float (FP8 E4M3) activations are supported")
                }
                let dynamic = a["dynamic"] as? Bool ?? false
                let aStrategy = (a["strategy"] as? String) ?? (dynamic ? "token" : "tensor")
                guard dynamic ? aStrategy == "token" : aStrategy == "tensor" else {
                    throw fail(field + ".input_activations.strategy",
                               "\"\(aStrategy)\" with dynamic \(dynamic) is not supported (dynamic per token, or static per tensor)")
                }
                if let s = isStatic, s != !dynamic { throw fail(field + ".input_activations.dynamic", "groups disagree") }
                isStatic = !dynamic
            }
            return fp8(static: isStatic ?? false)
        case "fp8":
            if let b = o["weight_block_size"], !(b is NSNull) {
                throw fail("weight_block_size", "block-wise FP8 scales are not supported (per-tensor and per-channel are)")
            }
            let scheme = (o["activation_scheme"] as? String) ?? "dynamic"
            guard scheme == "dynamic" || scheme == "static" else {
                throw fail("activation_scheme", "\"\(scheme)\" is not supported (dynamic and static are)")
            }
            return fp8(static: scheme == "static")
        default:   // modelopt: quant_algo at the top, or in a "quantization" object (hf_quant_config.json's layout)
            let algo = (o["quant_algo"] as? String) ?? ((o["quantization"] as? [String: Any])?["quant_algo"] as? String) ?? "(missing)"
            switch algo {
            case "FP8": return fp8(static: true)
            case "FP8_PER_CHANNEL_PER_TOKEN": return fp8(static: false)
            default: throw fail("quant_algo", "\"\(algo)\" is not supported (FP8 and FP8_PER_CHANNEL_PER_TOKEN are)")
            }
        }
    }

    /// Parses config.json's `quantization_config` object; errors name `path` and the field.
    public init(json: Any, path: String) throws {
        func fail(_ field: String, _ why: String) -> CheckpointError { CheckpointError(path, "quantization_config.\(field): \(why)") }
        guard let o = json as? [String: Any] else { throw CheckpointError(path, "quantization_config: expected an object") }
        func int(_ key: String) throws -> Int {
            guard let v = o[key] as? NSNumber else { throw fail(key, "missing or not a number") }
            return v.intValue
        }
        func string(_ key: String) -> String? { (o[key] as? String)?.lowercased() }
        let name = o["quant_method"] as? String ?? "(missing)"
        if ["compressed-tensors", "fp8", "modelopt"].contains(name.lowercased()) {
            self = try Self.fp8(o, method: name.lowercased(), fail: fail)
            return
        }
        guard let method = Method(rawValue: name.lowercased()) else {
            throw fail("quant_method", "\"\(name)\" is not supported (awq, gptq, compressed-tensors, fp8 and modelopt are)")
        }
        let bits = try int("bits")
        let group = try int("group_size")
        guard group == -1 || group > 0 else { throw fail("group_size", "must be positive or -1, got \(group)") }
        switch method {
        case .fp8:
            throw fail("quant_method", "\"fp8\" is read above")
        case .awq:
            let version = string("version") ?? "gemm"
            guard version == "gemm" else {
                throw fail("version", "\"\(version)\" is not supported: only AutoAWQ's GEMM layout (\"gemm\") is read")
            }
            guard bits == 4 else { throw fail("bits", "AWQ GEMM checkpoints have 4 bits, not \(bits)") }
            self.init(method: .awq, bits: 4, groupSize: group == -1 ? 0 : group,
                      symmetric: !(o["zero_point"] as? Bool ?? true), zeroOffset: 0)
        case .gptq:
            guard bits == 4 || bits == 8 else { throw fail("bits", "\(bits)-bit GPTQ is not supported (4 and 8 are)") }
            if o["is_marlin_format"] as? Bool == true {
                throw fail("is_marlin_format", "Marlin-packed GPTQ checkpoints are not supported (the \"gptq\" format is)")
            }
            // GPTQModel writes checkpoint_format (older) or format; AutoGPTQ 0.7 writes neither.
            let formatKey = o["checkpoint_format"] != nil ? "checkpoint_format" : "format"
            let format = string(formatKey) ?? "gptq"
            let offset: Int
            switch format {
            case "gptq": offset = 1
            case "gptq_v2": offset = 0
            default: throw fail(formatKey, "\"\(format)\" is not supported (gptq and gptq_v2 are)")
            }
            self.init(method: .gptq, bits: bits, groupSize: group == -1 ? 0 : group,
                      actOrder: o["desc_act"] as? Bool ?? false, symmetric: o["sym"] as? Bool ?? true, zeroOffset: offset)
        }
    }
}
