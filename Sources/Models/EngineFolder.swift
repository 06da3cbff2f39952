// EngineFolder: what `petrel build` writes and every command loads with `--model DIR` (and a
// repository's gpt_model_path): TensorRT-LLM's engine directory, made portable. A folder of
//
//   config.json         the model's Hugging Face config, plus "petrel_engine": {format_version,
//                       quantization, source}
//   model*.safetensors  LlamaWeights under Petrel's names (`layers.N.qkv`, …): norms F32, the
//                       embedding F16 / BF16 / F32, matrices as the backends compute with them:
//                       floats, or weight-only rows as U8 [rows, rowBytes] whose format the shard's
//                       __metadata__ gives ("petrel.format.<name>": "bits,groupSize,zeros,columns"),
//                       or FP8 rows (FP8.swift) the same way ("fp8,columns,inputScale|dynamic");
//                       `layers.N.qkv_input_order` (output_, gate_up_) I32 where a matrix's columns
//                       are in another order than its input's (GPTQ act-order; format version 2)
//   tokenizer.json …    the source's tokenizer files, or tokenizer.gguf (a GGUF source's
//                       tokenizer metadata, no tensors)
//
// Loading one does no quantization or conversion work: matrices are viewed in the mapped shards.
import Checkpoints
import Compute
import Foundation

public enum EngineFolder {
    /// The format this build writes and the newest it reads (2: input orders).
    public static let formatVersion = 2

    /// The engine format version of a config.json: nil when it is not an engine's (no
    /// "petrel_engine", or not JSON: the Hugging Face reader says what is wrong then); throws when
    /// "petrel_engine" is malformed or newer than this build reads.
    static func version(ofConfigAt path: String) throws -> Int? {
        guard let data = FileManager.default.contents(atPath: path),
              let o = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let value = o["petrel_engine"] else { return nil }
        guard let engine = value as? [String: Any] else { throw CheckpointError(path, "petrel_engine: not an object") }
        guard let version = (engine["format_version"] as? NSNumber)?.intValue else {
            throw CheckpointError(path, "petrel_engine.format_version: missing or not a number")
        }
        guard version >= 1 && version <= formatVersion else {
            throw CheckpointError(path, "petrel_engine.format_version: \(version) is newer than this petrel reads (\(formatVersion)); rebuild the engine with this petrel")
        }
        return version
    }

