// The Engine driving the real model through ModelRunner: batch invariance, preemption under a
// tiny KV budget, and beam search against transformers.
import Checkpoints
import CPUCompute
import Engine
import Foundation
import Models
import Runtime
import TestFixtures
import Testing

/// Runs requests through an Engine over `model` and collects each request's output ids.
func runEngine(_ model: LlamaModel, _ prompts: [[Int32]], maxTokens: Int, parameters: SamplingParameters = .greedy,
               numBlocks: Int = 256, blockSize: Int = 4, policy: SchedulerConfig.Policy = .maxUtilization,
               maxNumTokens: Int = 256, chunked: Bool = true) async throws -> ([[Int32]], SchedulerMetrics) {
    let runner = try ModelRunner(model: model, blockCount: numBlocks, blockSize: blockSize)
    let engine = try Engine(config: SchedulerConfig(numBlocks: numBlocks, blockSize: blockSize, maxBatchSize: 64,
                                                    maxNumTokens: maxNumTokens, enableChunkedContext: chunked, policy: policy,
                                                    maxBeamWidth: 4, maxSequenceLength: model.config.maxPositions),
                            executor: runner)
    let streams = try prompts.enumerated().map { i, p in
        try engine.submit(Request(id: "r\(i)", prompt: p, parameters: parameters, stop: StopConditions(maxTokens: maxTokens, ignoreEOS: true)))
    }
    var outputs: [[Int32]] = []
    for s in streams {
        var ids: [Int32] = []
        for try await o in s { ids += o.newTokenIDs }
        outputs.append(ids)
    }
    let metrics = engine.metrics
    await engine.shutdown()
    return (outputs, metrics)
}

@Suite struct EngineIntegrationTests {
    static let tiny = try! loadModel(Fixtures.path("tiny-llama"))

    func prompts(_ count: Int, vocab: Int) -> [[Int32]] {
        (0..<count).map { i in [1] + (0..<(3 + (i * 7) % 17)).map { Int32(3 + (i * 31 + $0 * 13) % (vocab - 3)) } }
    }

    @Test func sixteenConcurrentRequestsEqualEachAlone() async throws {
        let ps = prompts(16, vocab: 512)
        let (together, _) = try await runEngine(Self.tiny, ps, maxTokens: 12)
        for (i, p) in ps.enumerated() {
            let (alone, _) = try await runEngine(Self.tiny, [p], maxTokens: 12)
            #expect(alone[0] == together[i], "request \(i)")
            #expect(try await greedy(Self.tiny, p, 12, blockSize: 4) == together[i])
        }
    }

    /// 32 requests, a KV cache of 24 blocks of 4 tokens: requests are preempted and recomputed,
    /// and every output still equals the request run alone.
    @Test func tinyKVBudgetPreemptsWithoutLosingWork() async throws {
        let ps = prompts(32, vocab: 512)
        let (squeezed, metrics) = try await runEngine(Self.tiny, ps, maxTokens: 10, numBlocks: 24, maxNumTokens: 64)
        #expect(metrics.preemptionsTotal > 0, "the budget should force preemption")
        for (i, p) in ps.enumerated() {
            #expect(try await greedy(Self.tiny, p, 10, blockSize: 4) == squeezed[i], "request \(i)")
        }
    }

    @Test func sameSeedSameTextAtAnyBatchComposition() async throws {
        let params = SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, seed: 1234)
        let ps = prompts(8, vocab: 512)
        let (together, _) = try await runEngine(Self.tiny, ps, maxTokens: 10, parameters: params)
        let (alone, _) = try await runEngine(Self.tiny, [ps[5]], maxTokens: 10, parameters: params)
        #expect(alone[0] == together[5])
    }

    @Test func beamSearchMatchesTransformers() async throws {
        for case let g as [String: Any] in try Fixtures.json("tiny-llama-logits.json")["beam4"] as! [Any] {
            let ids = (g["ids"] as! [NSNumber]).map(\.int32Value)
            let want = (g["new"] as! [NSNumber]).map(\.int32Value)
            let params = SamplingParameters(beamWidth: 4, lengthPenalty: 1, earlyStopping: true)
            let (out, _) = try await runEngine(Self.tiny, [ids], maxTokens: want.count, parameters: params)
            #expect(out[0] == want)
        }
    }

    @Test func smolLM2SixteenConcurrentEqualAlone() async throws {
        let model = try loadModel(Fixtures.smolLM2, exact: false)
        let ps = prompts(16, vocab: 49152)
        let (together, _) = try await runEngine(model, ps, maxTokens: 6, blockSize: 16)
        for i in [0, 7, 15] {
            let (alone, _) = try await runEngine(model, [ps[i]], maxTokens: 6, blockSize: 16)
            #expect(alone[0] == together[i], "request \(i)")
        }
    }
}
