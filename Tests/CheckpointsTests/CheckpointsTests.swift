// GGUF, safetensors and config.json readers against fixtures written by the Python
// reference libraries (gguf, safetensors, transformers), plus corrupt and truncated files.
import Checkpoints
import Compute
import Foundation
import TestFixtures
import Testing

@Suite struct GGUFTests {
    /// The fixture's description, read by each test (a [String: Any] is not Sendable, so no static).
    var expected: [String: Any] { try! Fixtures.json("gguf-types.json") }

    @Test func metadataOfEveryValueType() throws {
        let file = try GGUFFile(path: Fixtures.path("gguf-types.gguf"))
        let meta = expected["metadata"] as! [[String: Any]]
        #expect(file.version == expected["version"] as! Int)
        #expect(file.metadata.count == meta.count)
        for entry in meta {
            let key = entry["key"] as! String
            let type = entry["type"] as! String
            guard let v = file.metadata[key] else { Issue.record("missing \(key)"); continue }
            switch type {
            case "STRING": #expect(v.string == entry["value"] as? String, "\(key)")
            case "BOOL": #expect(v.bool == entry["value"] as? Bool, "\(key)")
            case "FLOAT32": #expect(v == .float32(Float((entry["value"] as! NSNumber).doubleValue)), "\(key)")
            case "FLOAT64": #expect(v == .float64((entry["value"] as! NSNumber).doubleValue), "\(key)")
            case "UINT64": #expect(v == .uint64((entry["value"] as! NSNumber).uint64Value), "\(key)")
            case "ARRAY":
                let arr = try #require(v.array, "\(key)")
                let want = entry["value"] as! [Any]
                #expect(arr.count == want.count, "\(key)")
                if key.hasSuffix("string") { #expect(v.stringArray == want as? [String]) }
                if key.hasSuffix("nested") { #expect(arr.map { $0.intArray ?? [] } == [[1, 2], [3, 4, 5]]) }
                if key.hasSuffix("int32") || key.hasSuffix("int64") || key.hasSuffix("uint8") {
                    #expect(v.intArray == want.map { ($0 as! NSNumber).intValue }, "\(key)")
                }
            default:
                #expect(v.int == (entry["value"] as! NSNumber).intValue, "\(key) \(type)")
            }
        }
        // Typed cases, not just their integer view.
        #expect(file.metadata["test.int8"] == .int8(-100))
        #expect(file.metadata["test.uint32"] == .uint32(4_000_000_000))
        #expect(file.metadata["test.int64"] == .int64(-9_000_000_000_000_000_000))
    }

    @Test func tensorsOfEveryTypeDequantizeLikeGGUFPython() throws {
        let file = try GGUFFile(path: Fixtures.path("gguf-types.gguf"))
        for t in expected["tensors"] as! [[String: Any]] {
            let name = t["name"] as! String
            let shape = (t["shape"] as! [NSNumber]).map(\.intValue)
            let info = try #require(file.tensorInfo(name))
            #expect(info.shape == shape, "\(name)")
            #expect(info.fileOffset == (t["data_offset"] as! NSNumber).intValue, "\(name)")
            guard info.dtype != nil else {
                // Q5_0 / Q5_1: the file opens, reading the tensor says what is unsupported.
                #expect(throws: CheckpointError.self) { try file.tensor(name) }
                continue
            }
            let values = try file.tensor(name).floatValues()
            let want = (t["values"] as! [NSNumber]).map(\.floatValue)
            #expect(values.count == want.count)
            let worst = zip(values, want).map { abs($0 - $1) / max(abs($1), 1e-3) }.max() ?? 0
            #expect(worst < 1e-5, "\(name) (\(t["type"]!)): worst relative difference \(worst)")
        }
    }

    /// Every GGML block type converts to Petrel's weight-only layout (GGMLBlocks.swift): the
    /// converted matrix dequantizes to gguf-python's values up to the fp16 rounding of the
    /// K-quants' products d * sc (and of the zero points d*m / s).
    @Test func blockTypesConvertToWeightOnlyMatrices() throws {
        let file = try GGUFFile(path: Fixtures.path("gguf-types.gguf"))
        var converted: Set<DType> = []
        for t in expected["tensors"] as! [[String: Any]] {
            let name = t["name"] as! String
            let tensor = try file.tensor(name)
            guard tensor.dtype.weightOnlyEquivalent != nil, tensor.shape.count == 2 else { continue }
            let w = try tensor.convertedToWeightOnly()
            #expect(w.dtype.isWeightOnly && w.weightOnly == tensor.dtype.weightOnlyEquivalent && w.shape == tensor.shape)
            let want = (t["values"] as! [NSNumber]).map(\.floatValue)
            let scale = want.map(abs).max() ?? 1
            let worst = zip(w.floatValues(), want).map { abs($0 - $1) }.max() ?? 0
            let exact: Set<DType> = [.q8_0, .q4_0, .q5_0]
            #expect(worst <= (exact.contains(tensor.dtype) ? 0 : 2e-3 * scale), "\(name): worst difference \(worst) of \(scale)")
            converted.insert(tensor.dtype)
        }
        #expect(converted == [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K])
    }

    @Test func truncatedAndCorruptFilesThrowNamingTheFile() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-llama-f32.gguf")))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-gguf-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bad.gguf").path
        // Every cut point in the header region and a spread through the tensor data.
        var cuts = Array(stride(from: 0, to: min(original.count, 40_000), by: 97))
        cuts += stride(from: 40_000, to: original.count, by: 10_007)
        cuts.append(original.count - 1)
        for cut in cuts {
            try original.prefix(cut).write(to: URL(fileURLWithPath: path))
            #expect(throws: CheckpointError.self, "cut at \(cut)") {
                let f = try GGUFFile(path: path)
                for t in f.tensors { _ = try f.tensor(t.name) }
            }
        }
        var bad = original
        bad[0] = UInt8(ascii: "X")
        try bad.write(to: URL(fileURLWithPath: path))
        let e = #expect(throws: CheckpointError.self) { try GGUFFile(path: path) }
        #expect(e?.path == path && e?.message.contains("not a GGUF file") == true)
        // A string length field blown up to a huge value.
        bad = original
        bad.replaceSubrange(24..<32, with: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
        try bad.write(to: URL(fileURLWithPath: path))
        #expect(throws: CheckpointError.self) { try GGUFFile(path: path) }
        #expect(throws: CheckpointError.self) { try GGUFFile(path: dir.appendingPathComponent("missing.gguf").path) }
    }
}

