// GPU figures on the metrics endpoint, labelled gpu_uuid: Triton's six from NVML where the driver
// has it (Telemetry/NVML.swift), else nv_gpu_memory_total_bytes and nv_gpu_memory_used_bytes for
// the CUDA backends the served models run on.
// The backends are held weakly: an unloaded model's GPU memory is not kept alive by metrics.
import CUDACompute
import Compute
import Synchronization
import Telemetry

final class GPUMetrics: MetricsSource {
    private final class Entry: Sendable {
        weak let backend: CUDABackend?
        init(_ backend: CUDABackend) { self.backend = backend }
    }
    private let entries = Mutex<[Entry]>([])

    /// Remembers `backend` if it is a GPU backend; returns it unchanged.
    func track(_ backend: ComputeBackend) -> ComputeBackend {
        if let gpu = backend as? CUDABackend {
            let e = Entry(gpu)
            entries.withLock { list in
                list.removeAll { $0.backend == nil }
                list.append(e)
            }
        }
        return backend
    }

    /// The driver's NVML where there is one: then every GPU's figures come from it (Triton's six),
    /// else only the memory of the GPUs the served models use, from their backends.
    private let nvml = NVMLMetrics.load()

    func collect(into registry: MetricsRegistry) {
        if let nvml {
            nvml.collect(into: registry)
            return
        }
        let live = entries.withLock { $0.compactMap(\.backend) }
        var seen = Set<String>()
        for gpu in live where seen.insert(gpu.uuid).inserted {
            guard let m = gpu.memoryInfo() else { continue }
            let labels: Labels = ["gpu_uuid": gpu.uuid]
            registry.gauge("nv_gpu_memory_total_bytes", help: "GPU total memory, in bytes").set(labels, Double(m.total))
            registry.gauge("nv_gpu_memory_used_bytes", help: "GPU used memory, in bytes").set(labels, Double(m.total - m.free))
        }
    }
}
