// Pre-quantized Hugging Face checkpoints (AutoAWQ GEMM, AutoGPTQ "gptq") against the libraries'
// own packing and dequantization (Tests/Fixtures/quantized, scripts/make_quantized_fixtures.py):
// Petrel's weight-only matrices, put back in the checkpoint's row and column order, equal the
// reference dequantization exactly; the model's logits equal transformers' on those weights; bad
// files fail naming the file and the tensor or field.
import Checkpoints
import Compute
import CPUCompute
import Foundation
import Models
import TestFixtures
import Testing

let quantizedFixtures = ["awq-g128", "awq-g64", "gptq-4bit", "gptq-4bit-actorder", "gptq-8bit"]

/// The matrices of `w` in the checkpoint's layout, by Hugging Face projection name: rows in
/// output order, columns in input order (undoing the input orders and, for gate/up/down, the
/// order that absorbed down_proj's act order: `downOrders[layer]`, rows of gate/up = columns of down).
func checkpointLayout(_ w: LlamaWeights, _ c: TransformerConfig, downOrders: [[Int32]?]) -> [String: (shape: [Int], values: [Float])] {
    func logical(_ t: HostTensor, rows: Range<Int>, rowOrder: [Int32]?, columnOrder: [Int32]?) -> (shape: [Int], values: [Float]) {
        let all = t.floatValues(), k = t.rowLength
        var out = [Float](repeating: .nan, count: rows.count * k)
        for (local, r) in rows.enumerated() {
            let row = rowOrder.map { Int($0[local]) } ?? local
            for j in 0..<k { out[row * k + (columnOrder.map { Int($0[j]) } ?? j)] = all[r * k + j] }
        }
        return ([rows.count, k], out)
    }
    let q = c.headCount * c.headDim, kv = c.kvHeadCount * c.headDim, f = c.intermediateSize
    var out: [String: (shape: [Int], values: [Float])] = [:]
    for (i, l) in w.layers.enumerated() {
        let p = "model.layers.\(i)."
        out[p + "self_attn.q_proj"] = logical(l.qkv, rows: 0..<q, rowOrder: nil, columnOrder: l.qkvInputOrder)
        out[p + "self_attn.k_proj"] = logical(l.qkv, rows: q..<(q + kv), rowOrder: nil, columnOrder: l.qkvInputOrder)
        out[p + "self_attn.v_proj"] = logical(l.qkv, rows: (q + kv)..<(q + 2 * kv), rowOrder: nil, columnOrder: l.qkvInputOrder)
        out[p + "self_attn.o_proj"] = logical(l.output, rows: 0..<c.hiddenSize, rowOrder: nil, columnOrder: l.outputInputOrder)
        out[p + "mlp.gate_proj"] = logical(l.gateUp, rows: 0..<f, rowOrder: downOrders[i], columnOrder: l.gateUpInputOrder)
        out[p + "mlp.up_proj"] = logical(l.gateUp, rows: f..<(2 * f), rowOrder: downOrders[i], columnOrder: l.gateUpInputOrder)
        out[p + "mlp.down_proj"] = logical(l.down, rows: 0..<c.hiddenSize, rowOrder: nil, columnOrder: downOrders[i])
    }
    return out
}

/// The act order of each layer's down_proj as its g_idx gives it (inputs sorted by group,
/// stably), nil when the checkpoint has no act order.
func downOrders(_ dir: String, _ c: TransformerConfig) throws -> [[Int32]?] {
    guard c.quantization?.actOrder == true else { return Array(repeating: nil, count: c.layerCount) }
    let source = try SafetensorsCheckpoint(directory: dir)
    return try (0..<c.layerCount).map { i in
        let raw = try source.rawTensor("model.layers.\(i).mlp.down_proj.g_idx")
        let g = (0..<raw.shape[0]).map { raw.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) }
        return g.indices.sorted { g[$0] != g[$1] ? g[$0] < g[$1] : $0 < $1 }.map(Int32.init)
    }
}

