// FP8 checkpoints (compressed-tensors FP8_DYNAMIC and ModelOpt FP8 layouts, Tests/Fixtures/fp8,
// scripts/make_fp8_fixtures.py) load with their codes byte for byte and give the emulated FP8
// GEMM's logits; --quantization fp8 at load and in engine folders; refusals name the option.
import Checkpoints
import Compute
import CPUCompute
import Foundation
import Models
import TestFixtures
import Testing

/// A CPU backend that says it has no FP8 GEMM (what the CUDA backend says today).
final class NoFP8Backend: ComputeBackend, Sendable {
    let cpu = CPUBackend()
    var name: String { "cuda" }
    func upload(_ host: HostTensor) throws -> Tensor { try cpu.upload(host) }
    func makeActivation(_ shape: [Int]) -> Tensor { cpu.makeActivation(shape) }
    func makeKVCache(_ layout: KVCacheLayout) throws -> KVCache { try cpu.makeKVCache(layout) }
    func download(_ tensor: Tensor) -> [Float] { cpu.download(tensor) }
    func embed(_ ids: [Int32], table: Tensor, into out: Tensor) { cpu.embed(ids, table: table, into: out) }
    func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into out: Tensor) { cpu.rmsNorm(x, weight: weight, eps: eps, into: out) }
    func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) { cpu.matmul(x, weight: weight, bias: bias, into: out) }
    func rope(_ x: Tensor, headCount: Int, headDim: Int, positions: [Int32], inverseFrequencies: [Float]) {
        cpu.rope(x, headCount: headCount, headDim: headDim, positions: positions, inverseFrequencies: inverseFrequencies)
    }
    func attention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, cache: KVCache, layer: Int,
                   sequences: [AttentionSequence], scale: Float, into out: Tensor) {
        cpu.attention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: headDim, cache: cache, layer: layer,
                      sequences: sequences, scale: scale, into: out)
    }
    func swiglu(_ gateUp: Tensor, into out: Tensor) { cpu.swiglu(gateUp, into: out) }
    func add(_ x: Tensor, into accumulator: Tensor) { cpu.add(x, into: accumulator) }
    func gatherRows(_ x: Tensor, rows: [Int], into out: Tensor) { cpu.gatherRows(x, rows: rows, into: out) }
    func gatherColumns(_ x: Tensor, order: ColumnOrder, into out: Tensor) { cpu.gatherColumns(x, order: order, into: out) }
    func copyKVBlock(_ cache: KVCache, from: Int, to: Int) { cpu.copyKVBlock(cache, from: from, to: to) }
}

@Suite struct FP8CheckpointTests {
    static let kinds = ["compressed-tensors", "modelopt"]
    nonisolated(unsafe) static let reference = try! Fixtures.json("fp8/reference.json")   // read-only after load

    /// The fixture's projection `name` of layer `i`: codes and per-row scales as the file has them.
    func fileProjection(_ dir: String, _ name: String) throws -> (codes: [UInt8], scales: [Float], inputScale: Float?) {
        let source = try SafetensorsCheckpoint(directory: dir)
        let raw = try source.rawTensor(name + ".weight")
        #expect(raw.dtypeName == "F8_E4M3")
        let s = try source.tensor(name + ".weight_scale").floatValues()
        let rows = raw.shape[0]
        let input = source.has(name + ".input_scale") ? try source.tensor(name + ".input_scale").floatValues()[0] : nil
        return (Array(raw.bytes), s.count == 1 ? Array(repeating: s[0], count: rows) : s, input)
    }

