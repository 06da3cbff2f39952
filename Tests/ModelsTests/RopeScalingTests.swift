// RoPE scaling (linear, dynamic NTK, YaRN, llama3, LongRoPE, GGUF rope_freqs) against last-row
// logits from transformers (Tests/Fixtures/rope-scaling, scripts/make_rope_fixtures.py).
import Checkpoints
import Compute
import CPUCompute
import Foundation
import Models
import TestFixtures
import Testing

@Suite struct RopeScalingTests {
    struct Case: Sendable {
        let ids: [Int32]
        let chunks: [Int]
        let lastLogits: [Float]
    }

    static func cases(_ key: String) throws -> [Case] {
        let root = try Fixtures.json("rope-scaling/logits.json")
        return (root[key] as! [[String: Any]]).map { c in
            Case(ids: (c["ids"] as! [NSNumber]).map(\.int32Value), chunks: (c["chunks"] as! [NSNumber]).map(\.intValue),
                 lastLogits: (c["last_logits"] as! [NSNumber]).map(\.floatValue))
        }
    }

    static let tinyWeights = try! LoadedCheckpoint.open(Fixtures.path("tiny-llama")).weights

    static func model(_ kind: String) throws -> LlamaModel {
        let config = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("rope-scaling/\(kind)/config.json"))
        return try LlamaModel(config: config, weights: tinyWeights, backend: CPUBackend(exactQuantizedMath: true))
    }

    static func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    /// Each prompt fed in the golden's chunks through one cache, as transformers was.
    @Test(arguments: ["linear", "dynamic", "yarn", "llama3", "longrope"])
    func logitsMatchTransformers(kind: String) throws {
        let model = try Self.model(kind)
        #expect(model.config.ropeScaling?.typeName == kind)
        for c in try Self.cases(kind) {
            let got = try allLogits(model, c.ids, chunks: c.chunks).last!
            let err = Self.maxAbsDifference(got, c.lastLogits)
            #expect(err < 1e-4, "\(kind): \(c.ids.count) tokens in chunks \(c.chunks): max |logit difference| \(err)")
        }
    }

    /// Dynamic NTK and LongRoPE pick frequencies per sequence: a prompt within the original
    /// context and one past it, prefilled in one step, each get their own (not the batch's longest).
    @Test(arguments: ["dynamic", "longrope"])
    func sequencesOfOneStepRotateByTheirOwnLength(kind: String) throws {
        let model = try Self.model(kind)
        let cases = try Self.cases(kind).filter { $0.chunks.count == 1 }
        let (short, long) = (cases[0], cases[1])
        #expect(short.ids.count < long.ids.count)
        let blockSize = 4
        let blocks = [short, long].map { ($0.ids.count + blockSize - 1) / blockSize }
        let cache = try model.backend.makeKVCache(model.kvCacheLayout(blockCount: blocks.reduce(0, +), blockSize: blockSize))
        let tables = [(0..<blocks[0]).map(Int32.init), (blocks[0]..<blocks[0] + blocks[1]).map(Int32.init)]
        let n = short.ids.count, m = long.ids.count
        let batch = ForwardBatch(tokens: short.ids + long.ids, positions: (0..<n).map(Int32.init) + (0..<m).map(Int32.init),
                                 sequences: [AttentionSequence(tokenBegin: 0, tokenCount: n, contextBefore: 0, blockTable: tables[0]),
                                             AttentionSequence(tokenBegin: n, tokenCount: m, contextBefore: 0, blockTable: tables[1])],
                                 logitRows: [n - 1, n + m - 1])
        let flat = model.backend.download(model.forward(batch, cache: cache))
        let v = model.config.vocabularySize
        for (row, c) in [short, long].enumerated() {
            let err = Self.maxAbsDifference(Array(flat[row * v..<(row + 1) * v]), c.lastLogits)
            #expect(err < 1e-4, "\(kind): the \(c.ids.count)-token sequence of a mixed step: max |logit difference| \(err)")
        }
    }

    /// llama.cpp's converter writes Llama 3.1 scaling as rope_freqs.weight (divisors of the
    /// inverse frequencies): the GGUF gives transformers' llama3 logits.
    @Test func ggufRopeFreqsGiveTheLlama3Logits() throws {
        let ckpt = try LoadedCheckpoint.open(Fixtures.path("rope-scaling/micro-llama3.gguf"))
        guard case .frequencyDivisors(let divisors) = ckpt.config.ropeScaling else {
            Issue.record("rope_freqs.weight not read: \(String(describing: ckpt.config.ropeScaling))")
            return
        }
        #expect(divisors.count == ckpt.config.headDim / 2)
        var llama3 = ckpt.config
        llama3.ropeScaling = .llama3(.init(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 64))
        for (a, b) in zip(ckpt.config.ropeInverseFrequencies(), llama3.ropeInverseFrequencies()) {
            #expect(abs(a - b) <= 1e-6 * b, "rope_freqs.weight gives \(a), llama3 scaling \(b)")
        }
        let model = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: CPUBackend(exactQuantizedMath: true))
        for c in try Self.cases("gguf_llama3") {
            let err = Self.maxAbsDifference(try allLogits(model, c.ids).last!, c.lastLogits)
            #expect(err < 1e-4, "micro-llama3.gguf, \(c.ids.count) tokens: max |logit difference| \(err)")
        }
    }

    /// An engine folder's config.json keeps every kind of scaling.
    @Test(arguments: ["linear", "dynamic", "yarn", "llama3", "longrope"])
    func huggingFaceJSONRoundTrips(kind: String) throws {
        let config = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("rope-scaling/\(kind)/config.json"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-rope-\(getpid())-\(kind)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("config.json").path
        try JSONSerialization.data(withJSONObject: config.huggingFaceJSON()).write(to: URL(fileURLWithPath: path))
        #expect(try TransformerConfig(huggingFaceConfigAt: path) == config)
    }
}
