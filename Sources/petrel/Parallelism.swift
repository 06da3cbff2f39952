// `--tensor-parallel-size N --pipeline-parallel-size M` on generate, bench and serve: builds the
// model cut over N × M ranks. On the CPU the ranks are simulated in this process (a backend and
// a thread each, all-reduce through shared memory); several GPUs need the NCCL path (issue 7).
import ArgumentParser
import Checkpoints
import Compute
import Models
import Parallel

struct ParallelOptions: ParsableArguments {
    @Option(name: .customLong("tensor-parallel-size"), help: "Ranks each layer's heads, FFN and vocabulary are split over (Megatron tensor parallelism).")
    var tensorParallelSize = 1
    @Option(name: .customLong("pipeline-parallel-size"), help: "Pipeline stages the layers are split over (micro-batches overlap between stages).")
    var pipelineParallelSize = 1

    var config: ParallelConfig { ParallelConfig(tensorParallelSize: tensorParallelSize, pipelineParallelSize: pipelineParallelSize) }
    var isSharded: Bool { config.rankCount > 1 }

    func validate() throws {
        if tensorParallelSize < 1 || pipelineParallelSize < 1 {
            throw ValidationError("--tensor-parallel-size and --pipeline-parallel-size must be >= 1")
        }
    }

    /// Refuses what this device cannot run yet.
    func check(_ device: Device) throws {
        if device == .cuda && isSharded {
            throw ValidationError("--device cuda with \(config) (\(config.rankCount) GPUs): multi-GPU runs need the NCCL path, " +
                                  "which is not built yet; on --device cpu the ranks are simulated in one process")
        }
    }

    /// The model over one backend (`backend`) or, when sharded, over one new backend per rank.
    func makeModel(config c: TransformerConfig, weights: LlamaWeights, backend: ComputeBackend, device: Device,
                   threads: Int, exact: Bool = false, quantization: WeightQuantization? = nil) throws -> any CausalLM {
        guard isSharded else {
            return try LlamaModel(config: c, weights: weights, backend: backend, quantization: quantization,
                                  progress: ProgressBar.layers(quantization == nil ? "loading weights" : "loading and quantizing weights"))
        }
        try check(device)
        do {
            return try ParallelLlamaModel(config: c, weights: weights, parallel: config, quantization: quantization,
                                          makeBackend: { _ in try device.makeBackend(threads: threads, exactQuantizedMath: exact) })
        } catch let e as ParallelError {
            throw ParallelError("\(config): \(e)")
        }
    }

    /// " × 4 ranks (TP 2 × PP 2)" when sharded, else "".
    var summary: String { isSharded ? " × \(config.rankCount) simulated ranks (\(config))" : "" }
}
