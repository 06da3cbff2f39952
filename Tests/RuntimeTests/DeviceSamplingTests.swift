// The sampler's device path (a row's k best logits after its penalties and masks, and its
// log-sum-exp, as the CUDA backend's top-k gives them) must draw exactly what the full-row path
// draws: same token, same RNG use, same log prob. Checked on the CPU with the candidates computed
// on the host (TokenSelectionReference), and through the engine with a CPU backend that selects
// tokens itself.
import Checkpoints
import Compute
import CPUCompute
import Engine
import Foundation
import Models
import TestFixtures
import Testing
@testable import Runtime
import Synchronization

struct DeviceSamplingTests {
    /// The k best of a row, largest first, ties to the lower id; and log-sum-exp at temperature t.
    static func candidates(_ row: [Float], _ k: Int, temperature t: Float) -> (ids: [Int32], values: [Float], lse: Float) {
        let order = row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(k)
        let m = Double(row.max()!) / Double(t)
        let lse = Float(m + log(row.reduce(0.0) { $0 + exp(Double($1) / Double(t) - m) }))
        return (order.map { Int32($0) }, order.map { row[$0] }, lse)
    }

    @Test(arguments: [
        SamplingParameters(),                                        // greedy
        SamplingParameters(temperature: 0.8, topK: 1, seed: 3),
        SamplingParameters(temperature: 0.7, topK: 40, seed: 11),
        SamplingParameters(temperature: 1.3, topK: 200, topP: 0.9, seed: 5),
        SamplingParameters(temperature: 1.0, topK: 50, topP: 0.95, minP: 0.05, seed: 9),
    ])
    func candidatePathDrawsWhatTheFullRowDraws(_ p: SamplingParameters) throws {
        let k = try #require(Sampler.deviceSamplingCount(p, vocab: 5000))
        var rng = Xoshiro256(seed: 42)
        var full = Sampler(p), device = Sampler(p)
        for step in 0..<64 {
            var row = (0..<5000).map { _ in Float(Int(rng.nextUnit() * 4000)) / 256 - 8 }   // coarse: many ties
            if step % 3 == 0 { row[17] = row.max()!; row[4000] = row[17] }                    // a tie for first
            let c = Self.candidates(row, k, temperature: p.temperature > 0 ? p.temperature : 1)
            let a = full.sample(&row, SamplingContext())
            let drawn = device.sample(candidateIDs: c.ids[...], values: c.values[...], logSumExp: c.lse)
            let b = try #require(drawn)
            #expect(a.token == b.token, "step \(step)")
            #expect(abs(a.logProb - b.logProb) <= 1e-4 * max(1, abs(a.logProb)), "step \(step)")
        }
    }

    @Test func rowsThatNeedTheWholeVocabularyStayOnTheHost() {
        #expect(Sampler.deviceSamplingCount(SamplingParameters(temperature: 1), vocab: 32000) == nil)   // plain temperature
        #expect(Sampler.deviceSamplingCount(SamplingParameters(temperature: 1, minP: 0.1), vocab: 32000) == nil)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(beamWidth: 2), vocab: 32000) == nil)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(temperature: 1, topK: 2000), vocab: 32000) == nil)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(temperature: 1, topK: 600), vocab: 512) == nil)   // k past the vocabulary
        #expect(Sampler.deviceSamplingCount(SamplingParameters(temperature: 0.5, topK: 8), vocab: 32000) == 8)
        // Penalties and masks travel as logit edits; top log probs widen k; top-p alone asks for a nucleus.
        #expect(Sampler.deviceSamplingCount(SamplingParameters(repetitionPenalty: 1.2), vocab: 32000) == 1)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(topLogProbs: 5), vocab: 32000) == 5)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(temperature: 1, topP: 0.9), vocab: 32000) == Sampler.nucleusCandidates)
    }

