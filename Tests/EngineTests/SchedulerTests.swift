// Scheduler: budgets, chunked prefill, both admission policies, preemption by recompute,
// prefix reuse, cancellation, fairness, and the plain data handed to the runner.
import Engine
import Testing

@Suite struct SchedulerTests {
    @Test func chunkedPrefillSplitsALongPromptAndOnlyTheLastChunkSamples() throws {
        var s = try Scheduler(config: config(maxNumTokens: 32, chunked: true))
        try s.add(request("a", prompt(100), maxTokens: 3))
        let run = drive(&s)
        let prefill = run.steps.prefix(4).map { $0.sequences[0] }
        #expect(prefill.map(\.contextBefore) == [0, 32, 64, 96])
        #expect(prefill.map(\.tokens.count) == [32, 32, 32, 4])
        #expect(prefill.map(\.needsSample) == [false, false, false, true])
        #expect(prefill[3].tokens == Array(prompt(100)[96...]))
        #expect(run.steps.count == 6)
        #expect(run.tokens("a") == expected(after: 199, count: 3))
        #expect(run.reason("a") == .length)
    }

    @Test func withoutChunkingAPromptMustFitTheBudgetWhole() throws {
        var s = try Scheduler(config: config(maxNumTokens: 32, chunked: false))
        #expect(throws: EngineError.self) { try s.add(request("long", prompt(33))) }
        try s.add(request("a", prompt(20), maxTokens: 2))
        try s.add(request("b", prompt(20, from: 300), maxTokens: 2))
        let run = drive(&s)
        #expect(run.steps[0].sequences.map(\.requestID) == ["a"])               // 20 + 20 > 32
        #expect(run.steps[1].sequences.map(\.requestID) == ["a", "b"])          // decode first, then b whole
        #expect(run.steps[1].sequences.map(\.tokens.count) == [1, 20])
        #expect(run.tokens("b") == expected(after: 319, count: 2))

        // With chunking the same two prompts share the first step: 20 + a 12-token chunk.
        var c = try Scheduler(config: config(maxNumTokens: 32, chunked: true))
        try c.add(request("a", prompt(20), maxTokens: 2))
        try c.add(request("b", prompt(20, from: 300), maxTokens: 2))
        let chunked = drive(&c)
        #expect(chunked.steps[0].sequences.map(\.tokens.count) == [20, 12])
        #expect(chunked.tokens("b") == run.tokens("b"))
    }