    /// Writes `checkpoint` as an engine folder at `directory` (created; must be empty or absent),
    /// its matrices quantized to `quantization` when given, GGML blocks converted to weight-only
    /// matrices. Returns the bytes of the matrices written.
    @discardableResult
    public static func build(_ checkpoint: LoadedCheckpoint, quantization: WeightQuantization?, to directory: String,
                             shardBytes: Int = 4 << 30, progress: LoadProgress = .none) throws -> Int {
        let fm = FileManager.default
        if fm.fileExists(atPath: directory), !((try? fm.contentsOfDirectory(atPath: directory))?.isEmpty ?? true) {
            throw CheckpointError(directory, "the output folder exists and is not empty")
        }
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let w = checkpoint.weights
        var tensors: [TensorToWrite] = []
        let metadata = ["format": "pt", "petrel.format_version": "\(formatVersion)"]
        var matrixBytes = 0
        func add(_ name: String, _ t: HostTensor) {
            if let f = t.fp8 {
                let format = ["petrel.format.\(name)": "fp8,\(t.rowLength),\(f.inputScale.map { "\($0)" } ?? "dynamic")"]
                tensors.append(TensorToWrite(name: name, dtypeName: "U8", shape: [t.rowCount, t.rowBytes], bytes: t.bytes, owner: t.owner,
                                             metadata: format))
            } else if let f = t.weightOnly {
                let format = ["petrel.format.\(name)": "\(f.bits),\(f.groupSize),\(f.hasZeros ? 1 : 0),\(t.rowLength)"]
                tensors.append(TensorToWrite(name: name, dtypeName: "U8", shape: [t.rowCount, t.rowBytes], bytes: t.bytes, owner: t.owner,
                                             metadata: format))
            } else {
                let dtypeName = [DType.f32: "F32", .f16: "F16", .bf16: "BF16"][t.dtype]!
                tensors.append(TensorToWrite(name: name, dtypeName: dtypeName, shape: t.shape, bytes: t.bytes, owner: t.owner))
            }
        }
        func matrix(_ name: String, _ t: HostTensor, _ q: WeightQuantization?) throws {
            let m = try prepareMatrix(t, quantization: q, nativeBlockTypes: [], name: name)
            matrixBytes += m.bytes.count
            add(name, m)
        }
        for (i, l) in w.layers.enumerated() {
            defer { progress.step(i + 1, of: w.layers.count) }
            let p = "layers.\(i)."
            add(p + "attention_norm", l.attentionNorm.toFloat32())
            try matrix(p + "qkv", l.qkv, quantization)
            if let b = l.qkvBias { add(p + "qkv_bias", b.toFloat32()) }
            try matrix(p + "output", l.output, quantization)
            add(p + "ffn_norm", l.ffnNorm.toFloat32())
            try matrix(p + "gate_up", l.gateUp, quantization)
            try matrix(p + "down", l.down, quantization)
            for (name, order) in [("qkv_input_order", l.qkvInputOrder), ("output_input_order", l.outputInputOrder),
                                  ("gate_up_input_order", l.gateUpInputOrder)] {
                guard let order else { continue }
                let buffer = OwnedBuffer(byteCount: 4 * order.count)
                order.withUnsafeBytes { buffer.mutableBytes.copyMemory(from: $0) }
                tensors.append(TensorToWrite(name: p + name, dtypeName: "I32", shape: [order.count],
                                             bytes: UnsafeRawBufferPointer(buffer.mutableBytes), owner: buffer))
            }
        }
        let embedding = w.embedding.dtype.isQuantized ? w.embedding.toFloat16() : w.embedding
        add("embedding", embedding)
        add("final_norm", w.finalNorm.toFloat32())
        // A float head that is the embedding itself stays tied; any other head is written.
        var config = checkpoint.config
        let tied = w.head.bytes.baseAddress == w.embedding.bytes.baseAddress && !w.head.dtype.isQuantized
        config.tieEmbeddings = tied
        if !tied { try matrix("head", w.head, nil) }
        try SafetensorsWriter.write(tensors, metadata: metadata, to: directory, shardBytes: shardBytes)

        var json = config.huggingFaceJSON()
        json["petrel_engine"] = ["format_version": formatVersion, "quantization": quantization.map { "\($0)" } ?? "none",
                                 "matrices": checkpoint.quantizationSummary, "source": checkpoint.path] as [String: Any]
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: directory + "/config.json"))
        try copyTokenizer(of: checkpoint, to: directory)
        return matrixBytes
    }

    /// The source's tokenizer files, or a GGUF source's tokenizer.* metadata as tokenizer.gguf.
    static func copyTokenizer(of checkpoint: LoadedCheckpoint, to directory: String) throws {
        if let gguf = checkpoint.gguf {
            let keys = gguf.metadata.keys.filter { $0.hasPrefix("tokenizer.") || $0 == "general.architecture" }.sorted()
            try GGUFWriter.writeMetadata(keys.map { ($0, gguf.metadata[$0]!) }, to: directory + "/tokenizer.gguf")
            return
        }
        let fm = FileManager.default
        for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                     "tokenizer.model", "tokenizer.gguf", "chat_template.jinja"]
        where fm.fileExists(atPath: checkpoint.path + "/" + name) {
            try fm.copyItem(atPath: checkpoint.path + "/" + name, toPath: directory + "/" + name)
        }
    }
}

