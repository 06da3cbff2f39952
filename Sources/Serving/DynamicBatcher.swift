// Triton's dynamic batcher for stateless (non-LLM) models: requests queue, and each idle
// model instance takes a batch — a preferred batch size when the queue holds one, else what
// has gathered once the oldest request has waited max_queue_delay_microseconds. Each instance
// runs on its own thread, so `instance_group { count: N }` executes N batches at once.
//
// Queue policy (default_queue_policy): max_queue_size rejects with 503 when full; a request
// whose timeout expires while queued is rejected (REJECT) or served after the others of its
// level (DELAY). With priority_levels the queue is ordered by level, then arrival.
import Dispatch
import Synchronization
import TritonProtos

/// Runs one batch on one instance: one result per request, in order.
protocol BatchBackend: Sendable {
    func execute(_ batch: [ModelRequest], instance: Int) -> [Result<[InferTensor], Error>]
    /// The ensemble's stream `key` ended (finished, failed or cancelled): forget its state.
    func endStream(_ key: String)
}

extension BatchBackend {
    func endStream(_ key: String) {}
}

/// Triton's priority levels (`dynamic_batching { priority_levels, default_priority_level }`).
/// A request's "priority" parameter names its level, 1 the highest; 0, or a value above
/// priority_levels, takes default_priority_level (as Triton's InferenceRequest::SetPriority).
/// With priority_levels 0 priorities are ignored: every request is level 0.
struct PriorityLevels: Sendable, Equatable {
    var count: UInt64 = 0
    var defaultLevel: UInt64 = 0

    init() {}
    init(_ config: Inference_ModelConfig) {
        guard case .dynamicBatching(let d)? = config.schedulingChoice else { return }
        count = d.priorityLevels
        defaultLevel = d.defaultPriorityLevel
    }

    /// The level a request runs at: lower levels are served first.
    func level(requested: Int) -> Int {
        guard count > 0 else { return 0 }
        guard requested >= 1 && UInt64(requested) <= count else { return Int(clamping: defaultLevel) }
        return requested
    }
}

struct BatcherSettings: Sendable, Equatable {
    /// Batch elements per execution at most (1 when the model does not batch).
    var maxBatchSize = 1
    var preferredBatchSizes: [Int] = []
    var maxQueueDelayNanoseconds: UInt64 = 0
    var instanceCount = 1
    var queuePolicy = QueuePolicy()
    var priorities = PriorityLevels()

    struct QueuePolicy: Sendable, Equatable {
        var delayOnTimeout = false
        var defaultTimeoutMicroseconds: UInt64 = 0
        var allowTimeoutOverride = false
        /// 0: unbounded.
        var maxQueueSize = 0

        init() {}
        init(_ p: Inference_ModelQueuePolicy) {
            delayOnTimeout = p.timeoutAction == .delay
            defaultTimeoutMicroseconds = p.defaultTimeoutMicroseconds
            allowTimeoutOverride = p.allowTimeoutOverride
            maxQueueSize = Int(p.maxQueueSize)
        }

        /// The timeout that applies to a request, in microseconds (nil: none).
        func timeout(requested: UInt64?) -> UInt64? {
            if let requested, allowTimeoutOverride, requested > 0,
               defaultTimeoutMicroseconds == 0 || requested < defaultTimeoutMicroseconds {
                return requested
            }
            return defaultTimeoutMicroseconds > 0 ? defaultTimeoutMicroseconds : nil
        }
    }

    /// From a config: dynamic_batching when present; without it every request runs alone.
    init(config: Inference_ModelConfig) {
        let maxBatch = Int(max(config.maxBatchSize, 0))
        instanceCount = max(1, config.instanceGroup.reduce(0) { $0 + Int(max($1.count, 1)) })
        priorities = PriorityLevels(config)
        if case .dynamicBatching(let d)? = config.schedulingChoice, maxBatch > 0 {
            maxBatchSize = maxBatch
            preferredBatchSizes = d.preferredBatchSize.map(Int.init).filter { $0 > 0 && $0 <= maxBatch }.sorted()
            maxQueueDelayNanoseconds = d.maxQueueDelayMicroseconds * 1000
            if d.hasDefaultQueuePolicy { queuePolicy = QueuePolicy(d.defaultQueuePolicy) }
        } else if case .dynamicBatching(let d)? = config.schedulingChoice, d.hasDefaultQueuePolicy {
            queuePolicy = QueuePolicy(d.defaultQueuePolicy)
        }
    }

