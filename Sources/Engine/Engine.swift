// Engine: the step loop (schedule → execute → update) on its own task, and one
// AsyncThrowingStream of RequestOutput per submitted request.
import Synchronization

/// Runs one step on a device. The Runtime's model runner is the real one; tests use fakes.
public protocol Executor: Sendable {
    /// Performs `output.blockCopies` in order, then one forward pass over `output.sequences`,
    /// and samples every sequence with needsSample (see `Sample` for beam search). Returns one
    /// entry per sequence, in order. May be called with no sequences, only to deliver
    /// `finishedRequestIDs`. Throw `ExecutorError` naming the failed requests to fail only
    /// those (the others must be left as before the step; they run it again); any other error
    /// fails every request of the step.
    func execute(_ output: SchedulerOutput) async throws -> StepOutput
}

public struct ExecutorError: Error, Equatable, Sendable, CustomStringConvertible {
    public var requestIDs: [String]
    public var message: String
    public init(requestIDs: [String], message: String) {
        self.requestIDs = requestIDs
        self.message = message
    }
    public var description: String { message }
}

/// Contracts:
/// - `submit` validates at once (throws `EngineError`) and returns the request's stream. Its
///   outputs carry the new tokens; the last has a finishReason. A request that fails yields that
///   last output (finishReason `.error`) and then the stream throws `EngineError.requestFailed`.
/// - Streams buffer without bound, so a slow consumer never stalls the loop. Cancelling the
///   consuming task (or dropping the stream) cancels the request.
/// - The loop sleeps while there is nothing to run and wakes on submit or cancel. An executor
///   error fails only the requests it concerns; the loop keeps serving.
/// - Call `shutdown()` to stop the loop: unfinished requests end with `.cancelled`.
public final class Engine: Sendable {
    private let core: Core
    private let loop: Task<Void, Never>

    public init(config: SchedulerConfig, executor: any Executor) throws {
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let core = Core(scheduler: try Scheduler(config: config), executor: executor, wake: wake)
        self.core = core
        loop = Task { await core.run(wakeups) }
    }

    /// Dropping the engine stops its loop and ends unfinished requests, as `shutdown()` does
    /// without waiting for the step in flight.
    deinit {
        loop.cancel()
        core.wake.finish()
        core.cancelAll()
    }

    public func submit(_ request: Request) throws -> AsyncThrowingStream<RequestOutput, Error> {
        try submit([request])[0]
    }

    /// Submits several requests together: all are queued under one lock before the loop wakes,
    /// so the next step can take them together (a static batch; requests submitted one by one
    /// may start a step with only the first). All are accepted or none: the first invalid
    /// request's error is thrown and the others are withdrawn. One stream per request, in order.
    public func submit(_ requests: [Request]) throws -> [AsyncThrowingStream<RequestOutput, Error>] {
        let made = requests.map { _ in AsyncThrowingStream.makeStream(of: RequestOutput.self, bufferingPolicy: .unbounded) }
        let serials = try core.state.withLock { state -> [Int] in
            guard !state.isShutDown else { throw EngineError.shutDown }
            var added: [String] = []
            do {
                for r in requests {
                    try state.scheduler.add(r)
                    added.append(r.id)
                }
            } catch {
                for id in added { _ = state.scheduler.withdraw(id) }
                throw error
            }
            var serials: [Int] = []
            for (r, m) in zip(requests, made) {
                state.serials += 1
                state.streams[r.id] = Core.Stream(continuation: m.continuation, serial: state.serials)
                serials.append(state.serials)
            }
            return serials
        }
        for (i, r) in requests.enumerated() {
            let id = r.id, serial = serials[i]
            made[i].continuation.onTermination = { [weak core] termination in
                if case .cancelled = termination { core?.cancel(id, reason: .cancelled, serial: serial) }
            }
        }
        core.wake.yield()
        return made.map(\.stream)
    }

    /// Finishes the request now (its blocks are freed at once); its stream gets a last output
    /// with `reason`. A layer above that matched a stop string passes `.stop`. Unknown or
    /// finished ids are ignored.
    public func cancel(_ id: String, reason: FinishReason = .cancelled) {
        core.cancel(id, reason: reason, serial: nil)
    }

