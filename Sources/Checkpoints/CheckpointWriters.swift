// CheckpointWriters: what `petrel build` writes: safetensors shards (with their index), a
// metadata-only GGUF (a GGUF checkpoint's tokenizer, kept in its own format), and a Hugging Face
// config.json from a TransformerConfig. Each reader in this module reads them back.
import Compute
import Foundation

/// One tensor to write: its safetensors dtype name, shape and bytes.
public struct TensorToWrite {
    public let name: String
    public let dtypeName: String
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer
    /// Keeps `bytes` alive until written.
    public let owner: AnyObject?
    /// Entries for the `__metadata__` of the shard that holds this tensor.
    public let metadata: [String: String]

    public init(name: String, dtypeName: String, shape: [Int], bytes: UnsafeRawBufferPointer, owner: AnyObject?,
                metadata: [String: String] = [:]) {
        self.metadata = metadata
        self.name = name
        self.dtypeName = dtypeName
        self.shape = shape
        self.bytes = bytes
        self.owner = owner
    }
}

public enum SafetensorsWriter {
    /// Writes `tensors` into `directory` as shards of at most `shardBytes` (one tensor may exceed
    /// it alone): `model.safetensors` when one shard does, else `model-0000i-of-0000n.safetensors`
    /// and `model.safetensors.index.json`, as Hugging Face does. `metadata` goes into every
    /// shard's `__metadata__`, each tensor's own into its shard's. Returns the file names written.
    @discardableResult
    public static func write(_ tensors: [TensorToWrite], metadata: [String: String], to directory: String,
                             shardBytes: Int = 4 << 30) throws -> [String] {
        var shards: [[TensorToWrite]] = [[]]
        var size = 0
        for t in tensors {
            if size > 0 && size + t.bytes.count > shardBytes { shards.append([]); size = 0 }
            shards[shards.count - 1].append(t)
            size += t.bytes.count
        }
        let names = shards.count == 1 ? ["model.safetensors"]
            : (1...shards.count).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards.count) }
        var weightMap: [String: String] = [:]
        for (shard, name) in zip(shards, names) {
            try writeFile(shard, metadata: metadata, path: directory + "/" + name)
            for t in shard { weightMap[t.name] = name }
        }
        if shards.count > 1 {
            let total = tensors.reduce(0) { $0 + $1.bytes.count }
            let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": weightMap]
            try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
                .write(to: URL(fileURLWithPath: directory + "/model.safetensors.index.json"))
        }
        return names
    }

    static func writeFile(_ tensors: [TensorToWrite], metadata: [String: String], path: String) throws {
        var all = metadata
        for t in tensors { all.merge(t.metadata) { $1 } }
        var header: [String: Any] = ["__metadata__": all]
        var offset = 0
        for t in tensors {
            header[t.name] = ["dtype": t.dtypeName, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.count]] as [String: Any]
            offset += t.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }   // the format pads its header with spaces
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw CheckpointError(path, "cannot create the file") }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var length = UInt64(json.count).littleEndian
        try handle.write(contentsOf: Data(bytes: &length, count: 8))
        try handle.write(contentsOf: json)
        for t in tensors where t.bytes.count > 0 {
            // In slices, so a multi-gigabyte tensor is never copied whole.
            var at = 0
            while at < t.bytes.count {
                let n = min(64 << 20, t.bytes.count - at)
                try handle.write(contentsOf: Data(bytes: t.bytes.baseAddress! + at, count: n))
                at += n
            }
            withExtendedLifetime(t.owner) {}
        }
    }
}

public enum GGUFWriter {
    /// A GGUF v3 file with `metadata` (in key order) and no tensors: a GGUF tokenizer on its own.
    public static func writeMetadata(_ metadata: [(String, GGUFValue)], to path: String) throws {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { let b = Array(s.utf8); u64(UInt64(b.count)); out.append(contentsOf: b) }
        func typeID(_ v: GGUFValue) -> UInt32 {
            switch v {
            case .uint8: return 0
            case .int8: return 1
            case .uint16: return 2
            case .int16: return 3
            case .uint32: return 4
            case .int32: return 5
            case .float32: return 6
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            case .uint64: return 10
            case .int64: return 11
            case .float64: return 12
            }
        }
        func value(_ v: GGUFValue) {
            switch v {
            case .uint8(let x): out.append(x)
            case .int8(let x): out.append(UInt8(bitPattern: x))
            case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .int16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .uint32(let x): u32(x)
            case .int32(let x): u32(UInt32(bitPattern: x))
            case .float32(let x): u32(x.bitPattern)
            case .bool(let x): out.append(x ? 1 : 0)
            case .string(let s): string(s)
            case .uint64(let x): u64(x)
            case .int64(let x): u64(UInt64(bitPattern: x))
            case .float64(let x): u64(x.bitPattern)
            case .array(let items):
                u32(items.first.map(typeID) ?? 4)
                u64(UInt64(items.count))
                for item in items { value(item) }
            }
        }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(0)
        u64(UInt64(metadata.count))
        for (key, v) in metadata {
            string(key)
            u32(typeID(v))
            value(v)
        }
        try out.write(to: URL(fileURLWithPath: path))
    }
}

extension TransformerConfig {
    /// A Hugging Face config.json (transformers' keys) that `init(huggingFaceConfigAt:)` reads
    /// back as this config.
    public func huggingFaceJSON() -> [String: Any] {
        let names: [Architecture: (String, String)] = [.llama: ("LlamaForCausalLM", "llama"),
                                                        .mistral: ("MistralForCausalLM", "mistral"),
                                                        .qwen2: ("Qwen2ForCausalLM", "qwen2")]
        var o: [String: Any] = [
            "architectures": [names[architecture]!.0], "model_type": names[architecture]!.1,
            "vocab_size": vocabularySize, "hidden_size": hiddenSize, "intermediate_size": intermediateSize,
            "num_hidden_layers": layerCount, "num_attention_heads": headCount, "num_key_value_heads": kvHeadCount,
            "head_dim": headDim, "rope_theta": ropeTheta, "rms_norm_eps": rmsNormEps,
            "max_position_embeddings": maxPositions, "tie_word_embeddings": tieEmbeddings, "attention_bias": attentionBias,
            "eos_token_id": eosTokenIDs.count == 1 ? eosTokenIDs[0] as Any : eosTokenIDs as Any,
        ]
        if let bosTokenID { o["bos_token_id"] = bosTokenID }
        if let s = ropeScaling { o["rope_scaling"] = s.huggingFaceJSON }
        if let w = slidingWindows.first(where: { $0 > 0 }) {
            // transformers' per-layer form; Llama has no window in transformers, so a windowed
            // Llama-shaped model (a GGUF with the key) is written as the Mistral it then is.
            precondition(slidingWindows.allSatisfy { $0 == 0 || $0 == w }, "one window size per model")
            o["sliding_window"] = w
            o["layer_types"] = (0..<layerCount).map { slidingWindow(layer: $0) > 0 ? "sliding_attention" : "full_attention" }
            if architecture == .qwen2 { o["use_sliding_window"] = true }
            if architecture == .llama {
                o["architectures"] = ["MistralForCausalLM"]
                o["model_type"] = "mistral"
            }
        }
        return o
    }
}
