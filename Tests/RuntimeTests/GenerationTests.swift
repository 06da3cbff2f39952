// Greedy generation (one request on the Engine, ModelRunner.generate) against transformers'
// generate(), and the sampler's contracts.
import Checkpoints
import Engine
import CPUCompute
import Foundation
import Models
import Runtime
import TestFixtures
import Testing

func loadModel(_ path: String, exact: Bool = true) throws -> LlamaModel {
    let ckpt = try LoadedCheckpoint.open(path)
    return try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: CPUBackend(exactQuantizedMath: exact))
}

/// The greedy continuation of `prompt`, `count` tokens, from one request alone on the Engine.
func greedy(_ model: any CausalLM, _ prompt: [Int32], _ count: Int, blockSize: Int = 32) async throws -> [Int32] {
    var out: [Int32] = []
    _ = try await ModelRunner.generate(model, prompt: prompt, maxTokens: count, blockSize: blockSize) { out += $0 }
    return out
}

@Suite struct GenerationTests {
    @Test func tinyLlamaGreedyMatchesTransformers() async throws {
        let model = try loadModel(Fixtures.path("tiny-llama"))
        for case let g as [String: Any] in try Fixtures.json("tiny-llama-logits.json")["greedy"] as! [Any] {
            let ids = (g["ids"] as! [NSNumber]).map(\.int32Value)
            let want = (g["new"] as! [NSNumber]).map(\.int32Value)
            #expect(try await greedy(model, ids, want.count, blockSize: 4) == want)
        }
    }

    /// SmolLM2 Q4_1 in float32 math (weights dequantized inside the dot products) follows
    /// transformers' fp32 greedy continuation; the int8-activation fast path still says Paris.
    @Test func smolLM2GreedyMatchesReference() async throws {
        let path = Fixtures.smolLM2
        #expect(FileManager.default.fileExists(atPath: path), "default model missing at \(path): run scripts/fetch-model.sh")
        let reference = try Fixtures.json("smollm2-reference.json")["cases"] as! [[String: Any]]
        let exact = try loadModel(path, exact: true)
        for c in reference {
            let prompt = (c["prompt_ids"] as! [NSNumber]).map(\.int32Value)
            let want = Array((c["new_ids"] as! [NSNumber]).map(\.int32Value).prefix(8))
            #expect(try await greedy(exact, prompt, 8) == want, "\(c["name"]!)")
        }
        let fast = try loadModel(path, exact: false)
        #expect(try await greedy(fast, [504, 3575, 282, 4649, 314], 1) == [7042])
    }

    /// A stop id ends the request (finish reason stop) and counts as generated; the engine leaves
    /// it out of the output. max_tokens 0 generates nothing; past the context is refused.
    @Test func stopsAtStopIDsAndMaxTokens() async throws {
        let model = try loadModel(Fixtures.path("tiny-llama"))
        let all = try await greedy(model, [1, 13, 19], 10)
        var seen: [Int32] = []
        let stats = try await ModelRunner.generate(model, prompt: [1, 13, 19], maxTokens: 10, stopIDs: [all[3]]) { seen += $0 }
        let firstStop = all.firstIndex(of: all[3])!
        #expect(seen == Array(all.prefix(firstStop)) && stats.finishReason == .stop && stats.generatedTokens == firstStop + 1)
        #expect(try await greedy(model, [1, 13, 19], 0).isEmpty)
        await #expect(throws: (any Error).self) { try await greedy(model, [1], 1000) }   // beyond the context
    }
}

@Suite struct SamplerTests {
    let logits: [Float] = (0..<1000).map { Float(($0 * 7919) % 1000) / 100 }   // a permutation of 0…9.99

    func draw(_ p: SamplingParameters, _ n: Int) -> [Int32] {
        var s = Sampler(p)
        return (0..<n).map { _ in logits.withUnsafeBufferPointer { s.sample($0) } }
    }

    @Test func greedyAndTopK1AreArgmax() {
        let argmax = Int32(logits.indices.max { logits[$0] < logits[$1] }!)
        #expect(draw(.greedy, 3) == [argmax, argmax, argmax])
        #expect(draw(SamplingParameters(temperature: 1, topK: 1, seed: 1), 5) == Array(repeating: argmax, count: 5))
    }

