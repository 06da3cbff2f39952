// HostCollective: the shared-memory Collective for N simulated ranks in one process (one thread
// per rank). Each rank copies its tensor to host memory, the ranks meet at a barrier, and each
// then adds every rank's copy into its own tensor with its backend, in rank order 0, 1, …, N-1:
// the sum is deterministic and bit-identical on every rank.
import Compute
import Foundation
import Synchronization

/// Makes one group's collectives from its ranks' backends (one backend per rank, rank order).
/// The shared-memory group is `HostCollectiveGroup.make`; an NCCL group (one communicator per
/// GPU, made with ncclCommInitAll in one process) would be another such function.
public typealias CollectiveFactory = ([ComputeBackend]) throws -> [Collective]

/// The state one group's ranks share: a barrier and, per rank, a mailbox of host tensors.
/// Unchecked: `arrived` and `generation` change only under `condition`'s lock.
public final class HostCollectiveGroup: @unchecked Sendable {
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    /// Two sets of mailboxes, used by alternate collective calls: a rank writes set k % 2 while
    /// a slower rank may still read set (k - 1) % 2; no rank can reach call k + 1 (and write set
    /// (k - 1) % 2 again) before every rank has passed call k's barrier, i.e. finished reading.
    private let mailboxes: [[Mailbox]]

    final class Mailbox: Sendable { let tensor = Mutex<HostTensor?>(nil) }

    public init(size: Int) {
        precondition(size >= 1)
        self.size = size
        mailboxes = (0..<2).map { _ in (0..<size).map { _ in Mailbox() } }
    }

    /// One collective per backend, for a group of `backends.count` ranks.
    public static func make(_ backends: [ComputeBackend]) -> [Collective] {
        let group = HostCollectiveGroup(size: backends.count)
        return backends.enumerated().map { HostCollective(rank: $0.offset, group: group, backend: $0.element) }
    }

    func barrier() {
        condition.lock()
        defer { condition.unlock() }
        let mine = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == mine { condition.wait() }
        }
    }

    /// Publishes `tensor` as `rank`'s contribution to call `call`, waits for every rank's, and
    /// returns them in rank order.
    func exchange(_ tensor: HostTensor, rank: Int, call: Int) -> [HostTensor] {
        let set = mailboxes[call & 1]
        set[rank].tensor.withLock { $0 = tensor }
        barrier()
        return set.map { $0.tensor.withLock { $0! } }
    }
}

/// One rank's side of a HostCollectiveGroup, bound to that rank's backend.
public final class HostCollective: Collective {
    public let rank: Int
    public var size: Int { group.size }
    let group: HostCollectiveGroup
    let backend: ComputeBackend
    /// Collective calls made so far by this rank (every rank makes the same sequence).
    private let calls = Atomic<Int>(0)
    /// A part this rank could not upload (takeFault); the rank goes on to every barrier.
    private let fault = Mutex<DeviceFault?>(nil)

    init(rank: Int, group: HostCollectiveGroup, backend: ComputeBackend) {
        self.rank = rank
        self.group = group
        self.backend = backend
    }

    public func allReduceSum(_ x: Tensor) {
        guard size > 1 else { return }
        let parts = exchange(x)
        copy(parts[0], into: x)
        for part in parts.dropFirst() {
            if let t = upload(part) { backend.add(t, into: x) }
        }
    }

    public func allGather(_ x: Tensor, into out: Tensor) {
        precondition(out.rowCount == x.rowCount && out.rowLength == size * x.rowLength, "allGather: out must be (n, size·d)")
        let parts = exchange(x)
        let n = x.rowCount, d = x.rowLength
        let joined = OwnedBuffer(byteCount: n * size * d * 4)
        for (r, part) in parts.enumerated() {
            precondition(part.rowLength == d && part.rowCount == n, "allGather: every rank must pass the same shape")
            for row in 0..<n {
                (joined.mutableBytes.baseAddress! + (row * size + r) * d * 4)
                    .copyMemory(from: part.bytes.baseAddress! + row * d * 4, byteCount: d * 4)
            }
        }
        let host = HostTensor(dtype: .f32, shape: [n, size * d], bytes: UnsafeRawBufferPointer(joined.mutableBytes), owner: joined)
        copy(host, into: out)
    }

    public func barrier() { group.barrier() }

    public func takeFault() -> DeviceFault? {
        fault.withLock { f in
            defer { f = nil }
            return f
        }
    }

    private func exchange(_ x: Tensor) -> [HostTensor] {
        let mine = HostTensor.float32(backend.download(x), shape: [x.rowCount, x.rowLength])
        let call = calls.wrappingAdd(1, ordering: .relaxed).oldValue
        return group.exchange(mine, rank: rank, call: call)
    }

    /// nil, the failure kept as the fault, when the backend cannot take it.
    private func upload(_ host: HostTensor) -> Tensor? {
        do { return try backend.upload(host) } catch {
            fault.withLock { if $0 == nil { $0 = DeviceFault("collective: cannot upload to \(backend.name): \(error)") } }
            return nil
        }
    }

    /// out = host, through the backend (a row gather of every row is its copy operation).
    private func copy(_ host: HostTensor, into out: Tensor) {
        if let t = upload(host) { backend.gatherRows(t, rows: Array(0..<host.rowCount), into: out) }
    }
}