    public var metrics: SchedulerMetrics { core.state.withLock { $0.scheduler.metrics } }

    /// Stops the loop after the step in flight and ends every unfinished request (`.cancelled`).
    public func shutdown() async {
        core.state.withLock { $0.isShutDown = true }
        loop.cancel()
        core.wake.finish()
        await loop.value
        core.cancelAll()
    }
}

/// The state shared by the loop and the callers, behind one lock. Stream continuations are
/// resumed outside the lock (their termination handlers take it).
private final class Core: Sendable {
    struct State: Sendable {
        var scheduler: Scheduler
        var streams: [String: Stream] = [:]
        /// Streams opened so far; numbers each one.
        var serials = 0
        var isShutDown = false

        /// Pairs outputs with their streams, forgetting the streams of finished requests.
        mutating func route(_ outputs: [RequestOutput]) -> [Delivery] {
            outputs.compactMap { out in
                guard let stream = streams[out.requestID] else { return nil }
                if out.finishReason != nil { streams[out.requestID] = nil }
                return Delivery(continuation: stream.continuation, output: out)
            }
        }
    }

    struct Stream: Sendable {
        var continuation: AsyncThrowingStream<RequestOutput, Error>.Continuation
        var serial: Int
    }

    struct Delivery: Sendable {
        var continuation: AsyncThrowingStream<RequestOutput, Error>.Continuation
        var output: RequestOutput
    }

    let state: Mutex<State>
    let executor: any Executor
    let wake: AsyncStream<Void>.Continuation

    init(scheduler: Scheduler, executor: any Executor, wake: AsyncStream<Void>.Continuation) {
        state = Mutex(State(scheduler: scheduler))
        self.executor = executor
        self.wake = wake
    }

    static func deliver(_ deliveries: [Delivery]) {
        for d in deliveries {
            d.continuation.yield(d.output)
            switch d.output.finishReason {
            case nil: break
            case let .error(message): d.continuation.finish(throwing: EngineError.requestFailed(id: d.output.requestID, message: message))
            default: d.continuation.finish()
            }
        }
    }

    /// `serial`: cancel only while that stream is still the request's (a stream terminated late
    /// must not cancel a newer request that reuses the id).
    func cancel(_ id: String, reason: FinishReason, serial: Int?) {
        let deliveries = state.withLock { state -> [Delivery] in
            if let serial, state.streams[id]?.serial != serial { return [] }
            return state.route(state.scheduler.cancel(id, reason: reason).map { [$0] } ?? [])
        }
        Core.deliver(deliveries)
        wake.yield()
    }

    /// Refuses new requests and ends every unfinished one with `.cancelled`.
    func cancelAll() {
        let deliveries = state.withLock { state in
            state.isShutDown = true
            let ids = state.scheduler.runningIDs + state.scheduler.waitingIDs
            return state.route(ids.compactMap { state.scheduler.cancel($0) })
        }
        Core.deliver(deliveries)
    }

    /// schedule → execute → update, until cancelled; sleeps on `wakeups` when idle. A step
    /// interrupted by the loop's cancellation is dropped (its requests end `.cancelled`).
    func run(_ wakeups: AsyncStream<Void>) async {
        var wakeIterator = wakeups.makeAsyncIterator()
        while !Task.isCancelled {
            let output = state.withLock { $0.scheduler.schedule() }
            if output.isEmpty {
                if await wakeIterator.next() == nil { return }
                continue
            }
            let outputs: [RequestOutput]
            do {
                let result = try await executor.execute(output)
                outputs = state.withLock { $0.scheduler.update(output, result) }
            } catch where Task.isCancelled {
                return
            } catch let error as ExecutorError {
                outputs = state.withLock { $0.scheduler.fail(output, requestIDs: Set(error.requestIDs), message: error.message) }
            } catch {
                outputs = state.withLock { $0.scheduler.fail(output, message: String(describing: error)) }
            }
            Core.deliver(state.withLock { $0.route(outputs) })
            await Task.yield()
        }
    }
}