@Suite struct SafetensorsTests {
    @Test func floatTypesMatch() throws {
        let expected = try Fixtures.json("safetensors-types.json")
        let file = try SafetensorsFile(path: Fixtures.path("safetensors-types.safetensors"))
        for t in expected["tensors"] as! [[String: Any]] {
            let name = t["name"] as! String
            let tensor = try file.tensor(name)
            #expect(tensor.shape == (t["shape"] as! [NSNumber]).map(\.intValue))
            #expect(tensor.dtype.description == t["dtype"] as! String)
            #expect(tensor.floatValues() == (t["values"] as! [NSNumber]).map(\.floatValue), "\(name)")
        }
        #expect(file.metadata["note"] == "petrel test fixture")
    }

    @Test func shardedCheckpointFindsEveryTensor() throws {
        let ckpt = try SafetensorsCheckpoint(directory: Fixtures.path("tiny-llama-sharded"))
        let single = try SafetensorsCheckpoint(directory: Fixtures.path("tiny-llama"))
        #expect(ckpt.tensorNames == single.tensorNames)
        #expect(try ckpt.tensor("model.norm.weight").dtype == .bf16)
    }

    @Test func truncatedAndCorruptFilesThrow() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-llama/model.safetensors")))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-st-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        for cut in [0, 4, 8, 100, 1000, original.count / 2, original.count - 1] {
            try original.prefix(cut).write(to: URL(fileURLWithPath: path))
            #expect(throws: CheckpointError.self, "cut at \(cut)") { try SafetensorsFile(path: path) }
        }
        var bad = original
        bad[10] = UInt8(ascii: "}")
        try bad.write(to: URL(fileURLWithPath: path))
        #expect(throws: CheckpointError.self) { try SafetensorsFile(path: path) }
    }
}