    init() {}
}

final class DynamicBatcher: Sendable {
    private struct Item {
        var serial: UInt64
        /// The priority level: the queue is ordered by it (lower first), then by arrival.
        var level: Int
        var request: ModelRequest
        var size: Int
        var enqueued: UInt64
        var deadline: UInt64?
        var continuation: CheckedContinuation<[InferTensor], Error>
        func expired(_ now: UInt64) -> Bool { deadline.map { now >= $0 } ?? false }
    }

    private struct State {
        var queue: [Item] = []
        var idle: [Int]
        var serial: UInt64 = 0
        var timerAt: UInt64?
        var stopped = false
    }

    let settings: BatcherSettings
    private let backend: BatchBackend
    private let recorder: StatisticsRecorder
    private let state: Mutex<State>
    private let threads: [DispatchQueue]

    init(settings: BatcherSettings, backend: BatchBackend, recorder: StatisticsRecorder, label: String) {
        self.settings = settings
        self.backend = backend
        self.recorder = recorder
        state = Mutex(State(idle: Array((0..<settings.instanceCount).reversed())))
        threads = (0..<settings.instanceCount).map { DispatchQueue(label: "petrel.\(label).instance\($0)") }
    }

    var queuedCount: Int { state.withLock { $0.queue.count } }

