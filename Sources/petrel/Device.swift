// `--device cpu|cuda`: makes the compute backend a command runs on, and builds models of a
// built-in shape with random weights on it.
import ArgumentParser
import CPUCompute
import Compute
import CUDACompute
import Models

enum Device: String, ExpressibleByArgument, CaseIterable {
    case cpu, cuda

    /// The backend for this device. For cuda: loads libpetrel_cuda.so (PETREL_CUDA_LIB, else next
    /// to the executable) or throws a clear error.
    func makeBackend(threads: Int = 0, exactQuantizedMath: Bool = false) throws -> ComputeBackend {
        switch self {
        case .cpu: return CPUBackend(exactQuantizedMath: exactQuantizedMath, threads: threads)
        case .cuda: return try CUDABackend()
        }
    }
}

/// One line saying where a backend runs.
func describe(_ backend: ComputeBackend) -> String {
    if let cpu = backend as? CPUBackend { return "cpu (\(cpu.threadCount) threads)" }
    if let gpu = backend as? CUDABackend {
        return "cuda (\(gpu.deviceName), \(gpu.multiprocessorCount) SMs, \(gpu.totalMemoryBytes >> 30) GiB; \(gpu.libraryPath))"
    }
    return backend.name
}

/// A built-in shape with random weights: made on the device when the backend can (fp16 only),
/// otherwise generated on the host as `dtype` and uploaded.
func makeDummyModel(_ shape: BuiltinConfig, dtype: DType, seed: UInt64, backend: ComputeBackend) throws -> LlamaModel {
    if dtype == .f16, let filler = backend as? RandomWeightFilling {
        return try LlamaModel(config: shape.config, randomWeightsOn: filler, seed: seed)
    }
    return try LlamaModel(config: shape.config, weights: .random(config: shape.config, dtype: dtype, seed: seed), backend: backend)
}