@Suite struct ConfigTests {
    @Test func llama2And3() throws {
        for name in ["llama-2-7b-config.json", "llama-2-7b-config.hub-v4.json"] {
            let c = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("configs/" + name))
            #expect(c.hiddenSize == 4096 && c.layerCount == 32 && c.headCount == 32 && c.kvHeadCount == 32)
            #expect(c.intermediateSize == 11008 && c.vocabularySize == 32000 && c.headDim == 128 && c.ropeTheta == 10000)
        }
        for name in ["llama-3-8b-config.json", "llama-3-8b-config.hub-v4.json"] {
            let c = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("configs/" + name))
            #expect(c.kvHeadCount == 8 && c.vocabularySize == 128256 && c.ropeTheta == 500000 && c.intermediateSize == 14336)
        }
        let m = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("configs/mistral-config.json"))
        #expect(m.architecture == .mistral)
        let q = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("tiny-qwen2/config.json"))
        #expect(q.architecture == .qwen2 && q.attentionBias && q.tieEmbeddings)
    }

    @Test func llama3RopeScaling() throws {
        var c = TransformerConfig(vocabularySize: 10, hiddenSize: 4096, intermediateSize: 1, layerCount: 1, headCount: 32, kvHeadCount: 8,
                                  ropeTheta: 500000)
        let plain = c.ropeInverseFrequencies()
        c.ropeScaling = .llama3(.init(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 8192))
        let scaled = c.ropeInverseFrequencies()
        #expect(scaled.first == plain.first)                    // high frequencies unchanged
        #expect(abs(scaled.last! - plain.last! / 8) < 1e-12)    // low frequencies divided by the factor
    }

    @Test func badConfigsNameTheField() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-cfg-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("config.json").path
        let cases: [(String, String)] = [
            (#"{"architectures": ["LlamaForCausalLM"], "vocab_size": 10}"#, "hidden_size"),
            (#"{"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 8, "intermediate_size": 8, "num_hidden_layers": 1}"#, "num_key_value_heads"),
            (#"{"architectures": ["GPT2LMHeadModel"]}"#, "architectures"),
            (#"{"hidden_size": "#, "malformed JSON"),
        ]
        for (text, field) in cases {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let e = #expect(throws: CheckpointError.self) { try TransformerConfig(huggingFaceConfigAt: path) }
            #expect(e?.message.contains(field) == true, "\(e?.description ?? "") should mention \(field)")
            #expect(e?.path == path)
        }
    }
}

/// config.json's quantization_config (AutoAWQ and AutoGPTQ fixtures) and the I32 tensors they hold.
@Suite struct QuantizedConfigTests {
    @Test func fixturesParse() throws {
        let awq = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("quantized/awq-g64/config.json"))
        #expect(awq.quantization == CheckpointQuantization(method: .awq, bits: 4, groupSize: 64, symmetric: false, zeroOffset: 0))
        let gptq = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("quantized/gptq-4bit-actorder/config.json"))
        #expect(gptq.quantization == CheckpointQuantization(method: .gptq, bits: 4, groupSize: 32, actOrder: true, symmetric: false,
                                                            zeroOffset: 1))
        let gptq8 = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("quantized/gptq-8bit/config.json"))
        #expect(gptq8.quantization?.bits == 8 && gptq8.quantization?.symmetric == true && gptq8.quantization?.actOrder == false)
        #expect(try TransformerConfig(huggingFaceConfigAt: Fixtures.path("tiny-llama/config.json")).quantization == nil)
    }

    @Test func otherLayoutsAreRefusedNamingTheField() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-qcfg-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("config.json").path
        let base = #""hidden_size": 64, "num_attention_heads": 4, "vocab_size": 8, "intermediate_size": 8, "num_hidden_layers": 1"#
        let cases: [(String, String)] = [
            (#"{"quant_method": "bitsandbytes", "bits": 4, "group_size": 64}"#, "quantization_config.quant_method"),
            (#"{"quant_method": "awq", "bits": 4, "group_size": 64, "version": "gemv"}"#, "quantization_config.version"),
            (#"{"quant_method": "awq", "bits": 4, "group_size": 64, "version": "marlin"}"#, "quantization_config.version"),
            (#"{"quant_method": "awq", "bits": 8, "group_size": 64, "version": "gemm"}"#, "quantization_config.bits"),
            (#"{"quant_method": "gptq", "bits": 3, "group_size": 128}"#, "quantization_config.bits"),
            (#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "checkpoint_format": "marlin"}"#, "quantization_config.checkpoint_format"),
            (#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "format": "bitblas"}"#, "quantization_config.format"),
            (#"{"quant_method": "gptq", "bits": 4, "group_size": 128, "is_marlin_format": true}"#, "quantization_config.is_marlin_format"),
            (#"{"quant_method": "gptq", "bits": 4}"#, "quantization_config.group_size"),
        ]
        for (q, field) in cases {
            try "{\(base), \"quantization_config\": \(q)}".write(toFile: path, atomically: true, encoding: .utf8)
            let e = #expect(throws: CheckpointError.self) { try TransformerConfig(huggingFaceConfigAt: path) }
            #expect(e?.message.contains(field) == true, "\(e?.description ?? "") should mention \(field)")
            #expect(e?.path == path)
        }
        try "{\(base), \"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 8, \"group_size\": -1, \"checkpoint_format\": \"gptq_v2\"}}"
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try TransformerConfig(huggingFaceConfigAt: path).quantization
                == CheckpointQuantization(method: .gptq, bits: 8, groupSize: 0, symmetric: true, zeroOffset: 0))
    }
}

/// RoPE scaling fields: unknown kinds and missing or bad numbers are refused at load, naming the
/// file and the field.
@Suite struct RopeScalingConfigTests {
    static let base = #""hidden_size": 64, "num_attention_heads": 4, "vocab_size": 8, "intermediate_size": 8, "num_hidden_layers": 1"#

    @Test func badScalingNamesTheFileAndField() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-rope-cfg-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("config.json").path
        let cases: [(String, String)] = [
            (#"{\#(Self.base), "rope_scaling": {"rope_type": "su", "factor": 2}}"#, "rope_scaling.rope_type"),
            (#"{\#(Self.base), "rope_scaling": {"type": "ntk-by-parts", "factor": 2}}"#, "rope_scaling.type"),
            (#"{\#(Self.base), "rope_parameters": {"rope_type": "mrope", "rope_theta": 10000}}"#, "rope_parameters.rope_type"),
            (#"{\#(Self.base), "rope_scaling": {"rope_type": "linear"}}"#, "rope_scaling.factor"),
            (#"{\#(Self.base), "rope_scaling": {"rope_type": "dynamic", "factor": "2"}}"#, "rope_scaling.factor"),
            (#"{\#(Self.base), "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1}}"#, "rope_scaling.high_freq_factor"),
            (#"{\#(Self.base), "rope_scaling": {"rope_type": "yarn", "factor": -4, "original_max_position_embeddings": 8}}"#, "rope_scaling.factor"),
            (#"{\#(Self.base), "rope_scaling": {"rope_type": "longrope", "short_factor": [1, 1], "long_factor": [2, 2, 2, 2, 2, 2, 2, 2], "original_max_position_embeddings": 8}}"#, "rope_scaling.short_factor"),
            (#"{\#(Self.base), "rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5}}"#, "rope_parameters.partial_rotary_factor"),
        ]
        for (text, field) in cases {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let e = #expect(throws: CheckpointError.self) { try TransformerConfig(huggingFaceConfigAt: path) }
            #expect(e?.message.contains(field) == true, "\(e?.description ?? "") should mention \(field)")
            #expect(e?.path == path)
        }
    }

    @Test func legacyAndNewKeysAgree() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-rope-keys-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("config.json").path
        // Qwen2.5-style yarn in the old key with "type", Phi-3's top-level original_max_position_embeddings.
        try #"{\#(Self.base), "max_position_embeddings": 131072, "rope_theta": 1000000, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let old = try TransformerConfig(huggingFaceConfigAt: path)
        try #"{\#(Self.base), "max_position_embeddings": 131072, "original_max_position_embeddings": 32768, "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1000000}}"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let new = try TransformerConfig(huggingFaceConfigAt: path)
        #expect(old.ropeScaling == new.ropeScaling && old.ropeTheta == new.ropeTheta)
        #expect(old.ropeScaling == .yarn(.init(factor: 4, originalMaxPositions: 32768)))
        #expect(abs(old.ropeAttentionFactor - (0.1 * log(4.0) + 1)) < 1e-12)
    }

    /// GGUF: linear and yarn are read, llama.cpp-only knobs and unknown types refused by key.
    @Test func ggufScalingKeys() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-rope-gguf-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("m.gguf").path
        func config(_ scaling: [(String, GGUFValue)]) throws -> TransformerConfig {
            let base: [(String, GGUFValue)] = [("general.architecture", .string("llama")), ("llama.embedding_length", .uint32(64)),
                                               ("llama.attention.head_count", .uint32(4)), ("llama.feed_forward_length", .uint32(8)),
                                               ("llama.block_count", .uint32(1)), ("llama.vocab_size", .uint32(8))]
            try GGUFWriter.writeMetadata(base + scaling, to: path)
            return try TransformerConfig(gguf: try GGUFFile(path: path))
        }
        #expect(try config([]).ropeScaling == nil)
        #expect(try config([("llama.rope.scaling.type", .string("linear")), ("llama.rope.scaling.factor", .float32(4))]).ropeScaling
                == .linear(factor: 4))
        #expect(try config([("llama.rope.scaling.type", .string("yarn")), ("llama.rope.scaling.factor", .float32(4)),
                            ("llama.rope.scaling.original_context_length", .uint32(4096))]).ropeScaling
                == .yarn(.init(factor: 4, originalMaxPositions: 4096)))
        let bad: [([(String, GGUFValue)], String)] = [
            ([("llama.rope.scaling.type", .string("su"))], "llama.rope.scaling.type"),
            ([("llama.rope.scaling.type", .string("linear"))], "llama.rope.scaling.factor"),
            ([("llama.rope.scaling.type", .string("yarn")), ("llama.rope.scaling.factor", .float32(4))],
             "llama.rope.scaling.original_context_length"),
            ([("llama.rope.scaling.type", .string("yarn")), ("llama.rope.scaling.factor", .float32(4)),
              ("llama.rope.scaling.original_context_length", .uint32(4096)), ("llama.rope.scaling.yarn_log_multiplier", .float32(0.1))],
             "llama.rope.scaling.yarn_log_multiplier"),
        ]
        for (keys, field) in bad {
            let e = #expect(throws: CheckpointError.self) { try config(keys) }
            #expect(e?.message.contains(field) == true, "\(e?.description ?? "") should mention \(field)")
            #expect(e?.path == path)
        }
    }

    /// Each kind's frequencies against transformers' formulas at a Llama-3-8B-like head.
    @Test func frequenciesFollowTheirFormulas() throws {
        var c = TransformerConfig(vocabularySize: 10, hiddenSize: 4096, intermediateSize: 1, layerCount: 1, headCount: 32,
                                  kvHeadCount: 8, ropeTheta: 500000, maxPositions: 8192)
        let plain = c.ropeInverseFrequencies()
        c.ropeScaling = .linear(factor: 4)
        #expect(zip(c.ropeInverseFrequencies(), plain).allSatisfy { $0 == $1 / 4 })
        c.ropeScaling = .dynamic(factor: 2)
        #expect(c.ropeInverseFrequencies(sequenceLength: 8192) == plain)
        let base = 500000 * pow(2.0 * 16384 / 8192 - 1, 128.0 / 126)
        for (got, i) in zip(c.ropeInverseFrequencies(sequenceLength: 16384), 0...) {
            let want = 1 / pow(base, Double(2 * i) / 128)
            #expect(abs(Double(got) - want) <= 1e-5 * want)
        }
        #expect(c.ropeDependsOnSequenceLength && c.ropeAttentionFactor == 1)
        c.ropeScaling = .longRoPE(.init(shortFactor: Array(repeating: 1, count: 64), longFactor: Array(repeating: 2, count: 64),
                                        originalMaxPositions: 4096))
        #expect(c.ropeInverseFrequencies(sequenceLength: 4096) == plain)
        #expect(zip(c.ropeInverseFrequencies(sequenceLength: 4097), plain).allSatisfy { abs($0 - $1 / 2) <= 1e-7 * $1 })
        #expect(abs(c.ropeAttentionFactor - (1 + log(2.0) / log(4096.0)).squareRoot()) < 1e-12)
    }
}
