// The Engine end to end: streams, cancellation, executor failures, idling, shutdown.
import Engine
import Synchronization
import Testing

/// Reads a stream to its end: the outputs, and what it threw, if anything.
func collect(_ stream: AsyncThrowingStream<RequestOutput, Error>) async -> (outputs: [RequestOutput], error: Error?) {
    var outputs: [RequestOutput] = []
    do {
        for try await o in stream { outputs.append(o) }
        return (outputs, nil)
    } catch {
        return (outputs, error)
    }
}

struct DeviceLost: Error {}

/// Answers like `successor`, but throws when told: an ExecutorError for the named requests the
/// next time they run, or a plain error on the next step. Counts its calls.
final class FlakyExecutor: Executor {
    let failRequests = Mutex<Set<String>>([])
    let failNextStep = Mutex(false)
    let calls = Mutex(0)
    let delay: Duration?

    init(delay: Duration? = nil) { self.delay = delay }

    func execute(_ output: SchedulerOutput) async throws -> StepOutput {
        calls.withLock { $0 += 1 }
        if let delay { try await Task.sleep(for: delay) }
        if failNextStep.withLock({ fail in defer { fail = false }; return fail }) { throw DeviceLost() }
        let hit = failRequests.withLock { failing -> [String] in
            let hit = failing.intersection(output.sequences.map(\.requestID))
            failing.subtract(hit)
            return hit.sorted()
        }
        if !hit.isEmpty { throw ExecutorError(requestIDs: hit, message: "device fault") }
        return successor(output)
    }
}

@Suite struct EngineTests {
    @Test func requestsStreamTheirTokensConcurrently() async throws {
        let engine = try Engine(config: config(blockSize: 16, maxNumTokens: 64), executor: SuccessorExecutor())
        let specs: [(String, [Int32], Int)] = [("a", prompt(5), 7), ("b", prompt(90, from: 300), 3), ("c", [1], 12)]
        let streams = try specs.map { try engine.submit(request($0.0, $0.1, maxTokens: $0.2)) }
        for (spec, stream) in zip(specs, streams) {
            let (outs, error) = await collect(stream)
            #expect(error == nil)
            #expect(outs.flatMap(\.newTokenIDs) == expected(after: spec.1.last!, count: spec.2))
            #expect(outs.allSatisfy { $0.requestID == spec.0 })
            #expect(outs.last?.finishReason == .length && outs.dropLast().allSatisfy { $0.finishReason == nil })
        }
        #expect(await eventually { engine.metrics.runningCount == 0 })
        let m = engine.metrics
        #expect(m.kvBlocksUsed == 0 && m.kvBlocksTotal == 1024 && m.finishedTotal == 3)
        #expect(m.tokensTotal == 5 + 90 + 1 + (7 - 1) + (3 - 1) + (12 - 1) && m.generatedTokensTotal == 22)
        await engine.shutdown()
    }

    @Test func cancelEndsTheStreamAndFreesBlocksAtOnce() async throws {
        let engine = try Engine(config: config(), executor: SuccessorExecutor(delay: .milliseconds(1)))
        for reason in [FinishReason.cancelled, .stop] {
            let stream = try engine.submit(request("a", prompt(40), maxTokens: 10_000))
            var outs: [RequestOutput] = []
            for try await o in stream {
                outs.append(o)
                if outs.count == 2 {
                    engine.cancel("a", reason: reason)
                    #expect(engine.metrics.kvBlocksUsed == 0)
                }
            }
            #expect(outs.last?.finishReason == reason && outs.count < 1000)
            #expect(outs.flatMap(\.newTokenIDs) == expected(after: 139, count: outs.count - 1))
        }
        engine.cancel("nobody")
        await engine.shutdown()
    }

    @Test func cancellingTheConsumerCancelsTheRequest() async throws {
        let engine = try Engine(config: config(), executor: SuccessorExecutor(delay: .milliseconds(1)))
        let stream = try engine.submit(request("a", prompt(4), maxTokens: 10_000))
        let started = Mutex(false)
        let consumer = Task {
            for try await _ in stream { started.withLock { $0 = true } }
        }
        #expect(await eventually { started.withLock { $0 } })
        consumer.cancel()
        #expect(await eventually { engine.metrics.runningCount == 0 && engine.metrics.kvBlocksUsed == 0 })
        #expect(engine.metrics.finishedTotal == 1)
        await engine.shutdown()
    }

