// Fake executors (no tensors) and a synchronous driver for the scheduler.
@testable import Engine
import Foundation
import Testing

/// The fake model: the next token is (last fed token + 1) % vocab, with log probability -0.25,
/// or whatever `logProb` says. Deterministic in the history, so recomputation changes nothing.
func successor(_ out: SchedulerOutput, vocab: Int32 = 1000, logProb: @escaping (Int32) -> Float = { _ in -0.25 }) -> StepOutput {
    StepOutput(samples: out.sequences.map { s in
        guard s.needsSample else { return nil }
        let token = (s.tokens.last! + 1) % vocab
        let top = (0 ..< s.parameters.topLogProbs).map { TokenLogProb(token + Int32($0), logProb(token) - Float($0)) }
        return Sample(token: token, logProb: logProb(token), topLogProbs: top)
    })
}

struct SuccessorExecutor: Executor {
    var vocab: Int32 = 1000
    var delay: Duration? = nil
    func execute(_ output: SchedulerOutput) async throws -> StepOutput {
        if let delay { try await Task.sleep(for: delay) }
        return successor(output, vocab: vocab)
    }
}

/// What a driven scheduler produced.
struct Run {
    var outputs: [String: [RequestOutput]] = [:]
    var steps: [SchedulerOutput] = []
    /// Request ids in the order they finished.
    var finishOrder: [String] = []

    func tokens(_ id: String) -> [Int32] { outputs[id, default: []].flatMap(\.newTokenIDs) }
    func reason(_ id: String) -> FinishReason? { outputs[id]?.last?.finishReason }
    /// Index of the step where the request was first scheduled.
    func firstStep(_ id: String) -> Int? { steps.firstIndex { $0.sequences.contains { $0.requestID == id } } }
}

/// Runs schedule → step → update until nothing is left (or `maxSteps`). `before(stepIndex, &s)`
/// runs before each schedule (to add or cancel requests).
@discardableResult
func drive(_ s: inout Scheduler, maxSteps: Int = 10_000,
           before: (Int, inout Scheduler) -> Void = { _, _ in },
           step: (SchedulerOutput) -> StepOutput = { successor($0) }) -> Run {
    var run = Run()
    for i in 0 ..< maxSteps {
        before(i, &s)
        if !s.hasUnfinishedRequests && i > 0 { break }
        let out = s.schedule()
        run.steps.append(out)
        for o in s.update(out, step(out)) {
            run.outputs[o.requestID, default: []].append(o)
            if o.finishReason != nil { run.finishOrder.append(o.requestID) }
        }
    }
    return run
}

func config(numBlocks: Int = 1024, blockSize: Int = 16, maxBatchSize: Int = 64, maxNumTokens: Int = 8192,
            chunked: Bool = true, policy: SchedulerConfig.Policy = .guaranteedNoEvict, reuse: Bool = false,
            maxBeamWidth: Int = 1, maxSequenceLength: Int? = nil) -> SchedulerConfig {
    SchedulerConfig(numBlocks: numBlocks, blockSize: blockSize, maxBatchSize: maxBatchSize, maxNumTokens: maxNumTokens,
                    enableChunkedContext: chunked, policy: policy, enableKVCacheReuse: reuse,
                    maxBeamWidth: maxBeamWidth, maxSequenceLength: maxSequenceLength)
}

func request(_ id: String, _ prompt: [Int32], maxTokens: Int = 8, parameters: SamplingParameters = .greedy,
             stop: StopConditions? = nil, arrival: Double = 0, priority: Int = 0) -> Request {
    var conditions = stop ?? StopConditions()
    if stop == nil { conditions.maxTokens = maxTokens }
    return Request(id: id, prompt: prompt, parameters: parameters, stop: conditions, arrivalTime: arrival, priority: priority)
}

/// `n` tokens counting up from `from`.
func prompt(_ n: Int, from: Int32 = 100) -> [Int32] { (0 ..< n).map { from + Int32($0) } }

/// What the successor model generates after `last`.
func expected(after last: Int32, count: Int, vocab: Int32 = 1000) -> [Int32] {
    (1 ... count).map { (last + Int32($0)) % vocab }
}

/// Polls `condition` every millisecond for up to 5 seconds.
func eventually(_ condition: () -> Bool) async -> Bool {
    for _ in 0 ..< 5000 {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(1))
    }
    return condition()
}

/// `#require` for expressions it cannot expand (mutating calls).
func unwrap<T>(_ value: T?, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    try #require(value, sourceLocation: sourceLocation)
}