/// A copy of fixture `name` in a fresh folder, its config's quantization_config edited by
/// `quantization`, tensors in `drop` left out and those in `replace` swapped in.
func quantizedVariant(_ name: String, quantization: ([String: Any]) -> [String: Any] = { $0 }, drop: Set<String> = [],
                      replace: [String: TensorToWrite] = [:]) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-q-\(getpid())-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let source = Fixtures.path("quantized/" + name)
    var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/config.json"))) as! [String: Any]
    config["quantization_config"] = quantization(config["quantization_config"] as! [String: Any])
    try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: dir + "/config.json"))
    let file = try SafetensorsFile(path: source + "/model.safetensors")
    var tensors: [TensorToWrite] = []
    for key in file.entries.keys.sorted() where !drop.contains(key) {
        if let r = replace[key] { tensors.append(r); continue }
        let raw = try file.rawTensor(key)
        tensors.append(TensorToWrite(name: key, dtypeName: raw.dtypeName, shape: raw.shape, bytes: raw.bytes, owner: raw.owner))
    }
    try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: dir)
    return dir
}

/// An I32 tensor to write.
func int32Tensor(_ name: String, _ values: [Int32], shape: [Int]) -> TensorToWrite {
    let buffer = OwnedBuffer(byteCount: 4 * values.count)
    values.withUnsafeBytes { buffer.mutableBytes.copyMemory(from: $0) }
    return TensorToWrite(name: name, dtypeName: "I32", shape: shape, bytes: UnsafeRawBufferPointer(buffer.mutableBytes), owner: buffer)
}

func int32Values(_ raw: RawTensor) -> [Int32] {
    (0..<(raw.bytes.count / 4)).map { raw.bytes.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) }
}

@Suite struct QuantizedCheckpointTests {
    var reference: [String: Any] { try! Fixtures.json("quantized/reference.json") }

    @Test(arguments: quantizedFixtures)
    func matricesEqualTheLibrarysDequantization(fixture: String) throws {
        let dir = Fixtures.path("quantized/" + fixture)
        let ckpt = try LoadedCheckpoint.open(dir)
        let c = ckpt.config
        let q = try #require(c.quantization)
        let expected = (reference["models"] as! [String: Any])[fixture] as! [String: Any]
        let qc = expected["quantization_config"] as! [String: Any]
        // The format each matrix got: the file's bits and group (per row when a group spans the
        // row), zero points unless the checkpoint is symmetric (AWQ always has them).
        let zeros = q.method == .awq || !(qc["sym"] as! Bool)
        for l in ckpt.weights.layers {
            for m in [l.qkv, l.output, l.gateUp, l.down] {
                let f = try #require(m.weightOnly, "\(fixture): \(m.dtype) \(m.shape)")
                #expect(f.bits == q.bits && f.hasZeros == zeros)
                #expect(f.groupSize == (q.groupSize >= m.rowLength ? 0 : q.groupSize))
            }
            #expect((l.qkvInputOrder != nil) == q.actOrder && (l.outputInputOrder != nil) == q.actOrder)
            #expect((l.gateUpInputOrder != nil) == q.actOrder)
        }
        let got = checkpointLayout(ckpt.weights, c, downOrders: try downOrders(dir, c))
        let matrices = expected["matrices"] as! [String: [String: Any]]
        #expect(Set(got.keys) == Set(matrices.keys))
        for (name, m) in matrices {
            let (shape, values) = try #require(got[name])
            #expect(shape == (m["shape"] as! [NSNumber]).map(\.intValue), "\(fixture) \(name)")
            var sum = 0.0
            for (i, v) in values.enumerated() { sum += Double(v) * (1 + Double(i * 7919 % 1009) / 1009) }
            let want = (m["weighted_sum"] as! NSNumber).doubleValue
            #expect(abs(sum - want) <= 1e-12 * max(1, abs(want)), "\(fixture) \(name): weighted sum \(sum), expected \(want)")
            for s in m["samples"] as! [[NSNumber]] {
                let (r, k, v) = (s[0].intValue, s[1].intValue, s[2].floatValue)
                #expect(values[r * shape[1] + k] == v, "\(fixture) \(name)[\(r)][\(k)]")
            }
        }
    }

