// `--device cpu|cuda`: makes the compute backend a command runs on, and builds models of a
// built-in shape with random weights on it.
import ArgumentParser
import CPUCompute
import Compute
import CUDACompute
import Models

enum Device: String, ExpressibleByArgument, CaseIterable {
    case cpu, cuda

    /// The backend for this device: on the CPU `threads` threads (0: PETREL_THREADS, else all
    /// online CPUs); for cuda libpetrel_cuda.so (PETREL_CUDA_LIB, else next to the executable),
    /// or a clear error.
    func makeBackend(threads: Int = 0, exactQuantizedMath: Bool = false, gpuDtype: GPUDType = .f16,
                     cuda: CUDABackend.Options = CUDABackend.Options()) throws -> ComputeBackend {
        let environment = Environment.current
        switch self {
        case .cpu: return CPUBackend(exactQuantizedMath: exactQuantizedMath, threads: threads > 0 ? threads : environment.threads ?? 0)
        case .cuda: return try CUDABackend(libraryPath: environment.cudaLibrary, elementType: gpuDtype.dtype, options: cuda)
        }
    }
}

/// `--cuda-graphs/--no-cuda-graphs`, `--pdl/--no-pdl` on the commands that take --device: the CUDA
/// backend's kill switches (CUDABackend.Options), both on by default; the CPU backend has none.
struct CUDAFlags: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "With --device cuda: capture decode steps as CUDA graphs and replay them.")
    var cudaGraphs = true
    @Flag(inversion: .prefixedNo, help: "With --device cuda: programmatic dependent launch between a decode step's kernels.")
    var pdl = true

    var options: CUDABackend.Options { CUDABackend.Options(cudaGraphs: cudaGraphs, programmaticDependentLaunch: pdl) }
}

/// `--gpu-dtype f16|bf16`: the element type of weights, activations, logits and the KV cache on
/// the GPU (the kernels' math is fp32 either way). The CPU backend ignores it.
enum GPUDType: String, ExpressibleByArgument, CaseIterable {
    case f16, bf16

    var dtype: DType { self == .f16 ? .f16 : .bf16 }
    static let help: ArgumentHelp = "Element type on the GPU (--device cuda): f16 or bf16 (weights, activations, KV cache; math in fp32)."
}

/// One line saying where a backend runs.
func describe(_ backend: ComputeBackend) -> String {
    if let cpu = backend as? CPUBackend { return "cpu (\(cpu.threadCount) threads)" }
    if let gpu = backend as? CUDABackend {
        return "cuda (\(gpu.deviceName), \(gpu.multiprocessorCount) SMs, \(gpu.totalMemoryBytes >> 30) GiB; \(gpu.libraryPath))"
    }
    return backend.name
}

/// A built-in shape with random weights: made on the device when the backend can (f16 or bf16:
/// the device's own element type; the layers' matrices random codes of `quantization`'s format
/// when given), otherwise generated on the host as `dtype`, quantized when asked, and uploaded.
func makeDummyModel(_ shape: BuiltinConfig, dtype: DType, seed: UInt64, backend: ComputeBackend,
                    quantization: WeightQuantization? = nil) throws -> LlamaModel {
    try LlamaStage.checkFP8(quantization: quantization, weights: [], on: backend)
    if dtype == .f16 || dtype == .bf16, let filler = backend as? RandomWeightFilling {
        return try LlamaModel(config: shape.config, randomWeightsOn: filler, seed: seed, format: quantization?.weightOnlyFormat)
    }
    return try LlamaModel(config: shape.config, weights: .random(config: shape.config, dtype: dtype, seed: seed), backend: backend,
                          quantization: quantization)
}

/// "6.54 GiB (7.02 GB)": a byte count both ways, as nvidia-smi (GiB) and model cards (GB) say it.
func describeBytes(_ bytes: Int) -> String {
    let gib = Double(bytes) / Double(1 << 30), gb = Double(bytes) / 1e9
    return gib >= 1 ? String(format: "%.2f GiB (%.2f GB)", gib, gb) : String(format: "%.1f MiB (%.1f MB)", gib * 1024, gb * 1000)
}
