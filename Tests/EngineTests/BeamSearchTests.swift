// Beam search bookkeeping against scripted candidate tables: the best hypothesis wins, beams
// fork block tables and shared partial blocks are copied, it shares the batch with sampling.
import Engine
import Testing

/// A scripted model: candidates (token, log probability) after the generated tokens so far.
typealias Script = [[Int32]: [(Int32, Float)]]

/// Answers from `script` (unlisted histories: `fallback`): beam sequences get the top
/// 2 × beamWidth candidates, sampled ones the most likely token.
func scripted(_ script: Script, fallback: [(Int32, Float)]) -> (SchedulerOutput) -> StepOutput {
    { out in
        StepOutput(samples: out.sequences.map { s in
            guard s.needsSample else { return nil }
            let list = (script[Array(s.history.suffix(s.generatedCount))] ?? fallback).map { TokenLogProb($0.0, $0.1) }
            let top = list.sorted { $0.logProb > $1.logProb }
            if s.parameters.beamWidth > 1 { return Sample(token: top[0].token, logProb: top[0].logProb, candidates: Array(top.prefix(2 * s.parameters.beamWidth))) }
            return Sample(token: top[0].token, logProb: top[0].logProb)
        })
    }
}

let end: Int32 = 9

/// Greedy takes 1 then 3; the 2-beam search finds 2 5, far more likely overall.
let trap: Script = [
    []: [(1, -0.5), (2, -0.7), (7, -5), (8, -6)],
    [1]: [(3, -1.5), (4, -1.6), (7, -5), (8, -6)],
    [2]: [(5, -0.1), (6, -0.2), (7, -5), (8, -6)],
]
let endNext: [(Int32, Float)] = [(end, -0.05), (7, -5), (8, -6), (3, -7)]

func beamRequest(_ id: String, width: Int = 2, maxTokens: Int = 10, lengthPenalty: Float = 1, earlyStopping: Bool = true,
                 returnLogProbs: Bool = false) -> Request {
    Request(id: id, prompt: prompt(6),
            parameters: SamplingParameters(beamWidth: width, lengthPenalty: lengthPenalty, earlyStopping: earlyStopping, returnLogProbs: returnLogProbs),
            stop: StopConditions(maxTokens: maxTokens, endID: end))
}

@Suite struct BeamSearchTests {
    @Test func theBestBeamIsReturnedAndForksCopyTheSharedPartialBlock() throws {
        var s = try Scheduler(config: config(blockSize: 4, maxBeamWidth: 2))
        try s.add(beamRequest("beam", returnLogProbs: true))
        let run = drive(&s, step: scripted(trap, fallback: endNext))
        let outs = run.outputs["beam"]!
        #expect(outs.count == 1)                                            // sent once, whole
        #expect(outs[0].newTokenIDs == [2, 5] && outs[0].finishReason == .stop)
        #expect(abs(outs[0].cumulativeLogProb - -0.85) < 1e-6)
        #expect(outs[0].logProbs == [-0.7, -0.1])
        #expect(run.steps.count == 3)

        // Step 0: the prompt alone (6 tokens: a full block and a half one).
        let prefill = run.steps[0].sequences
        #expect(prefill.count == 1 && prefill[0].tokens.count == 6 && run.steps[0].blockCopies.isEmpty)
        // Step 1: two beams share the half block; the first writes to a copy, the last in place.
        let step1 = run.steps[1]
        #expect(step1.sequences.map(\.beamIndex) == [0, 1] && step1.sequences.map(\.tokens) == [[1], [2]])
        #expect(step1.blockCopies.count == 1 && step1.blockCopies[0].from == prefill[0].blockTable[1])
        #expect(step1.sequences[0].blockTable == [prefill[0].blockTable[0], step1.blockCopies[0].to])
        #expect(step1.sequences[1].blockTable == prefill[0].blockTable)
        #expect(step1.stats.decodeTokenCount == 2)
        // Step 2: both survivors descend from beam 1 and share its half block again.
        let step2 = run.steps[2]
        #expect(step2.sequences.map(\.history) == [prompt(6) + [2, 5], prompt(6) + [2, 6]])
        #expect(step2.blockCopies.count == 1 && step2.blockCopies[0].from == prefill[0].blockTable[1])
        #expect(s.metrics.kvBlocksUsed == 0)
    }

    @Test func greedyFallsIntoTheTrap() throws {
        var s = try Scheduler(config: config(blockSize: 4, maxBeamWidth: 2))
        try s.add(beamRequest("greedy", width: 1))
        #expect(drive(&s, step: scripted(trap, fallback: endNext)).tokens("greedy") == [1, 3])
    }

