// RandomWeightFilling: backends that can make random weights where they live, so a built-in
// shape (`--dummy-weights llama-2-7b`) is measured without generating and copying it on the host.

public protocol RandomWeightFilling: ComputeBackend {
    /// A weight of the given shape, values uniform in [-amplitude, amplitude], drawn from `seed`.
    func makeRandomWeight(shape: [Int], seed: UInt64, amplitude: Float) throws -> Tensor
}