    /// Queues the request and waits for its outputs. Cancelling the waiting task takes a
    /// queued request out of the queue.
    func submit(_ request: ModelRequest) async throws -> [InferTensor] {
        let size = settings.maxBatchSize > 1 ? request.batchSize : 1
        let timeout = settings.queuePolicy.timeout(requested: request.context.timeoutMicroseconds)
        let serial = state.withLock { s -> UInt64 in s.serial += 1; return s.serial }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<[InferTensor], Error>) in
                let now = StatisticsRecorder.now()
                let rejected: ServingError? = state.withLock { s in
                    if s.stopped { return ServingError(.unavailable, "the model is unloading") }
                    if Task.isCancelled { return ServingError(.unavailable, "the request was cancelled") }
                    if settings.queuePolicy.maxQueueSize > 0 && s.queue.count >= settings.queuePolicy.maxQueueSize {
                        return ServingError(.unavailable, "exceeds maximum queue size (\(settings.queuePolicy.maxQueueSize))")
                    }
                    let item = Item(serial: serial, level: settings.priorities.level(requested: request.context.priority),
                                    request: request, size: size, enqueued: now,
                                    deadline: timeout.map { now + $0 * 1000 }, continuation: c)
                    // After every item of its level or a higher one (a smaller level number).
                    let at = s.queue.lastIndex { $0.level <= item.level }.map { $0 + 1 } ?? 0
                    s.queue.insert(item, at: at)
                    return nil
                }
                if let rejected {
                    c.resume(throwing: rejected)
                } else {
                    recorder.pending(1)
                    dispatch()
                }
            }
        } onCancel: {
            let item = state.withLock { s -> Item? in
                guard let i = s.queue.firstIndex(where: { $0.serial == serial }) else { return nil }
                return s.queue.remove(at: i)
            }
            if let item {
                recorder.pending(-1)
                item.continuation.resume(throwing: CancellationError())
            }
        }
    }

    /// Fails every queued request and refuses new ones.
    func stop() {
        let items = state.withLock { s -> [Item] in
            s.stopped = true
            defer { s.queue.removeAll() }
            return s.queue
        }
        recorder.pending(-items.count)
        for item in items { item.continuation.resume(throwing: ServingError(.unavailable, "the model is unloading")) }
    }

    // MARK: forming batches

    private enum Decision {
        case run(instance: Int, batch: [Item])
        case reject([Item])
        case wake(at: UInt64)
    }

    /// Hands batches to idle instances; rejects expired requests; arms a timer for the next
    /// moment something can change (a delay window closing or a timeout expiring).
    private func dispatch() {
        let now = StatisticsRecorder.now()
        let decisions = state.withLock { s -> [Decision] in
            var out: [Decision] = []
            // Timeouts.
            if s.queue.contains(where: { $0.expired(now) }) {
                if settings.queuePolicy.delayOnTimeout {
                    // Expired requests go behind the others of their level.
                    let fresh = s.queue.filter { !$0.expired(now) }, late = s.queue.filter { $0.expired(now) }
                    var reordered: [Item] = []
                    for level in Set(s.queue.map(\.level)).sorted() {
                        reordered += fresh.filter { $0.level == level }
                        reordered += late.filter { $0.level == level }.map { var i = $0; i.deadline = nil; return i }
                    }
                    s.queue = reordered
                } else {
                    out.append(.reject(s.queue.filter { $0.expired(now) }))
                    s.queue.removeAll { $0.expired(now) }
                }
            }
            var nextWake: UInt64?
            while !s.idle.isEmpty && !s.queue.isEmpty {
                // The longest prefix of the queue that fits in a batch.
                var total = 0, count = 0
                var preferredCount: Int?   // the longest prefix whose size is a preferred size
                var preferredTotal = 0
                for item in s.queue {
                    guard total + item.size <= settings.maxBatchSize || count == 0 else { break }
                    total += item.size
                    count += 1
                    if settings.preferredBatchSizes.contains(total) { preferredCount = count; preferredTotal = total }
                }
                let waited = now &- s.queue[0].enqueued
                let take: Int
                if let p = preferredCount, preferredTotal == settings.preferredBatchSizes.last {
                    take = p                                 // the largest preferred size: go now
                } else if total >= settings.maxBatchSize {
                    take = preferredCount ?? count           // cannot grow any more
                } else if settings.maxQueueDelayNanoseconds == 0 || waited >= settings.maxQueueDelayNanoseconds {
                    take = count                             // the delay window is over
                } else {
                    nextWake = s.queue[0].enqueued + settings.maxQueueDelayNanoseconds
                    break
                }
                let batch = Array(s.queue.prefix(take))
                s.queue.removeFirst(take)
                out.append(.run(instance: s.idle.removeLast(), batch: batch))
            }
            if let soonest = s.queue.compactMap(\.deadline).min() { nextWake = min(nextWake ?? soonest, soonest) }
            if let wake = nextWake, s.timerAt.map({ wake < $0 || $0 <= now }) ?? true {
                s.timerAt = wake
                out.append(.wake(at: wake))
            }
            return out
        }
        for d in decisions {
            switch d {
            case .reject(let items):
                recorder.pending(-items.count)
                for item in items {
                    item.continuation.resume(throwing: ServingError(.unavailable, "request timeout expired while queued"))
                }
            case .wake(let at):
                DispatchQueue.global().asyncAfter(deadline: DispatchTime(uptimeNanoseconds: at + 1)) { [weak self] in
                    guard let self else { return }
                    state.withLock { if $0.timerAt == at { $0.timerAt = nil } }
                    dispatch()
                }
            case .run(let instance, let batch):
                recorder.pending(-batch.count)
                threads[instance].async { [self] in run(batch, on: instance) }
            }
        }
    }

    private func run(_ batch: [Item], on instance: Int) {
        let start = StatisticsRecorder.now()
        let results = backend.execute(batch.map(\.request), instance: instance)
        let end = StatisticsRecorder.now()
        recorder.execution(requestCount: batch.count, inferences: batch.reduce(0) { $0 + $1.request.batchSize },
                           queueNs: batch.map { start &- $0.enqueued }, inputNs: 0, inferNs: end &- start, outputNs: 0)
        for (item, result) in zip(batch, results + Array(repeating: .failure(ServingError(.internalError, "the backend returned too few responses")), count: max(0, batch.count - results.count))) {
            item.continuation.resume(with: result)
        }
        state.withLock { $0.idle.append(instance) }
        dispatch()
    }
}