    @Test func anExecutorErrorFailsOnlyTheRequestsItNames() async throws {
        let executor = FlakyExecutor()
        executor.failRequests.withLock { $0 = ["bad"] }
        let engine = try Engine(config: config(), executor: executor)
        let good = try engine.submit(request("good", prompt(4), maxTokens: 5))
        let bad = try engine.submit(request("bad", prompt(4, from: 300), maxTokens: 5))
        let (badOuts, badError) = await collect(bad)
        #expect(badOuts.last?.finishReason == .error("device fault"))
        #expect(badError as? EngineError == .requestFailed(id: "bad", message: "device fault"))
        let (goodOuts, goodError) = await collect(good)
        #expect(goodError == nil && goodOuts.flatMap(\.newTokenIDs) == expected(after: 103, count: 5))
        await engine.shutdown()
    }

    @Test func anUnattributedErrorFailsTheStepAndTheLoopKeepsServing() async throws {
        let executor = FlakyExecutor()
        executor.failNextStep.withLock { $0 = true }
        let engine = try Engine(config: config(), executor: executor)
        let (outs, error) = await collect(try engine.submit(request("a", prompt(4), maxTokens: 5)))
        #expect(outs.last?.finishReason == .error(String(describing: DeviceLost())))
        #expect(error is EngineError)
        let (later, laterError) = await collect(try engine.submit(request("b", prompt(4), maxTokens: 5)))
        #expect(laterError == nil && later.flatMap(\.newTokenIDs) == expected(after: 103, count: 5))
        await engine.shutdown()
    }

    @Test func theLoopSleepsWhenIdleAndWakesOnSubmit() async throws {
        let executor = FlakyExecutor()
        let engine = try Engine(config: config(), executor: executor)
        _ = await collect(try engine.submit(request("a", prompt(4), maxTokens: 3)))
        try await Task.sleep(for: .milliseconds(20))
        let idle = executor.calls.withLock { $0 }
        try await Task.sleep(for: .milliseconds(50))
        #expect(executor.calls.withLock { $0 } == idle)                 // no busy loop
        #expect(idle <= 4)                                               // 3 steps + one to report "a" finished
        let (outs, _) = await collect(try engine.submit(request("b", prompt(4), maxTokens: 3)))
        #expect(outs.flatMap(\.newTokenIDs) == expected(after: 103, count: 3))
        await engine.shutdown()
    }

    @Test func aSlowConsumerDoesNotStallOthers() async throws {
        let engine = try Engine(config: config(), executor: SuccessorExecutor())
        let slow = try engine.submit(request("slow", prompt(4), maxTokens: 200))
        let fast = try engine.submit(request("fast", prompt(4, from: 300), maxTokens: 50))
        let (fastOuts, _) = await collect(fast)
        #expect(fastOuts.count == 50)
        #expect(await eventually { engine.metrics.finishedTotal == 2 })  // slow finished, unread
        let (slowOuts, _) = await collect(slow)
        #expect(slowOuts.flatMap(\.newTokenIDs) == expected(after: 103, count: 200))
        await engine.shutdown()
    }

    @Test func submitValidatesAtOnce() async throws {
        let engine = try Engine(config: config(maxBeamWidth: 1), executor: SuccessorExecutor(delay: .milliseconds(1)))
        #expect(throws: EngineError.self) { try engine.submit(request("x", prompt(4), parameters: SamplingParameters(topK: -1))) }
        #expect(throws: EngineError.self) { try engine.submit(request("x", prompt(4), parameters: SamplingParameters(beamWidth: 2))) }
        let first = try engine.submit(request("dup", prompt(4), maxTokens: 10_000))
        #expect(throws: EngineError.duplicateRequestID("dup")) { try engine.submit(request("dup", prompt(4))) }
        engine.cancel("dup")
        #expect(await collect(first).outputs.last?.finishReason == .cancelled)
        // The id is free again once finished.
        let again = try engine.submit(request("dup", prompt(4), maxTokens: 2))
        #expect(await collect(again).outputs.last?.finishReason == .length)
        await engine.shutdown()
    }