    @Test(arguments: kinds)
    func checkpointLoadsItsCodesAsTheyAre(kind: String) throws {
        let dir = Fixtures.path("fp8/" + kind)
        let ckpt = try LoadedCheckpoint.open(dir)
        #expect(ckpt.config.quantization?.method == .fp8)
        #expect(ckpt.config.quantization?.staticActivations == (kind == "modelopt"))
        for (i, l) in ckpt.weights.layers.enumerated() {
            let p = "model.layers.\(i)."
            let parts: [(HostTensor, [String])] = [(l.qkv, ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]),
                                                  (l.output, ["self_attn.o_proj"]), (l.gateUp, ["mlp.gate_proj", "mlp.up_proj"]),
                                                  (l.down, ["mlp.down_proj"])]
            for (t, names) in parts {
                #expect(t.dtype == .e4m3)
                var row = 0
                var inputScales: [Float] = []
                for n in names {
                    let f = try fileProjection(dir, p + n)
                    let rows = f.scales.count, k = t.rowLength
                    for r in 0..<rows {
                        let (codes, scale) = t.fp8Row(row + r)
                        #expect(Array(codes) == Array(f.codes[(r * k)..<((r + 1) * k)]), "\(n) row \(r)")
                        #expect(scale == f.scales[r])
                    }
                    row += rows
                    if let s = f.inputScale { inputScales.append(s) }
                }
                #expect(t.fp8?.inputScale == inputScales.max(), "a fused matrix takes the largest static input scale")
            }
        }
        #expect(ckpt.weights.head.dtype == .bf16, "lm_head stays as the file has it")
        #expect(ckpt.quantizationSummary == (kind == "modelopt" ? "fp8 static" : "fp8 dynamic"))
    }

    @Test(arguments: kinds)
    func logitsMatchTheEmulatedReference(kind: String) throws {
        let model = try load(Fixtures.path("fp8/" + kind))
        let prompts = (Self.reference["prompts"] as! [[NSNumber]]).map { $0.map(\.int32Value) }
        let want = ((Self.reference[kind] as! [String: Any])["logits_last"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
        // The same quantized operands; only fp32 summation order differs (and, rarely, an
        // activation that lands on a rounding tie one way here and the other there).
        let got = try prompts.map { try allLogits(model, $0).last! }
        #expect(maxRowRelativeError(got, want) < 1e-4, "\(kind)")
    }

    @Test func quantizingAtLoadMatchesTheCompressedTensorsRecipe() throws {
        // tiny-llama quantized by --quantization fp8 holds what llm-compressor wrote (per-channel
        // amax / 448), up to the BF16 rounding of the file's scales.
        let ckpt = try LoadedCheckpoint.open(Fixtures.path("tiny-llama"))
        let file = try LoadedCheckpoint.open(Fixtures.path("fp8/compressed-tensors"))
        for (l, f) in zip(ckpt.weights.layers, file.weights.layers) {
            for (a, b) in [(l.qkv, f.qkv), (l.output, f.output), (l.gateUp, f.gateUp), (l.down, f.down)] {
                let q = try a.quantizedFP8()
                for r in 0..<q.rowCount {
                    let (qc, qs) = q.fp8Row(r), (fc, fs) = b.fp8Row(r)
                    #expect(Array(qc) == Array(fc))
                    #expect(abs(qs - fs) <= qs / 128)
                }
            }
        }
        let backend = CPUBackend()
        let model = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: backend, quantization: .fp8)
        let float = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: backend)
        let ids: [Int32] = [1, 17, 99, 4, 250, 3]
        let err = maxRowRelativeError(try allLogits(model, ids), try allLogits(float, ids))
        // Measured 0.157: three mantissa bits on both operands of a random two-layer model whose logits are small.
        #expect(err > 0 && err < 0.25, "fp8 is close to f32 but not equal (\(err))")
    }

    @Test func engineFolderKeepsTheCodesAndScales() throws {
        for (source, q) in [("tiny-llama", WeightQuantization?.some(.fp8)), ("fp8/modelopt", nil)] {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-fp8-\(getpid())-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let ckpt = try LoadedCheckpoint.open(Fixtures.path(source))
            try EngineFolder.build(ckpt, quantization: q, to: dir)
            let engine = try LoadedCheckpoint.open(dir)
            #expect(engine.format == .engine)
            for (e, s) in zip(engine.weights.layers, ckpt.weights.layers) {
                for (a, b) in [(e.qkv, s.qkv), (e.output, s.output), (e.gateUp, s.gateUp), (e.down, s.down)] {
                    let want = try q == nil ? b : b.quantizedFP8()
                    #expect(a.dtype == .e4m3 && a.fp8 == want.fp8 && Array(a.bytes) == Array(want.bytes))
                }
            }
            let ids: [Int32] = [1, 300, 2, 45, 9]
            let atLoad = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: CPUBackend(), quantization: q)
            #expect(try allLogits(load(dir), ids) == allLogits(atLoad, ids), "\(source): the engine computes what loading does")
            #expect(throws: QuantizationError.self) {
                _ = try LlamaModel(config: engine.config, weights: engine.weights, backend: CPUBackend(), quantization: .fp8)
            }
        }
    }

    @Test func refusalsNameTheOption() throws {
        let ckpt = try LoadedCheckpoint.open(Fixtures.path("tiny-llama"))
        let asked = #expect(throws: BackendLimitation.self) {
            _ = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: NoFP8Backend(), quantization: .fp8)
        }
        #expect(asked?.description.contains("--quantization fp8") == true && asked?.description.contains("no FP8 kernels") == true)
        let file = try LoadedCheckpoint.open(Fixtures.path("fp8/compressed-tensors"))
        let stored = #expect(throws: BackendLimitation.self) {
            _ = try LlamaModel(config: file.config, weights: file.weights, backend: NoFP8Backend())
        }
        #expect(stored?.description.contains("FP8") == true && stored?.description.contains("--device cpu") == true)
        for (group, zeros) in [(Int?.some(128), false), (nil, true)] {
            let e = #expect(throws: QuantizationError.self) { _ = try WeightQuantization(name: "fp8", groupSize: group, zeroPoints: zeros) }
            #expect(e?.description.contains("fp8") == true)
        }
        #expect(try WeightQuantization(name: "FP8") == .fp8 && WeightQuantization.fp8.weightOnlyFormat == nil)
    }

    @Test func badFP8CheckpointsFailNamingTheTensorOrField() throws {
        // quantization_config dialects and their refusals.
        let bad: [(String, String)] = [
            (#"{"quant_method": "fp8", "weight_block_size": [128, 128]}"#, "quantization_config.weight_block_size"),
            (#"{"quant_method": "modelopt", "quant_algo": "NVFP4"}"#, "quantization_config.quant_algo"),
            (#"{"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {}}"#, "quantization_config.format"),
            (#"{"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "block"}, "input_activations": {"num_bits": 8, "type": "float", "dynamic": true}}}}"#,
             "config_groups.g.weights.strategy"),
            (#"{"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}}"#,
             "config_groups.g.input_activations"),
        ]
        for (json, field) in bad {
            let e = #expect(throws: CheckpointError.self) {
                _ = try CheckpointQuantization(json: try JSONSerialization.jsonObject(with: Data(json.utf8)), path: "config.json")
            }
            #expect(e?.description.contains(field) == true, "\(json): \(e?.description ?? "no error")")
        }
        let good = try CheckpointQuantization(json: try JSONSerialization.jsonObject(with: Data(#"{"quant_method": "fp8", "activation_scheme": "static"}"#.utf8)), path: "c")
        #expect(good.method == .fp8 && good.staticActivations)
    }
}