    /// Penalties, masks and top log probs: the edits applied to the row on the "device" (the
    /// reference selection) give what the host's full-row path gives.
    @Test(arguments: [
        SamplingParameters(repetitionPenalty: 1.3, presencePenalty: 0.5, frequencyPenalty: 0.25, topLogProbs: 4),
        SamplingParameters(temperature: 0.9, topK: 30, seed: 2, repetitionPenalty: 0.8, frequencyPenalty: -0.3, topLogProbs: 2),
        SamplingParameters(temperature: 0.7, topP: 0.6, seed: 4, presencePenalty: 1.5, topLogProbs: 3),
    ])
    func editsOnTheDeviceEqualTheHostsPenalties(_ p: SamplingParameters) throws {
        let vocab = 3000
        let k = try #require(Sampler.deviceSamplingCount(p, vocab: vocab))
        var rng = Xoshiro256(seed: 7)
        var full = Sampler(p), device = Sampler(p)
        var history: [Int32] = (0..<30).map { _ in Int32(rng.next() % UInt64(vocab)) }
        var generated = 0, onDevice = 0
        for step in 0..<48 {
            // Peaked rows (a few large logits, the history's ids among them) so penalties matter
            // and top-p's nucleus usually fits in the candidates.
            var row = (0..<vocab).map { _ in Float(rng.nextUnit() * 4 - 2) }
            for id in history.suffix(6) { row[Int(id)] = Float(8 + rng.nextUnit() * 4) }
            let context = SamplingContext(history: history, generatedCount: generated, badWords: [[history.last!, 11]],
                                          suppressed: step < 5 ? [3, 4] : [])
            let edits = device.logitEdits(context, row: 0, vocab: vocab)
            let t = p.temperature > 0 ? p.temperature : 1
            let c = TokenSelectionReference.topCandidates(row, rows: 1, vocab: vocab, count: k, temperatures: [t], edits: edits)
            var copy = row
            let a = full.sample(&copy, context)
            if let b = device.sample(candidateIDs: c.ids[...], values: c.values[...], logSumExp: c.logSumExp[0]) {
                onDevice += 1
                #expect(a.token == b.token, "step \(step)")
                #expect(abs(a.logProb - b.logProb) <= 1e-4 * max(1, abs(a.logProb)), "step \(step)")
                #expect(a.topLogProbs.map(\.token) == b.topLogProbs.map(\.token), "step \(step)")
                for (x, y) in zip(a.topLogProbs, b.topLogProbs) { #expect(abs(x.logProb - y.logProb) <= 1e-4 * max(1, abs(x.logProb))) }
            } else {
                // The nucleus reached past the candidates: the caller samples the full row with
                // the same sampler, whose RNG the device path left untouched.
                var again = row
                let b = device.sample(&again, context)
                #expect(a.token == b.token, "step \(step) (full row)")
            }
            history.append(a.token)
            generated += 1
        }
        #expect(onDevice > 24, "most steps should be drawn from the candidates")
    }

    /// A flat row under top-p 0.9: the nucleus is far wider than the candidates, so the device
    /// path declines (nil) without drawing, and a peaked row is drawn from the candidates.
    @Test func nucleusPastTheCandidatesFallsBackWithoutDrawing() throws {
        let p = SamplingParameters(temperature: 1, topP: 0.9, seed: 5)
        let k = try #require(Sampler.deviceSamplingCount(p, vocab: 1000))
        let flat = (0..<1000).map { Float($0 % 7) * 0.01 }
        var sampler = Sampler(p), untouched = Sampler(p)
        let c = TokenSelectionReference.topCandidates(flat, rows: 1, vocab: 1000, count: k, temperatures: [1], edits: [])
        #expect(sampler.sample(candidateIDs: c.ids[...], values: c.values[...], logSumExp: c.logSumExp[0]) == nil)
        var a = flat, b = flat
        #expect(sampler.sample(&a, SamplingContext()).token == untouched.sample(&b, SamplingContext()).token)
        var peaked = flat
        peaked[123] = 20
        let d = TokenSelectionReference.topCandidates(peaked, rows: 1, vocab: 1000, count: k, temperatures: [1], edits: [])
        #expect(sampler.sample(candidateIDs: d.ids[...], values: d.values[...], logSumExp: d.logSumExp[0])?.token == 123)
    }

    /// The engine over a backend that selects tokens itself (the CPU backend plus the reference
    /// selection): the ModelRunner's device path, its edits and its full-row fallback give the
    /// same tokens and log probs as the host path, request by request, in one batch.
    @Test func engineDevicePathEqualsHostPath() async throws {
        let ckpt = try LoadedCheckpoint.open(Fixtures.path("tiny-llama"))
        let selecting = SelectingCPUBackend()
        let onDevice = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: selecting)
        let onHost = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: CPUBackend(exactQuantizedMath: true))
        let params = [
            SamplingParameters(returnLogProbs: true),
            SamplingParameters(repetitionPenalty: 1.5, presencePenalty: 0.3, frequencyPenalty: 0.4, returnLogProbs: true),
            SamplingParameters(temperature: 0.8, topK: 20, seed: 3, repetitionPenalty: 1.2, returnLogProbs: true),
            SamplingParameters(temperature: 0.4, topP: 0.7, seed: 4, returnLogProbs: true, topLogProbs: 2),
            SamplingParameters(temperature: 1.0, topP: 0.95, seed: 6, frequencyPenalty: 0.5, returnLogProbs: true),
        ]
        var prompts: [[Int32]] = []
        for i in params.indices {
            var prompt: [Int32] = [1]
            for j in 0..<(4 + 3 * i) { prompt.append(Int32(5 + (i * 37 + j * 11) % 500)) }
            prompts.append(prompt)
        }
        func run(_ model: LlamaModel) async throws -> [([Int32], [Float])] {
            let runner = try ModelRunner(model: model, blockCount: 128, blockSize: 4)
            let engine = try Engine(config: SchedulerConfig(numBlocks: 128, blockSize: 4, maxBatchSize: 8, maxNumTokens: 256,
                                                            enableChunkedContext: true, policy: .maxUtilization,
                                                            maxSequenceLength: model.config.maxPositions), executor: runner)
            let streams = try prompts.indices.map { i in
                try engine.submit(Request(id: "r\(i)", prompt: prompts[i], parameters: params[i],
                                          stop: StopConditions(maxTokens: 12, minTokens: 3, endID: 2, badWords: [[7, 9]])))
            }
            var out: [([Int32], [Float])] = []
            for s in streams {
                var ids: [Int32] = [], lps: [Float] = []
                for try await o in s { ids += o.newTokenIDs; lps += o.logProbs }
                out.append((ids, lps))
            }
            await engine.shutdown()
            return out
        }
        let device = try await run(onDevice), host = try await run(onHost)
        for i in params.indices {
            #expect(device[i].0 == host[i].0, "request \(i)")
            #expect(device[i].0.count >= 3)
            #expect(zip(device[i].1, host[i].1).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) }, "request \(i)")
        }
        #expect(selecting.selections > 0)
    }
}

/// The CPU backend with token selection on the "device" (TokenSelectionReference over its own
/// logits), so the ModelRunner's device-sampling path runs in CI without a GPU.
final class SelectingCPUBackend: ComputeBackend, DeviceTokenSelection, Sendable {
    let cpu = CPUBackend(exactQuantizedMath: true)
    private let selectionCount = Atomic(0)
    var selections: Int { selectionCount.load(ordering: .relaxed) }
    var name: String { "cpu+selection" }
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
    func topCandidates(_ logits: Tensor, count: Int, temperatures: [Float], edits: [LogitEdit])
        -> (ids: [Int32], values: [Float], logSumExp: [Float]) {
        selectionCount.wrappingAdd(1, ordering: .relaxed)
        return TokenSelectionReference.topCandidates(cpu.download(logits), rows: logits.rowCount, vocab: logits.rowLength,
                                                     count: count, temperatures: temperatures, edits: edits)
    }
}
