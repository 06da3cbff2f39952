// RankThreads: one long-lived thread per rank. Every call a rank makes to its backend runs on
// that rank's thread (a GPU backend binds its device and stream to it). Ranks block on each
// other inside collectives, so they need real threads, never a pool narrower than the ranks.
import Foundation

final class RankThreads: Sendable {
    /// A rank's thread waits on `start`, runs `job`, signals `done`; a nil job ends the thread.
    /// Unchecked: `job` is written before `start` is signalled and cleared before `done` is, so
    /// the semaphores order every access.
    private final class Worker: @unchecked Sendable {
        let start = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        var job: (() -> Void)?
    }

    let count: Int
    private let workers: [Worker]
    private let lock = NSLock()

    init(count: Int, name: String) {
        self.count = count
        workers = (0..<count).map { _ in Worker() }
        for (rank, worker) in workers.enumerated() {
            let thread = Thread {
                while true {
                    worker.start.wait()
                    guard let job = worker.job else { return }
                    job()
                    worker.job = nil
                    worker.done.signal()
                }
            }
            thread.name = "\(name)-rank\(rank)"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    deinit {
        for w in workers { w.job = nil; w.start.signal() }
    }

    /// Runs body(rank) on every rank's thread and returns the results in rank order once all
    /// have finished; rethrows the first rank's error. One call at a time (others wait).
    func run<T>(_ body: @escaping (Int) throws -> T) throws -> [T] {
        lock.lock()
        defer { lock.unlock() }
        let results = ResultSlots<T>(count: count)
        for (rank, w) in workers.enumerated() {
            w.job = { results.set(rank, Result { try body(rank) }) }
            w.start.signal()
        }
        for w in workers { w.done.wait() }
        return try results.values.map { try $0!.get() }
    }
}

/// Per-rank result slots. Unchecked: each rank writes only its own slot, and the slots are read
/// after every rank has signalled that it is done.
private final class ResultSlots<T>: @unchecked Sendable {
    private let slots: UnsafeMutablePointer<Result<T, Error>?>
    private let count: Int
    init(count: Int) {
        self.count = count
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil, count: count)
    }
    deinit { slots.deinitialize(count: count); slots.deallocate() }
    func set(_ i: Int, _ r: Result<T, Error>) { slots[i] = r }
    var values: [Result<T, Error>?] { Array(UnsafeBufferPointer(start: slots, count: count)) }
}

/// A blocking first-in first-out queue: how one pipeline stage hands activations to the next.
/// Unchecked: `items` changes only under `condition`'s lock.
final class Handoff<Element>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Element] = []

    func put(_ item: Element) {
        condition.lock()
        items.append(item)
        condition.signal()
        condition.unlock()
    }

    func take() -> Element {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty { condition.wait() }
        return items.removeFirst()
    }
}