    /// Every step stays within maxNumTokens and maxBatchSize, and feeds decodes before prefills.
    @Test func budgetsAndDecodeFirstOrderHoldUnderLoad() throws {
        var s = try Scheduler(config: config(numBlocks: 64, blockSize: 8, maxBatchSize: 3, maxNumTokens: 24, chunked: true))
        for i in 0 ..< 12 { try s.add(request("r\(i)", prompt(5 + 7 * (i % 4), from: Int32(100 * i)), maxTokens: 3 + i % 5, arrival: Double(i))) }
        let run = drive(&s)
        #expect(run.finishOrder.count == 12)
        for step in run.steps {
            #expect(step.stats.tokenCount <= 24)
            #expect(step.stats.tokenCount == step.sequences.reduce(0) { $0 + $1.tokens.count })
            #expect(Set(step.sequences.map(\.requestID)).count <= 3)
            #expect(step.stats.runningCount <= 3)
            let isDecode = step.sequences.map { $0.generatedCount > 0 && $0.tokens.count == 1 && $0.contextBefore == $0.history.count - 1 }
            if let firstPrefill = isDecode.firstIndex(of: false) { #expect(!isDecode[firstPrefill...].contains(true)) }
        }
        for i in 0 ..< 12 {
            let p = prompt(5 + 7 * (i % 4), from: Int32(100 * i))
            #expect(run.tokens("r\(i)") == expected(after: p.last!, count: 3 + i % 5))
        }
    }

    @Test func guaranteedNoEvictAdmitsOnlyWhatCanFinish() throws {
        // Each request: 8 + 8 tokens = 4 blocks of 4 at worst; 10 blocks hold two.
        var s = try Scheduler(config: config(numBlocks: 10, blockSize: 4, policy: .guaranteedNoEvict))
        for id in ["a", "b", "c"] { try s.add(request(id, prompt(8), maxTokens: 8)) }
        let run = drive(&s)
        #expect(run.steps[0].sequences.map(\.requestID) == ["a", "b"])
        #expect(run.firstStep("c")! > run.steps.firstIndex { $0.finishedRequestIDs.contains("a") }! - 1)
        #expect(s.metrics.preemptionsTotal == 0)
        #expect(run.steps.allSatisfy { $0.stats.preemptedCount == 0 })
        for id in ["a", "b", "c"] { #expect(run.tokens(id) == expected(after: 107, count: 8)) }
        #expect(s.metrics.kvBlocksUsed == 0)
    }

    @Test func maxUtilizationAdmitsEagerlyAndPreemptsTheNewestByRecomputeLosingNothing() throws {
        let requests = ["a", "b", "c", "d"].enumerated().map { i, id in
            request(id, prompt(8, from: Int32(100 * (i + 1))), maxTokens: 8, arrival: Double(i))
        }
        var tight = try Scheduler(config: config(numBlocks: 10, blockSize: 4, maxBatchSize: 3, policy: .maxUtilization))
        var roomy = try Scheduler(config: config(numBlocks: 100, blockSize: 4, maxBatchSize: 3, policy: .maxUtilization))
        for r in requests { try tight.add(r); try roomy.add(r) }
        var preempted: Set<String> = []
        var cStatusWhenDAdmitted: RequestStatus?
        let run = drive(&tight, before: { _, s in
            for id in ["a", "b", "c", "d"] where s.status(of: id) == .preempted { preempted.insert(id) }
            if cStatusWhenDAdmitted == nil && s.status(of: "d") == .running { cStatusWhenDAdmitted = s.status(of: "c") ?? .finished(.length) }
        })
        let reference = drive(&roomy)
        #expect(run.steps[0].sequences.map(\.requestID) == ["a", "b", "c"])      // 6 of 10 blocks: all admitted
        #expect(tight.metrics.preemptionsTotal > 0 && reference.steps.allSatisfy { $0.stats.preemptedCount == 0 })
        #expect(preempted == ["c"])                                              // the most recently admitted
        #expect(cStatusWhenDAdmitted != .preempted && cStatusWhenDAdmitted != .waiting)  // requeued in front of d
        for r in requests {
            #expect(run.tokens(r.id) == reference.tokens(r.id))
            #expect(run.tokens(r.id) == expected(after: r.promptTokenIDs.last!, count: 8))
            #expect(run.reason(r.id) == .length)
        }
        // The recompute feeds prompt + generated tokens and samples only at its end.
        let recompute = run.steps.flatMap(\.sequences).filter { $0.requestID == "c" && $0.contextBefore == 0 }
        #expect(recompute.count == 2 && recompute[1].tokens.count > 8 && recompute[1].needsSample)
        #expect(tight.metrics.kvBlocksUsed == 0)
    }

    @Test func prefixReuseHitsFullBlocksOfASharedPrefix() throws {
        var s = try Scheduler(config: config(blockSize: 16, reuse: true))
        let shared = prompt(64)
        try s.add(request("a", shared + prompt(8, from: 500), maxTokens: 4))
        let first = s.schedule()
        _ = s.update(first, successor(first))                                    // a's prompt is now in the cache
        try s.add(request("b", shared + prompt(8, from: 700), maxTokens: 4))
        let run = drive(&s)
        #expect(s.metrics.reuseHits == 4)
        let b = try #require(run.steps[0].sequences.first { $0.requestID == "b" })
        #expect(b.contextBefore == 64 && b.tokens == prompt(8, from: 700) && b.needsSample)
        #expect(Array(b.blockTable.prefix(4)) == Array(first.sequences[0].blockTable.prefix(4)))
        #expect(run.tokens("b") == expected(after: 707, count: 4))

        // Submitted together, nothing is cached yet when b is admitted (blocks are registered
        // once their KV is written).
        var together = try Scheduler(config: config(blockSize: 16, reuse: true))
        try together.add(request("a", shared + prompt(8, from: 500), maxTokens: 4))
        try together.add(request("b", shared + prompt(8, from: 700), maxTokens: 4))
        drive(&together)
        #expect(together.metrics.reuseHits == 0 && together.metrics.reuseQueries == 8)
    }

    @Test func cancellingFreesBlocksAtOnceAndTheRunnerIsTold() throws {
        var s = try Scheduler(config: config(blockSize: 16, maxBatchSize: 1, reuse: true))
        try s.add(request("a", prompt(40), maxTokens: 50))
        try s.add(request("b", prompt(40), maxTokens: 2))
        let step = s.schedule()
        #expect(s.metrics.kvBlocksUsed == 3)
        let final = s.cancel("a")
        #expect(final?.finishReason == .cancelled && final?.newTokenIDs == [])
        #expect(s.metrics.kvBlocksUsed == 0)
        #expect(s.status(of: "a") == nil && s.cancel("a") == nil && s.cancel("nobody") == nil)
        #expect(s.update(step, successor(step)).isEmpty)                          // the in-flight step is ignored
        #expect(s.metrics.kvBlocksCached == 0)                                    // its KV was never confirmed
        let next = s.schedule()
        #expect(next.finishedRequestIDs == ["a"])
        #expect(next.sequences.map(\.requestID) == ["b"])
        _ = s.update(next, successor(next))
        #expect(s.metrics.kvBlocksCached == 2)

        // Waiting requests cancel too; a stop matched above the engine finishes with .stop.
        try s.add(request("c", prompt(4), maxTokens: 4))
        #expect(s.cancel("c", reason: .stop)?.finishReason == .stop)
        #expect(!s.waitingIDs.contains("c"))
        // Cancelled cached blocks stay reusable.
        _ = s.cancel("b")
        #expect(s.metrics.kvBlocksUsed == 0 && s.metrics.kvBlocksCached == 2)
        try s.add(request("d", prompt(40), maxTokens: 2))
        _ = s.schedule()
        #expect(s.metrics.reuseHits == 2)
    }

    /// A steady stream of short requests with a long one among them: admission is FIFO, the
    /// long prompt is not overtaken, every request finishes and none waits long.
    @Test func noRequestStarvesUnderASteadyStream() throws {
        var s = try Scheduler(config: config(numBlocks: 256, blockSize: 8, maxBatchSize: 4, maxNumTokens: 64, chunked: false))
        var arrivalStep: [String: Int] = [:]
        let run = drive(&s, before: { i, s in
            guard i < 200 else { return }
            if i % 2 == 0 {
                let id = "r\(i / 2)"
                arrivalStep[id] = i
                try! s.add(request(id, prompt(8, from: Int32(i)), maxTokens: 6, arrival: Double(i)))
            }
            if i == 5 {
                arrivalStep["long"] = i
                try! s.add(request("long", prompt(60), maxTokens: 4, arrival: Double(i)))
            }
        })
        #expect(run.finishOrder.count == 101)
        let shorts = run.finishOrder.filter { $0 != "long" }
        #expect(shorts == (0 ..< 100).map { "r\($0)" })                          // FIFO
        #expect(run.firstStep("long")! <= run.firstStep("r3")!)                  // not overtaken by later, smaller ones
        let waits = arrivalStep.map { id, arrived in run.firstStep(id)! - arrived }
        #expect(waits.max()! <= 12)
    }

    @Test func lowerPriorityValueIsAdmittedFirstThenArrival() throws {
        var s = try Scheduler(config: config(maxBatchSize: 1))
        try s.add(request("low", prompt(4), maxTokens: 1, arrival: 0, priority: 5))
        try s.add(request("late", prompt(4), maxTokens: 1, arrival: 2, priority: 0))
        try s.add(request("early", prompt(4), maxTokens: 1, arrival: 1, priority: 0))
        #expect(s.waitingIDs == ["early", "late", "low"])
        #expect(drive(&s).finishOrder == ["early", "late", "low"])
    }

    @Test func theRunnerGetsHistoryParametersAndSamplerInputs() throws {
        var s = try Scheduler(config: config())
        let parameters = SamplingParameters(temperature: 0.7, topK: 5, seed: 42, repetitionPenalty: 1.2)
        let stop = StopConditions(maxTokens: 3, minTokens: 2, endID: 2, stopTokenIDs: [7], badWords: [[5, 6]])
        try s.add(Request(id: "a", prompt: [10, 11], parameters: parameters, stop: stop))
        let run = drive(&s)
        let seqs = run.steps.map { $0.sequences[0] }
        #expect(seqs.map(\.history) == [[10, 11], [10, 11, 12], [10, 11, 12, 13]])
        #expect(seqs.map(\.generatedCount) == [0, 1, 2])
        #expect(seqs.map(\.suppressedTokenIDs) == [[2, 7], [2, 7], []])
        #expect(seqs.allSatisfy { $0.parameters == parameters && $0.badWords == [[5, 6]] && $0.requestID == "a" && $0.beamIndex == 0 })
        #expect(seqs[1].blockTable == seqs[0].blockTable)
    }
}

@Suite struct StopTests {
    func run(_ stop: StopConditions, prompt: [Int32] = [10], vocab: Int32 = 1000, parameters: SamplingParameters = .greedy,
             maxSequenceLength: Int? = nil) throws -> (outputs: [RequestOutput], run: Run) {
        var s = try Scheduler(config: config(maxSequenceLength: maxSequenceLength))
        try s.add(Request(id: "a", prompt: prompt, parameters: parameters, stop: stop))
        let r = drive(&s, step: { successor($0, vocab: vocab) })
        #expect(s.metrics.kvBlocksUsed == 0)
        return (r.outputs["a"] ?? [], r)
    }

    @Test func stopSequenceSpanningTokensIsHeldBackThenExcluded() throws {
        let (outs, _) = try run(StopConditions(maxTokens: 10, stopSequences: [[13, 14]]))
        #expect(outs.map(\.newTokenIDs) == [[11], [12], []])       // 13 was held back, then dropped with 14
        #expect(outs.last?.finishReason == .stop)
    }

    @Test func heldBackTokensAreReleasedWhenTheMatchFails() throws {
        let (outs, _) = try run(StopConditions(maxTokens: 5, stopSequences: [[13, 99], [20, 21, 22]]))
        #expect(outs.map(\.newTokenIDs) == [[11], [12], [13, 14], [15]])
        #expect(outs.last?.finishReason == .length)
        // At max_tokens a pending prefix is flushed.
        let (flushed, _) = try run(StopConditions(maxTokens: 3, stopSequences: [[13, 14]]))
        #expect(flushed.flatMap(\.newTokenIDs) == [11, 12, 13] && flushed.last?.finishReason == .length)
    }

    @Test func stopSequencesMatchOnlyGeneratedTokens() throws {
        let (outs, _) = try run(StopConditions(maxTokens: 3, stopSequences: [[10, 11]]))
        #expect(outs.flatMap(\.newTokenIDs) == [11, 12, 13] && outs.last?.finishReason == .length)
    }

    @Test func endIDAndStopTokensEndTheRequestAndAreExcluded() throws {
        let (byEnd, _) = try run(StopConditions(maxTokens: 10, endID: 13))
        #expect(byEnd.flatMap(\.newTokenIDs) == [11, 12] && byEnd.last?.finishReason == .stop)
        let (byStop, _) = try run(StopConditions(maxTokens: 10, stopTokenIDs: [14, 99]))
        #expect(byStop.flatMap(\.newTokenIDs) == [11, 12, 13] && byStop.last?.finishReason == .stop)
        let (ignored, _) = try run(StopConditions(maxTokens: 5, endID: 13, ignoreEOS: true))
        #expect(ignored.flatMap(\.newTokenIDs) == [11, 12, 13, 14, 15] && ignored.last?.finishReason == .length)
        let (stillStops, _) = try run(StopConditions(maxTokens: 5, endID: 13, stopTokenIDs: [14], ignoreEOS: true))
        #expect(stillStops.flatMap(\.newTokenIDs) == [11, 12, 13] && stillStops.last?.finishReason == .stop)
        // The stop on the very last allowed token is a stop, not a length.
        let (edge, _) = try run(StopConditions(maxTokens: 3, endID: 13))
        #expect(edge.flatMap(\.newTokenIDs) == [11, 12] && edge.last?.finishReason == .stop)
    }

    @Test func noStopBeforeMinTokens() throws {
        // vocab 5 from [0]: 1 2 3 4 0 1 2 ...; end id 2 first comes as token 2 (too early), then 7.
        let (outs, r) = try run(StopConditions(maxTokens: 20, minTokens: 3, endID: 2), prompt: [0], vocab: 5)
        #expect(outs.flatMap(\.newTokenIDs) == [1, 2, 3, 4, 0, 1] && outs.last?.finishReason == .stop)
        #expect(r.steps.map { $0.sequences.first?.suppressedTokenIDs ?? [] }.prefix(4) == [[2], [2], [2], []])
        let (seq, _) = try run(StopConditions(maxTokens: 20, minTokens: 3, stopSequences: [[1, 2]]), prompt: [0], vocab: 5)
        #expect(seq.flatMap(\.newTokenIDs) == [1, 2, 3, 4, 0] && seq.last?.finishReason == .stop)
    }

    @Test func maxTokensAndMaxSequenceLengthEndWithLength() throws {
        let (outs, _) = try run(StopConditions(maxTokens: 7))
        #expect(outs.flatMap(\.newTokenIDs) == expected(after: 10, count: 7) && outs.last?.finishReason == .length)
        #expect(outs.count == 7)                                     // one output per step
        let (capped, _) = try run(StopConditions(maxTokens: 100), prompt: prompt(6), maxSequenceLength: 10)
        #expect(capped.flatMap(\.newTokenIDs).count == 4 && capped.last?.finishReason == .length)
    }

    @Test func logProbsAreReturnedPerTokenWhenAsked() throws {
        let (outs, _) = try run(StopConditions(maxTokens: 4, endID: 14), parameters: SamplingParameters(returnLogProbs: true, topLogProbs: 2))
        #expect(outs.flatMap(\.logProbs) == [-0.25, -0.25, -0.25])
        #expect(outs.flatMap(\.topLogProbs) == [11, 12, 13].map { [TokenLogProb($0, -0.25), TokenLogProb($0 + 1, -1.25)] })
        #expect(outs.last?.cumulativeLogProb == -1.0)                // the end id's log probability counts
        let (plain, _) = try run(StopConditions(maxTokens: 2))
        #expect(plain.allSatisfy { $0.logProbs.isEmpty && $0.topLogProbs.isEmpty })
    }
}

@Suite struct StepFailureTests {
    @Test func failingNamedRequestsLeavesTheOthersToRetry() throws {
        var s = try Scheduler(config: config())
        try s.add(request("a", prompt(4), maxTokens: 3))
        try s.add(request("b", prompt(4, from: 300), maxTokens: 3))
        let step = s.schedule()
        let failed = s.fail(step, requestIDs: ["b", "ghost"], message: "out of memory")
        #expect(failed == [RequestOutput(requestID: "b", finishReason: .error("out of memory"))])
        let retry = s.schedule()
        #expect(retry.finishedRequestIDs == ["b"])
        #expect(retry.sequences.map(\.tokens) == [step.sequences[0].tokens])    // a runs its step again
        #expect(retry.sequences[0].contextBefore == 0)
        let first = s.update(retry, successor(retry))
        let run = drive(&s)
        #expect(first.flatMap(\.newTokenIDs) + run.tokens("a") == expected(after: 103, count: 3))
    }

    @Test func unattributableFailuresFailTheWholeStep() throws {
        var s = try Scheduler(config: config(maxBatchSize: 2))
        for id in ["a", "b", "c"] { try s.add(request(id, prompt(4))) }
        let step = s.schedule()
        #expect(Set(s.fail(step, requestIDs: ["nobody"], message: "x").map(\.requestID)) == ["a", "b"])
        #expect(s.status(of: "c") == .waiting && s.metrics.kvBlocksUsed == 0)
        // Too few samples fails the step; a missing sample fails its request.
        let next = s.schedule()
        #expect(s.update(next, StepOutput(samples: [])).map(\.finishReason) == [.error("the executor returned 0 samples for 1 sequences")])
        try s.add(request("d", prompt(4)))
        try s.add(request("e", prompt(4)))
        let third = s.schedule()
        var result = successor(third)
        result.samples[1] = nil
        let outs = s.update(third, result)
        #expect(outs.map(\.requestID) == ["d", "e"])
        #expect(outs[1].finishReason == .error("the executor returned no sample for a sequence that needed one"))
    }
}