    @Test func sameSeedSameTokens() {
        let p = SamplingParameters(temperature: 0.9, topK: 50, topP: 0.9, seed: 42)
        #expect(draw(p, 50) == draw(p, 50))
        var q = p; q.seed = 43
        #expect(draw(p, 50) != draw(q, 50))
    }

    @Test func topKAndTopPRestrictTheCandidates() {
        let sorted = logits.indices.sorted { logits[$0] > logits[$1] }.map(Int32.init)
        let k = draw(SamplingParameters(temperature: 5, topK: 10, seed: 7), 500)
        #expect(Set(k).isSubset(of: Set(sorted.prefix(10))) && Set(k).count > 5)
        // Temperature 1: logits are 0.01 apart, so the top 0.5 of the mass is the first ~70 ids.
        let probs = logits.map { exp(Double($0)) }, total = probs.reduce(0, +)
        var cumulative = 0.0, nucleus = 0
        for id in sorted { cumulative += probs[Int(id)] / total; nucleus += 1; if cumulative >= 0.5 { break } }
        let p = draw(SamplingParameters(temperature: 1, topP: 0.5, seed: 9), 2000)
        #expect(Set(p).isSubset(of: Set(sorted.prefix(nucleus))))
        #expect(Set(p).count > nucleus / 2)
    }

    @Test func temperatureSharpens() {
        let top = Set(logits.indices.sorted { logits[$0] > logits[$1] }.prefix(20).map(Int32.init))
        let cold = draw(SamplingParameters(temperature: 0.05, seed: 1), 300).filter { top.contains($0) }.count
        let hot = draw(SamplingParameters(temperature: 3, seed: 1), 300).filter { top.contains($0) }.count
        #expect(cold > 290 && hot < 100)
    }

    @Test func penaltiesMasksAndLogProbs() {
        var s = Sampler(SamplingParameters(repetitionPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25, topLogProbs: 3))
        var row: [Float] = [4, -4, 3, 2, 1, 0]
        // history: prompt [0, 1], generated [3, 3]; bad word [2, 5] bans 5 after a 2 (not here);
        // [3, 4] bans 4 because history ends with 3; 2 is suppressed.
        let ctx = SamplingContext(history: [0, 1, 3, 3], generatedCount: 2, badWords: [[2, 5], [3, 4]], suppressed: [2])
        let out = s.sample(&row, ctx)
        #expect(row[0] == 2)                        // repetition: positive logit divided
        #expect(row[1] == -8)                       // negative logit multiplied
        #expect(row[3] == 2.0 / 2 - 0.5 - 0.25 * 2) // repetition, then presence and frequency (generated only)
        #expect(row[2] == -.infinity && row[4] == -.infinity && row[5] == 0)
        #expect(out.token == 0)
        let z = log(row.map { exp(Double($0)) }.reduce(0, +))
        #expect(abs(Double(out.logProb) - (Double(row[0]) - z)) < 1e-5)
        #expect(out.topLogProbs.map(\.token) == [0, 3, 5])
    }

    @Test func minPDropsUnlikelyTokens() {
        let row: [Float] = [5, 4.9, 0, 0, 0, 0, 0, 0]
        var s = Sampler(SamplingParameters(temperature: 1, minP: 0.5, seed: 3))
        var seen = Set<Int32>()
        for _ in 0..<200 { var r = row; seen.insert(s.sample(&r, SamplingContext()).token) }
        #expect(seen == [0, 1])
    }

    @Test func beamCandidatesAreTheTopTwiceBeamWidth() {
        var s = Sampler(SamplingParameters(beamWidth: 2))
        var row: [Float] = [0, 3, 1, 2, -1]
        let out = s.sample(&row, SamplingContext())
        #expect(out.candidates.map(\.token) == [1, 3, 2, 0])
        #expect(out.candidates[0].logProb > out.candidates[1].logProb)
    }

    @Test func invalidParametersAreRejected() {
        #expect(throws: EngineError.self) { try SamplingParameters(temperature: -1).validate() }
        #expect(throws: EngineError.self) { try SamplingParameters(topK: -2).validate() }
        #expect(throws: EngineError.self) { try SamplingParameters(topP: 0).validate() }
        #expect(throws: EngineError.self) { try SamplingParameters(topP: 1.5).validate() }
    }
}
