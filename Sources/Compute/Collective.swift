// Collective: the communication a tensor-parallel forward pass needs between the ranks of one
// group (Models calls it after the row-parallel matmuls; Parallel's HostCollective is the
// shared-memory one, an NCCL one would live beside its backend). One object per rank; every rank
// of the group calls the same operations in the same order, each from its own thread (a rank's
// thread also makes all of its backend's calls: on a GPU that thread owns the device's stream).

public protocol Collective: AnyObject, Sendable {
    /// This rank's index in the group, 0..<size.
    var rank: Int { get }
    var size: Int { get }
    /// x (a float activation of this rank's backend) becomes the elementwise sum of every
    /// rank's x, in place. Every rank ends with bit-identical values.
    func allReduceSum(_ x: Tensor)
    /// out (n, size·d) = every rank's x (n, d) side by side along the last dimension, in rank
    /// order; every rank passes the same d.
    func allGather(_ x: Tensor, into out: Tensor)
    /// Returns once every rank of the group has called it.
    func barrier()
    /// The first failure of this rank's side since the last call (ComputeBackend.takeFault's
    /// contract): a collective that fails keeps its fault and goes on, so no rank waits forever.
    func takeFault() -> DeviceFault?
}

extension Collective {
    public func takeFault() -> DeviceFault? { nil }
}