    @Test(arguments: quantizedFixtures)
    func logitsMatchTransformers(fixture: String) throws {
        let ckpt = try LoadedCheckpoint.open(Fixtures.path("quantized/" + fixture))
        // The .w4 / .w8 matrices as stored, in the CPU's exact mode (float activations).
        let model = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: CPUBackend(exactQuantizedMath: true))
        let ref = reference
        let prompts = (ref["prompts"] as! [[NSNumber]]).map { $0.map(\.int32Value) }
        let logits = ((ref["models"] as! [String: Any])[fixture] as! [String: Any])["logits_last"] as! [[NSNumber]]
        for (ids, want) in zip(prompts, logits) {
            let got = try allLogits(model, ids).last!
            let err = maxRowRelativeError([got], [want.map(\.floatValue)])
            #expect(err < 1e-3, "\(fixture), prompt of \(ids.count): relative error \(err)")
        }
    }

    /// GPTQ v2 stores the zero itself, not zero − 1: the act-order fixture rewritten so loads to
    /// the same matrices.
    @Test func gptqV2StoresZerosWithoutOffset() throws {
        let v1 = try LoadedCheckpoint.open(Fixtures.path("quantized/gptq-4bit-actorder"))
        let file = try SafetensorsFile(path: Fixtures.path("quantized/gptq-4bit-actorder/model.safetensors"))
        var replace: [String: TensorToWrite] = [:]
        for key in file.entries.keys where key.hasSuffix(".qzeros") {
            let raw = try file.rawTensor(key)
            // every 4-bit field + 1 (v1 zeros are 1…15, stored 0…14: no carry)
            replace[key] = int32Tensor(key, int32Values(raw).map { $0 &+ 0x1111_1111 }, shape: raw.shape)
        }
        let dir = try quantizedVariant("gptq-4bit-actorder", quantization: { var q = $0; q["checkpoint_format"] = "gptq_v2"; return q },
                                       replace: replace)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let v2 = try LoadedCheckpoint.open(dir)
        for (a, b) in zip(v1.weights.layers, v2.weights.layers) {
            for (x, y) in [(a.qkv, b.qkv), (a.output, b.output), (a.gateUp, b.gateUp), (a.down, b.down)] {
                #expect(x.weightOnly == y.weightOnly && x.floatValues() == y.floatValues())
            }
            #expect(a.qkvInputOrder == b.qkvInputOrder && a.outputInputOrder == b.outputInputOrder)
        }
    }

    /// desc_act true with a g_idx that is i / group already: no input orders at all.
    @Test func actOrderWithTrivialGroupsNeedsNoOrders() throws {
        let dir = try quantizedVariant("gptq-4bit", quantization: { var q = $0; q["desc_act"] = true; return q })
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try LoadedCheckpoint.open(dir).weights
        #expect(w.layers.allSatisfy { $0.qkvInputOrder == nil && $0.outputInputOrder == nil && $0.gateUpInputOrder == nil })
    }

    @Test func badCheckpointsNameTheFileAndTensor() throws {
        let p = "model.layers.0."
        let original = try SafetensorsFile(path: Fixtures.path("quantized/gptq-4bit-actorder/model.safetensors"))
        let oGroups = try original.rawTensor(p + "self_attn.o_proj.g_idx")
        let kQweight = try original.rawTensor(p + "self_attn.k_proj.qweight")
        let cases: [(String, () throws -> String, [String])] = [
            ("missing qzeros", { try quantizedVariant("awq-g64", drop: [p + "self_attn.k_proj.qzeros"]) },
             [p + "self_attn.k_proj.qzeros", "missing"]),
            ("missing scales", { try quantizedVariant("gptq-8bit", drop: [p + "mlp.down_proj.scales"]) },
             [p + "mlp.down_proj.scales", "missing"]),
            ("qweight of the wrong shape", {
                try quantizedVariant("gptq-4bit-actorder", replace: [p + "self_attn.q_proj.qweight": TensorToWrite(
                    name: p + "self_attn.q_proj.qweight", dtypeName: "I32", shape: kQweight.shape, bytes: kQweight.bytes, owner: kQweight.owner)])
            }, [p + "self_attn.q_proj.qweight", "shape"]),
            ("group size that does not match the tensors", {
                try quantizedVariant("gptq-4bit", quantization: { var q = $0; q["group_size"] = 32; return q })
            }, [p + "self_attn.q_proj.qzeros", "shape"]),
            ("act-order g_idx with desc_act false", {
                try quantizedVariant("gptq-4bit-actorder", quantization: { var q = $0; q["desc_act"] = false; return q })
            }, [p + "self_attn.q_proj.g_idx", "desc_act"]),
            ("q, k, v in different act orders", {
                try quantizedVariant("gptq-4bit-actorder", replace: [p + "self_attn.k_proj.g_idx": TensorToWrite(
                    name: p + "self_attn.k_proj.g_idx", dtypeName: "I32", shape: oGroups.shape, bytes: oGroups.bytes, owner: oGroups.owner)])
            }, [p + "self_attn.q_proj", p + "self_attn.k_proj", "g_idx"]),
            ("groups of the wrong size", {
                try quantizedVariant("gptq-4bit-actorder", replace: [
                    p + "mlp.down_proj.g_idx": int32Tensor(p + "mlp.down_proj.g_idx", (0..<256).map { Int32($0 % 3) }, shape: [256])])
            }, [p + "mlp.down_proj.g_idx", "group"]),
            ("AWQ qweight that is not I32", {
                let scales = try original.rawTensor(p + "self_attn.q_proj.scales")
                return try quantizedVariant("awq-g128", replace: [p + "self_attn.v_proj.qweight": TensorToWrite(
                    name: p + "self_attn.v_proj.qweight", dtypeName: "F16", shape: scales.shape, bytes: scales.bytes, owner: scales.owner)])
            }, [p + "self_attn.v_proj.qweight", "I32"]),
        ]
        for (what, make, fragments) in cases {
            let dir = try make()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let e = #expect(throws: CheckpointError.self, "\(what)") { try LoadedCheckpoint.open(dir) }
            #expect(e?.path == dir, "\(what): \(e?.description ?? "")")
            for f in fragments { #expect(e?.message.contains(f) == true, "\(what): \(e?.description ?? "") should name \(f)") }
        }
    }

    @Test func unknownMethodOrVersionNamesConfigJSON() throws {
        for (fixture, key, value, field) in [("awq-g64", "version", "gemv", "quantization_config.version"),
                                             ("gptq-4bit", "quant_method", "hqq", "quantization_config.quant_method")] {
            let dir = try quantizedVariant(fixture, quantization: { var q = $0; q[key] = value; return q })
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let e = #expect(throws: CheckpointError.self) { try LoadedCheckpoint.open(dir) }
            #expect(e?.path == dir + "/config.json" && e?.message.contains(field) == true && e?.message.contains(value) == true,
                    "\(e?.description ?? "")")
        }
    }

    /// `petrel build` keeps the act orders: the engine folder loads to the same matrices and orders.
    @Test func engineFolderKeepsInputOrders() throws {
        let ckpt = try LoadedCheckpoint.open(Fixtures.path("quantized/gptq-4bit-actorder"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-qe-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try EngineFolder.build(ckpt, quantization: nil, to: dir)
        let engine = try LoadedCheckpoint.open(dir)
        #expect(engine.format == .engine)
        for (a, b) in zip(ckpt.weights.layers, engine.weights.layers) {
            #expect(a.qkvInputOrder != nil && a.qkvInputOrder == b.qkvInputOrder)
            #expect(a.outputInputOrder != nil && a.outputInputOrder == b.outputInputOrder)
            #expect(a.gateUpInputOrder != nil && a.gateUpInputOrder == b.gateUpInputOrder)
            for (x, y) in [(a.qkv, b.qkv), (a.output, b.output), (a.gateUp, b.gateUp), (a.down, b.down)] {
                #expect(x.weightOnly == y.weightOnly && Array(x.bytes) == Array(y.bytes))
            }
        }
    }
}
