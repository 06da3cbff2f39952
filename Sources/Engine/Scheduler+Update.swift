// Applying a step's samples: advance the computed tokens, append sampled tokens, check stops,
// keep the best beams, finish requests.
import Foundation

extension Scheduler {
    /// Applies the runner's result for `output` (the last `schedule()`), returning one output
    /// per request that produced tokens or finished. A result with the wrong number of samples
    /// fails the step's requests; a missing sample fails its request.
    public mutating func update(_ output: SchedulerOutput, _ result: StepOutput) -> [RequestOutput] {
        guard result.samples.count == output.sequences.count else {
            return fail(output, message: "the executor returned \(result.samples.count) samples for \(output.sequences.count) sequences")
        }
        var outputs: [RequestOutput] = []
        var start = 0
        while start < output.sequences.count {
            let id = output.sequences[start].requestID
            var end = start + 1
            while end < output.sequences.count && output.sequences[end].requestID == id { end += 1 }
            let group = start ..< end
            start = end
            // Skips requests cancelled (or cancelled and resubmitted) while the step ran.
            guard entries[id]?.lifecycle.status == .running else { continue }

            var samples: [(beam: Int, sample: Sample)] = []
            var missing = false
            for k in group {
                let s = output.sequences[k]
                guard s.beamIndex < entries[id]!.beams.count else { missing = true; continue }
                entries[id]!.beams[s.beamIndex].computedCount += s.tokens.count
                let beam = entries[id]!.beams[s.beamIndex]
                blockManager.commitFullBlocks(beam.blockTable, tokens: beam.tokens, computedCount: beam.computedCount,
                                              hashes: &entries[id]!.beams[s.beamIndex].blockHashes)
                if s.needsSample {
                    if let sample = result.samples[k] { samples.append((s.beamIndex, sample)) } else { missing = true }
                }
            }
            if missing {
                outputs.append(cancel(id, reason: .error("the executor returned no sample for a sequence that needed one"))!)
                continue
            }
            if samples.isEmpty { continue }
            totals.generatedTokensTotal += samples.count
            let (out, reason) = entries[id]!.isBeamSearch
                ? entries[id]!.beamStep(samples, blocks: &blockManager, maxSequenceLength: config.maxSequenceLength)
                : entries[id]!.sampleStep(samples[0].sample, maxSequenceLength: config.maxSequenceLength)
            if let reason { finish(id, reason) }
            if let out { outputs.append(out) }
        }
        return outputs
    }
}

extension Entry {
    /// Sampling: appends the token, decides whether it ends the request, and releases the
    /// output tokens no stop sequence can claim any more. A stop (end id, stop id, stop
    /// sequence) is excluded from the output.
    mutating func sampleStep(_ sample: Sample, maxSequenceLength: Int?) -> (RequestOutput?, FinishReason?) {
        let parameters = request.parameters, stop = request.stop
        beams[0].tokens.append(sample.token)
        beams[0].cumulativeLogProb += Double(sample.logProb)
        if parameters.returnLogProbs { beams[0].logProbs.append(sample.logProb) }
        if parameters.topLogProbs > 0 { beams[0].topLogProbs.append(sample.topLogProbs) }

        let generated = beams[0].tokens[promptCount...]
        var end = generated.count
        var reason: FinishReason?
        if generated.count - 1 >= stop.minTokens && stop.isStopToken(sample.token) {
            reason = .stop
            end -= 1
        } else if let n = stop.matchedStopSequence(generated), generated.count - n >= stop.minTokens {
            reason = .stop
            end -= n
        } else if generated.count >= stop.maxTokens || beams[0].tokens.count >= (maxSequenceLength ?? .max) {
            reason = .length
        } else {
            end -= stop.pendingStopPrefix(generated.dropFirst(emittedCount))
        }
        end = max(end, emittedCount)
        guard end > emittedCount || reason != nil else { return (nil, nil) }
        let range = emittedCount ..< end
        emittedCount = end
        let out = RequestOutput(
            requestID: request.id,
            newTokenIDs: Array(generated.dropFirst(range.lowerBound).prefix(range.count)),
            logProbs: parameters.returnLogProbs ? Array(beams[0].logProbs[range]) : [],
            topLogProbs: parameters.topLogProbs > 0 ? Array(beams[0].topLogProbs[range]) : [],
            cumulativeLogProb: beams[0].cumulativeLogProb, finishReason: reason)
        return (out, reason)
    }

