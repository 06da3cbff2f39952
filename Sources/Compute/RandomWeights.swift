// RandomWeightFilling: backends that can make random weights where they live, so a built-in
// shape (`--dummy-weights llama-2-7b`) is measured without generating and copying it on the host.

public protocol RandomWeightFilling: ComputeBackend {
    /// A weight of the given shape, values uniform in [-amplitude, amplitude], drawn from `seed`.
    func makeRandomWeight(shape: [Int], seed: UInt64, amplitude: Float) throws -> Tensor
    /// A weight-only matrix of the given shape (rows, columns) in `format`: random codes, scales
    /// that keep its values near [-amplitude, amplitude] and, when the format has them, zero points
    /// within the code range, drawn from `seed`.
    func makeRandomWeightOnly(shape: [Int], format: WeightOnlyFormat, seed: UInt64, amplitude: Float) throws -> Tensor
}