    @Test func beamsAndSampledRequestsShareTheBatch() throws {
        var s = try Scheduler(config: config(blockSize: 4, maxBeamWidth: 4))
        try s.add(beamRequest("beam"))
        try s.add(beamRequest("greedy", width: 1))
        try s.add(beamRequest("wide", width: 4))
        let run = drive(&s, step: scripted(trap, fallback: endNext))
        #expect(run.tokens("beam") == [2, 5] && run.tokens("greedy") == [1, 3] && run.tokens("wide") == [2, 5])
        #expect(run.steps[1].sequences.map(\.requestID) == ["beam", "beam", "greedy", "wide", "wide", "wide", "wide"])
        #expect(s.metrics.kvBlocksUsed == 0)
    }

    @Test func atMaxTokensTheRunningBeamsCompete() throws {
        var s = try Scheduler(config: config(blockSize: 4, maxBeamWidth: 2))
        try s.add(beamRequest("beam", maxTokens: 2))
        let outs = drive(&s, step: scripted(trap, fallback: endNext)).outputs["beam"]!
        #expect(outs.map(\.newTokenIDs) == [[2, 5]] && outs[0].finishReason == .length)
    }

    /// An end at step 1 ([] with -0.35) against one at step 2 ([1] with -0.6): the length
    /// penalty decides.
    @Test func lengthPenaltyNormalizesScores() throws {
        let script: Script = [
            []: [(1, -0.3), (end, -0.35), (2, -0.4), (8, -9)],
            [1]: [(end, -0.3), (7, -5), (8, -5), (6, -5)],
            [2]: [(end, -0.3), (7, -5), (8, -5), (6, -5)],
        ]
        for (penalty, want) in [(Float(1), [Int32(1)]), (0, [])] {
            var s = try Scheduler(config: config(blockSize: 4, maxBeamWidth: 2))
            try s.add(beamRequest("beam", lengthPenalty: penalty))
            #expect(drive(&s, step: scripted(script, fallback: endNext)).tokens("beam") == want, "length_penalty \(penalty)")
        }
    }

    /// Two hypotheses exist after step 1; a running beam still averages better than the worst.
    @Test func earlyStoppingFalseWaitsForBetterBeams() throws {
        let script: Script = [
            []: [(end, -0.1), (1, -0.2), (2, -0.3), (3, -0.4)],
            [1]: [(4, -0.05), (end, -0.1), (7, -5), (8, -5)],
            [2]: [(5, -0.01), (end, -0.5), (7, -5), (8, -5)],
            [1, 4]: [(end, 0), (7, -5), (8, -5), (6, -5)],
        ]
        for (early, want) in [(true, [Int32]()), (false, [1, 4])] {
            var s = try Scheduler(config: config(blockSize: 4, maxBeamWidth: 2))
            try s.add(beamRequest("beam", earlyStopping: early))
            #expect(drive(&s, step: scripted(script, fallback: endNext)).tokens("beam") == want, "early_stopping \(early)")
        }
    }

    /// HF / TRT-LLM: a stop candidate ranked below the top beamWidth is not a hypothesis. Step 0
    /// ranks 1, end, 10 (a stop id), 2: only `end` finishes; with 10 as well, two hypotheses
    /// would end the search at [] instead of reaching [1].
    @Test func stopCandidatesRankedBelowTheBeamWidthAreIgnored() throws {
        let script: Script = [[]: [(1, -0.1), (end, -0.2), (10, -0.3), (2, -0.4)]]
        var s = try Scheduler(config: config(blockSize: 4, maxBeamWidth: 2))
        var r = beamRequest("beam")
        r.stop.stopTokenIDs = [10]
        try s.add(r)
        #expect(drive(&s, step: scripted(script, fallback: endNext)).tokens("beam") == [1])
    }

    /// A beam request preempted under max_utilization restarts from its prompt; its single
    /// output is unchanged.
    @Test func preemptedBeamSearchRestartsAndStillFindsTheBestBeam() throws {
        let loop: [(Int32, Float)] = [(7, -0.1), (8, -0.2), (6, -3), (3, -4)]
        var script = trap
        script[[2, 5]] = loop
        script[[2, 6]] = loop
        let long = Request(id: "long", prompt: prompt(4, from: 50), stop: StopConditions(maxTokens: 12))
        let beam = Request(id: "beam", prompt: prompt(6), parameters: SamplingParameters(beamWidth: 2), stop: StopConditions(maxTokens: 6, endID: end))
        var tight = try Scheduler(config: config(numBlocks: 6, blockSize: 4, policy: .maxUtilization, maxBeamWidth: 2))
        var roomy = try Scheduler(config: config(numBlocks: 100, blockSize: 4, policy: .maxUtilization, maxBeamWidth: 2))
        for r in [long, beam] { try tight.add(r); try roomy.add(r) }
        let step = scripted(script, fallback: loop)
        let run = drive(&tight, step: step), reference = drive(&roomy, step: step)
        #expect(tight.metrics.preemptionsTotal > 0 && roomy.metrics.preemptionsTotal == 0)
        #expect(run.outputs["beam"] == reference.outputs["beam"])
        #expect(run.tokens("long") == reference.tokens("long"))
        #expect(tight.metrics.kvBlocksUsed == 0)
    }
}