    /// Beam search (TensorRT-LLM / HF semantics): from every beam's 2 × beamWidth candidates,
    /// ranked by cumulative log probability, candidates that end in a stop become finished
    /// hypotheses (if ranked within the top beamWidth) and the best beamWidth others continue,
    /// forking their parent's blocks. Done when beamWidth hypotheses exist (earlyStopping), or
    /// additionally no running beam can beat the worst of them (earlyStopping false), or at
    /// maxTokens, where the running beams join the hypotheses. The output is the best
    /// hypothesis by cumLogProb / length^lengthPenalty, sent whole when done.
    mutating func beamStep(_ samples: [(beam: Int, sample: Sample)], blocks: inout BlockManager,
                           maxSequenceLength: Int?) -> (RequestOutput?, FinishReason?) {
        let parameters = request.parameters, stop = request.stop
        let width = parameters.beamWidth
        let length = generatedCount + 1
        struct Candidate { var parent: Int; var token: Int32; var logProb: Float; var score: Double }

        var candidates: [Candidate] = []
        for (b, s) in samples {
            let list = s.candidates.isEmpty ? [TokenLogProb(s.token, s.logProb)] : s.candidates
            for c in list {
                candidates.append(Candidate(parent: b, token: c.token, logProb: c.logProb,
                                            score: beams[b].cumulativeLogProb + Double(c.logProb)))
            }
        }
        candidates.sort { a, b in
            a.score != b.score ? a.score > b.score : a.parent != b.parent ? a.parent < b.parent : a.token < b.token
        }

        func addHypothesis(_ c: Candidate, dropping stopCount: Int, reason: FinishReason) {
            let parent = beams[c.parent]
            var tokens = Array(parent.tokens[promptCount...]) + [c.token]
            var logProbs = parameters.returnLogProbs ? parent.logProbs + [c.logProb] : []
            tokens.removeLast(stopCount)
            logProbs.removeLast(min(stopCount, logProbs.count))
            let score = c.score / pow(Double(length), Double(parameters.lengthPenalty))
            hypotheses.append(Hypothesis(tokens: tokens, logProbs: logProbs, cumulativeLogProb: c.score, score: score, reason: reason))
            hypotheses.sort { $0.score > $1.score }
            if hypotheses.count > width { hypotheses.removeLast() }
        }

        var next: [Candidate] = []
        for (rank, c) in candidates.enumerated() {
            var stopCount = 0
            if length - 1 >= stop.minTokens && stop.isStopToken(c.token) {
                stopCount = 1
            } else if let n = stop.matchedStopSequence(beams[c.parent].tokens[promptCount...] + [c.token]), length - n >= stop.minTokens {
                stopCount = n
            }
            if stopCount > 0 {
                if rank < width { addHypothesis(c, dropping: stopCount, reason: .stop) }
                continue
            }
            next.append(c)
            if next.count == width { break }
        }

        let atLimit = length >= stop.maxTokens || promptCount + length >= (maxSequenceLength ?? .max)
        var done = next.isEmpty || atLimit
        if atLimit {
            for c in next { addHypothesis(c, dropping: 0, reason: .length) }
        } else if hypotheses.count >= width {
            let bestRunning = next[0].score / pow(Double(length), Double(parameters.lengthPenalty))
            done = parameters.earlyStopping || hypotheses[hypotheses.count - 1].score >= bestRunning
        }
        if done {
            guard let best = hypotheses.first else { return (nil, .error("beam search produced no hypothesis")) }
            let out = RequestOutput(requestID: request.id, newTokenIDs: best.tokens, logProbs: best.logProbs,
                                    cumulativeLogProb: best.cumulativeLogProb, finishReason: best.reason)
            return (out, best.reason)
        }

        // The new beams share their parents' blocks; the next decode copies a shared partial block.
        var forked: [Beam] = []
        for c in next {
            var beam = beams[c.parent]
            beam.blockTable = blocks.fork(beam.blockTable)
            beam.tokens.append(c.token)
            beam.cumulativeLogProb = c.score
            if parameters.returnLogProbs { beam.logProbs.append(c.logProb) }
            forked.append(beam)
        }
        for beam in beams { blocks.deallocate(beam.blockTable) }
        beams = forked
        return (nil, nil)
    }
}
