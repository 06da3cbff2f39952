// Engine folders (`petrel build`): what is written loads back as the same model, quantized
// matrices byte for byte what quantizing at load makes, and broken folders fail naming the file
// and the field.
import Checkpoints
import Compute
import CPUCompute
import Foundation
import Models
import TestFixtures
import Testing

@Suite struct EngineFolderTests {
    func temporaryFolder(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-engine-\(getpid())-\(name)").path
        try? FileManager.default.removeItem(atPath: dir)
        return dir
    }

    func matrices(_ w: LlamaWeights) -> [HostTensor] {
        w.layers.flatMap { [$0.qkv, $0.output, $0.gateUp, $0.down] } + [w.head]
    }

    @Test(arguments: ["tiny-llama", "tiny-llama-f32.gguf"])
    func floatEngineGivesTheSourcesLogits(source: String) throws {
        let dir = temporaryFolder("float-\(source)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let checkpoint = try LoadedCheckpoint.open(Fixtures.path(source))
        try EngineFolder.build(checkpoint, quantization: nil, to: dir)
        let engine = try LoadedCheckpoint.open(dir)
        #expect(engine.format == .engine && engine.config.hiddenSize == checkpoint.config.hiddenSize)
        let ids: [Int32] = [1, 17, 99, 4, 250, 3]
        let want = try allLogits(load(Fixtures.path(source)), ids)
        let got = try allLogits(load(dir), ids)
        #expect(got == want, "an f32 engine must compute exactly what its source does")
        // The tokenizer comes along (tokenizer.json, or a GGUF source's tokenizer.gguf).
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(names.contains("tokenizer.json") || names.contains("tokenizer.gguf"))
    }

    @Test(arguments: [WeightQuantization.int8WeightOnly, .int4WeightOnly(groupSize: 64, zeroPoints: true)])
    func quantizedEngineHoldsWhatQuantizingAtLoadMakes(q: WeightQuantization) throws {
        let dir = temporaryFolder("q-\(q.weightOnlyFormat!.bits)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let checkpoint = try LoadedCheckpoint.open(Fixtures.path("tiny-llama"))
        try EngineFolder.build(checkpoint, quantization: q, to: dir)
        let engine = try LoadedCheckpoint.open(dir)
        for (built, source) in zip(matrices(engine.weights), matrices(checkpoint.weights)).dropLast() {
            let atLoad = try source.quantized(q.weightOnlyFormat!)
            #expect(built.weightOnly == q.weightOnlyFormat && built.shape == source.shape)
            #expect(Array(built.bytes) == Array(atLoad.bytes))
        }
        // The head keeps its precision.
        #expect(engine.weights.head.dtype == .f32)
        // An engine is not quantized twice.
        #expect(throws: QuantizationError.self) {
            _ = try LlamaModel(config: engine.config, weights: engine.weights, backend: CPUBackend(), quantization: q)
        }
    }

    @Test func ggufBlocksBecomeWeightOnlyMatrices() throws {
        let dir = temporaryFolder("q8")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let checkpoint = try LoadedCheckpoint.open(Fixtures.path("tiny-llama-q8_0.gguf"))
        try EngineFolder.build(checkpoint, quantization: nil, to: dir)
        let engine = try LoadedCheckpoint.open(dir)
        for (built, source) in zip(matrices(engine.weights), matrices(checkpoint.weights)) where source.dtype == .q8_0 {
            #expect(built.weightOnly == WeightOnlyFormat(bits: 8, groupSize: 32, hasZeros: false))
            #expect(built.floatValues() == source.floatValues(), "Q8_0 converts exactly")
        }
        #expect(FileManager.default.fileExists(atPath: dir + "/tokenizer.gguf"))
    }

    @Test func shardsAndBrokenFoldersFailNamingFileAndField() throws {
        let dir = temporaryFolder("broken")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let checkpoint = try LoadedCheckpoint.open(Fixtures.path("tiny-llama"))
        try EngineFolder.build(checkpoint, quantization: .int8WeightOnly, to: dir, shardBytes: 100_000)
        let shards = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".safetensors") }.sorted()
        #expect(shards.count > 2 && FileManager.default.fileExists(atPath: dir + "/model.safetensors.index.json"))
        _ = try LoadedCheckpoint.open(dir)   // sharded engines load

        // Writing into a folder that is not empty is refused.
        #expect(throws: CheckpointError.self) { try EngineFolder.build(checkpoint, quantization: nil, to: dir) }

        func expectError(_ fragments: [String], _ note: Comment) {
            do {
                _ = try LoadedCheckpoint.open(dir)
                Issue.record("opened: \(note)")
            } catch {
                let text = "\(error)"
                for f in fragments { #expect(text.contains(f), "\(note): \(text)") }
            }
        }
        // A newer format version.
        let configPath = dir + "/config.json"
        let config = try String(contentsOfFile: configPath, encoding: .utf8)
        let newer = EngineFolder.formatVersion + 1
        try config.replacingOccurrences(of: "\"format_version\" : \(EngineFolder.formatVersion)", with: "\"format_version\" : \(newer)")
            .write(toFile: configPath, atomically: true, encoding: .utf8)
        expectError(["config.json", "petrel_engine.format_version", "\(newer)"], "newer version")
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)

        // A truncated shard.
        let shard = dir + "/" + shards[1]
        let bytes = try Data(contentsOf: URL(fileURLWithPath: shard))
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: shard))
        expectError([shards[1], "truncated"], "truncated shard")
        try bytes.write(to: URL(fileURLWithPath: shard))

        // A shard whose format metadata is wrong for its tensor.
        var changed = false
        for name in shards where !changed {
            let path = dir + "/" + name
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            let length = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
            var header = String(decoding: bytes.dropFirst(8).prefix(length), as: UTF8.self)
            guard let r = header.range(of: #",0,64""#) else { continue }
            header.replaceSubrange(r, with: #",0,32""#)   // same length: the data offsets stay right
            try (bytes.prefix(8) + Data(header.utf8) + bytes.dropFirst(8 + length)).write(to: URL(fileURLWithPath: path))
            expectError([name, "tensor '"], "format metadata that does not fit")
            changed = true
        }
        #expect(changed, "no shard names a 64-column matrix")
    }
}
