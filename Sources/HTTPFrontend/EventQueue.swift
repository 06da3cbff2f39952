// EventQueue: a single-consumer hand-off between a producing task and a response writer
// (the generate_stream pump). Unbounded: the producer is the model, whose own stream is
// already bounded by its max_tokens.
import Synchronization

final class EventQueue<Element: Sendable>: Sendable {
    private struct State {
        var buffer: [Element] = []
        var finished = false
        var waiter: CheckedContinuation<Element?, Never>?
    }
    private let state = Mutex(State())

    func push(_ element: Element) {
        let waiter = state.withLock { s -> CheckedContinuation<Element?, Never>? in
            guard !s.finished else { return nil }
            if let w = s.waiter { s.waiter = nil; return w }
            s.buffer.append(element)
            return nil
        }
        waiter?.resume(returning: element)
    }

    /// Ends the queue; buffered elements are still delivered.
    func finish() {
        let waiter = state.withLock { s -> CheckedContinuation<Element?, Never>? in
            s.finished = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next element, or nil once finished and drained, or when the caller is cancelled.
    /// One consumer at a time.
    func next() async -> Element? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Element?, Never>) in
                let ready: Element?? = state.withLock { s in
                    if !s.buffer.isEmpty { return .some(s.buffer.removeFirst()) }
                    if s.finished || Task.isCancelled { return .some(nil) }
                    precondition(s.waiter == nil, "EventQueue has a single consumer")
                    s.waiter = c
                    return .none
                }
                if let ready { c.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Element?, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