    @Test func shutdownCancelsWhatIsLeft() async throws {
        let engine = try Engine(config: config(maxBatchSize: 1), executor: SuccessorExecutor(delay: .milliseconds(1)))
        let running = try engine.submit(request("running", prompt(4), maxTokens: 10_000))
        let waiting = try engine.submit(request("waiting", prompt(4), maxTokens: 10_000))
        var iterator = running.makeAsyncIterator()
        _ = try await iterator.next()
        await engine.shutdown()
        var last: RequestOutput?
        while let o = try await iterator.next() { last = o }
        #expect(last?.finishReason == .cancelled)
        #expect(await collect(waiting).outputs.map(\.finishReason) == [.cancelled])
        #expect(throws: EngineError.shutDown) { try engine.submit(request("late", prompt(4))) }
        #expect(engine.metrics.kvBlocksUsed == 0)
    }

    @Test func droppingTheEngineEndsItsStreams() async throws {
        var engine: Engine? = try Engine(config: config(), executor: SuccessorExecutor(delay: .milliseconds(1)))
        let stream = try engine!.submit(request("a", prompt(4), maxTokens: 10_000))
        var iterator = stream.makeAsyncIterator()
        #expect(try await iterator.next()?.newTokenIDs == [104])
        engine = nil
        var last: RequestOutput?
        while let o = try await iterator.next() { last = o }
        #expect(last?.finishReason == .cancelled)
    }

    @Test func beamSearchThroughTheEngine() async throws {
        struct Scripted: Executor {
            func execute(_ output: SchedulerOutput) async throws -> StepOutput { scripted(trap, fallback: endNext)(output) }
        }
        let engine = try Engine(config: config(blockSize: 4, maxBeamWidth: 2), executor: Scripted())
        let (outs, error) = await collect(try engine.submit(beamRequest("beam")))
        #expect(error == nil && outs.map(\.newTokenIDs) == [[2, 5]] && outs[0].finishReason == .stop)
        await engine.shutdown()
    }

    /// A batch submitted at once is one static batch: the first step prefills every request
    /// (one by one, the loop may start a step with only the first).
    @Test func aSubmittedBatchStartsInOneStep() async throws {
        final class Recorder: Executor, Sendable {
            let steps = Mutex<[Set<String>]>([])
            func execute(_ output: SchedulerOutput) async throws -> StepOutput {
                steps.withLock { $0.append(Set(output.sequences.map(\.requestID))) }
                return successor(output)
            }
        }
        for _ in 0..<5 {
            let recorder = Recorder()
            let engine = try Engine(config: config(), executor: recorder)
            let ids = (0..<8).map { "r\($0)" }
            let streams = try engine.submit(ids.map { request($0, prompt(20), maxTokens: 3) })
            for s in streams { #expect(await collect(s).error == nil) }
            #expect(recorder.steps.withLock { $0.first { !$0.isEmpty } } == Set(ids))
            await engine.shutdown()
        }
    }

    /// All or nothing: one invalid request in a batch rejects the batch, and the valid ones can
    /// be submitted again (they were withdrawn, not left queued).
    @Test func aBatchWithAnInvalidRequestIsRejectedWhole() async throws {
        let engine = try Engine(config: config(), executor: SuccessorExecutor())
        #expect(throws: EngineError.self) {
            try engine.submit([request("a", prompt(4)), request("b", []), request("c", prompt(4))])
        }
        #expect(engine.metrics.waitingCount == 0 && engine.metrics.runningCount == 0)
        let again = try engine.submit([request("a", prompt(4), maxTokens: 2), request("c", prompt(4), maxTokens: 2)])
        for s in again { #expect(await collect(s).outputs.flatMap(\.newTokenIDs).count == 2) }
        await engine.shutdown()
    }
}
