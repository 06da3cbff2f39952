// The sampler's device path (a row's k best logits and its log-sum-exp, as the CUDA backend's
// top-k gives them) must draw exactly what the full-row path draws: same token, same RNG use, same
// log prob. Checked on the CPU with the candidates computed on the host.
import Engine
import Foundation
import Testing
@testable import Runtime

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
        let k = try #require(Sampler.deviceSamplingCount(p, hasMasks: false))
        var rng = Xoshiro256(seed: 42)
        var full = Sampler(p), device = Sampler(p)
        for step in 0..<64 {
            var row = (0..<5000).map { _ in Float(Int(rng.nextUnit() * 4000)) / 256 - 8 }   // coarse: many ties
            if step % 3 == 0 { row[17] = row.max()!; row[4000] = row[17] }                    // a tie for first
            let c = Self.candidates(row, k, temperature: p.temperature > 0 ? p.temperature : 1)
            let a = full.sample(&row, SamplingContext())
            let b = device.sample(candidateIDs: c.ids[...], values: c.values[...], logSumExp: c.lse)
            #expect(a.token == b.token, "step \(step)")
            #expect(abs(a.logProb - b.logProb) <= 1e-4 * max(1, abs(a.logProb)), "step \(step)")
        }
    }

    @Test func rowsThatNeedTheWholeVocabularyStayOnTheHost() {
        #expect(Sampler.deviceSamplingCount(SamplingParameters(temperature: 1), hasMasks: false) == nil)   // no top-k
        #expect(Sampler.deviceSamplingCount(SamplingParameters(repetitionPenalty: 1.2), hasMasks: false) == nil)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(topLogProbs: 2), hasMasks: false) == nil)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(), hasMasks: true) == nil)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(beamWidth: 2), hasMasks: false) == nil)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(temperature: 1, topK: 2000), hasMasks: false) == nil)
        #expect(Sampler.deviceSamplingCount(SamplingParameters(temperature: 0.5, topK: 8), hasMasks: false) == 8)
    }
}