extension LlamaWeights {
    /// An engine folder's weights (EngineFolder), viewed in its mapped shards.
    init(engine source: SafetensorsCheckpoint, config c: TransformerConfig) throws {
        let path = source.path
        func get(_ name: String, _ shape: [Int]) throws -> HostTensor {
            let raw = try source.rawTensor(name)
            guard raw.dtypeName == "U8" else { return try expect(source.tensor(name), shape, name, path) }
            let field = "petrel.format.\(name)"
            guard let spec = source.metadata(ofShardHolding: name)[field] else {
                throw CheckpointError(raw.file, "tensor '\(name)' is U8 but the shard's __metadata__ has no \(field)")
            }
            if spec.hasPrefix("fp8,") { return try fp8(raw, spec, field, shape) }
            let parts = spec.split(separator: ",").compactMap { Int($0) }
            guard parts.count == 4, [8, 4].contains(parts[0]), parts[1] >= 0, parts[1] % (parts[0] == 8 ? 16 : 32) == 0,
                  parts[2] == 0 || parts[2] == 1 else {
                throw CheckpointError(raw.file, "__metadata__.\(field): '\(spec)' is not bits,groupSize,zeros,columns")
            }
            let f = WeightOnlyFormat(bits: parts[0], groupSize: parts[1], hasZeros: parts[2] == 1)
            let columns = parts[3]
            if let p = f.problem(columns: columns) { throw CheckpointError(raw.file, "__metadata__.\(field): \(p)") }
            guard raw.shape.count == 2, [raw.shape[0], columns] == shape, raw.shape[1] == f.rowBytes(columns: columns) else {
                throw CheckpointError(raw.file, "tensor '\(name)': shape \(raw.shape) does not hold \(shape) as \(f) (expected [\(shape[0]), \(f.rowBytes(columns: columns))])")
            }
            return HostTensor(dtype: f.dtype, shape: shape, bytes: raw.bytes, owner: raw.owner, weightOnly: f)
        }
        /// An FP8 matrix: "fp8,columns,inputScale|dynamic".
        func fp8(_ raw: RawTensor, _ spec: String, _ field: String, _ shape: [Int]) throws -> HostTensor {
            let parts = spec.split(separator: ",").map(String.init)
            let scale = parts.count == 3 ? (parts[2] == "dynamic" ? Float?.none : Float(parts[2]).map { Float?.some($0) }) : nil
            guard parts.count == 3, let columns = Int(parts[1]), let inputScale = scale,
                  inputScale.map({ $0 > 0 && $0.isFinite }) ?? true else {
                throw CheckpointError(raw.file, "__metadata__.\(field): '\(spec)' is not fp8,columns,inputScale (or dynamic)")
            }
            let f = FP8Format(inputScale: inputScale)
            guard raw.shape.count == 2, [raw.shape[0], columns] == shape, raw.shape[1] == f.rowBytes(columns: columns) else {
                throw CheckpointError(raw.file, "tensor '\(raw.name)': shape \(raw.shape) does not hold \(shape) as \(f) (expected [\(shape[0]), \(f.rowBytes(columns: columns))])")
            }
            return HostTensor(dtype: .e4m3, shape: shape, bytes: raw.bytes, owner: raw.owner, fp8: f)
        }
        /// An optional input order: `count` I32 values, each a column below `count`.
        func order(_ name: String, _ count: Int) throws -> [Int32]? {
            guard source.has(name) else { return nil }
            let raw = try source.rawTensor(name)
            guard raw.dtypeName == "I32", raw.shape == [count] else {
                throw CheckpointError(raw.file, "tensor '\(name)': \(raw.dtypeName) \(raw.shape), expected I32 [\(count)]")
            }
            let values = (0..<count).map { Int32(littleEndian: raw.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            guard Set(values) == Set(0..<Int32(count)) else {
                throw CheckpointError(raw.file, "tensor '\(name)': not a permutation of 0..<\(count)")
            }
            return values
        }
        let qRows = c.headCount * c.headDim, kvRows = c.kvHeadCount * c.headDim, h = c.hiddenSize
        let layers = try (0..<c.layerCount).map { i in
            let p = "layers.\(i)."
            return LlamaLayerWeights(
                attentionNorm: try get(p + "attention_norm", [h]), qkv: try get(p + "qkv", [qRows + 2 * kvRows, h]),
                qkvBias: c.attentionBias ? try get(p + "qkv_bias", [qRows + 2 * kvRows]) : nil,
                output: try get(p + "output", [h, qRows]), ffnNorm: try get(p + "ffn_norm", [h]),
                gateUp: try get(p + "gate_up", [2 * c.intermediateSize, h]), down: try get(p + "down", [h, c.intermediateSize]),
                qkvInputOrder: try order(p + "qkv_input_order", h), outputInputOrder: try order(p + "output_input_order", qRows),
                gateUpInputOrder: try order(p + "gate_up_input_order", h))
        }
        let embedding = try get("embedding", [c.vocabularySize, h])
        self.init(embedding: embedding, layers: layers, finalNorm: try get("final_norm", [h]),
                  head: c.tieEmbeddings ? embedding : try get("head", [c.vocabularySize, h]))
    }
}

extension HostTensor {
    /// The same values as fp16 (a copy).
    func toFloat16() -> HostTensor {
        let v = floatValues()
        let buffer = OwnedBuffer(byteCount: v.count * 2)
        let out = buffer.mutableBytes.bindMemory(to: UInt16.self)
        for i in v.indices { out[i] = halfBits(v[i]) }
        return HostTensor(dtype: .f16, shape: shape, bytes: UnsafeRawBufferPointer(buffer.mutableBytes), owner: buffer)
    }
}
