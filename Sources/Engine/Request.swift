// A generation request and its lifecycle: a value-type state machine whose events return the
// action the owner (the scheduler) must take.
import Foundation

public struct Request: Equatable, Sendable {
    /// Triton request ids are strings; the default is a fresh UUID.
    public var id: String
    public var promptTokenIDs: [Int32]
    public var parameters: SamplingParameters
    public var stop: StopConditions
    /// Seconds on any monotonic clock, used to order the waiting queue (ties: submission order).
    public var arrivalTime: Double
    /// Lower is served first (vLLM's convention; 0 is the default level). Strict: a steady
    /// stream of lower values delays higher ones.
    public var priority: Int

    public init(id: String = UUID().uuidString, prompt: [Int32], parameters: SamplingParameters = .greedy,
                stop: StopConditions = StopConditions(), arrivalTime: Double = ProcessInfo.processInfo.systemUptime,
                priority: Int = 0) {
        self.id = id
        self.promptTokenIDs = prompt
        self.parameters = parameters
        self.stop = stop
        self.arrivalTime = arrivalTime
        self.priority = priority
    }
}

public enum FinishReason: Equatable, Sendable, CustomStringConvertible {
    /// End id, a stop token or sequence, or a stop matched above the engine (`cancel(id, reason: .stop)`).
    case stop
    /// maxTokens generated, or the engine's maxSequenceLength reached.
    case length
    case cancelled
    case error(String)

    public var description: String {
        switch self {
        case .stop: "stop"
        case .length: "length"
        case .cancelled: "cancelled"
        case let .error(message): "error: \(message)"
        }
    }
}

public enum RequestStatus: Equatable, Sendable {
    /// In the waiting queue, never run (holds no KV blocks).
    case waiting
    /// Admitted: holds KV blocks, scheduled every step the budget allows.
    case running
    /// Evicted by recompute: back at the front of the waiting queue, holds no KV blocks, keeps
    /// its generated tokens; becomes running again when readmitted.
    case preempted
    case finished(FinishReason)
}

/// waiting ─schedule→ running ─preempt→ preempted ─schedule→ running;
/// waiting / running / preempted ─finish→ finished. Anything else is illegal: the state is
/// unchanged and the action says so.
public struct RequestLifecycle: Equatable, Sendable {
    public enum Event: Equatable, Sendable {
        case schedule
        case preempt
        case finish(FinishReason)
    }

    public enum Action: Equatable, Sendable {
        /// waiting → running: allocate KV blocks for the prompt and prefill it.
        case allocateAndPrefill
        /// preempted → running: allocate KV blocks for prompt + generated tokens and recompute them.
        case allocateAndRecompute
        /// running → preempted: free the KV blocks, requeue at the front of the waiting queue.
        case freeBlocksAndRequeue
        /// running → finished: free the KV blocks, send the final output.
        case freeBlocksAndFinish(FinishReason)
        /// waiting / preempted → finished: holds no blocks; send the final output.
        case finish(FinishReason)
        /// The event is not allowed in this state; nothing changed.
        case illegal(from: RequestStatus, event: Event)
    }

    public private(set) var status: RequestStatus

    public init(status: RequestStatus = .waiting) { self.status = status }

    public var isFinished: Bool {
        if case .finished = status { return true }
        return false
    }

    public mutating func handle(_ event: Event) -> Action {
        switch (status, event) {
        case (.waiting, .schedule):
            status = .running
            return .allocateAndPrefill
        case (.preempted, .schedule):
            status = .running
            return .allocateAndRecompute
        case (.running, .preempt):
            status = .preempted
            return .freeBlocksAndRequeue
        case let (.running, .finish(reason)):
            status = .finished(reason)
            return .freeBlocksAndFinish(reason)
        case let (.waiting, .finish(reason)), let (.preempted, .finish(reason)):
            status = .finished(reason)
            return .finish(reason)
        case (.running, .schedule), (.waiting, .preempt), (.preempted, .preempt), (.finished, _):
            return .illegal(from: status, event: event)
        }
    }

    public mutating func schedule() -> Action { handle(.schedule) }
    public mutating func preempt() -> Action { handle(.preempt) }
    public mutating func finish(_ reason: FinishReason) -> Action { handle(.finish(reason)) }
}
