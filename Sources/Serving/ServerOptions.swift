// How the server is started: Triton's command-line options that concern the core.
import Compute
import Telemetry

/// Where LLM models compute (petrel's --device).
public enum ServingDevice: String, Sendable {
    /// CPU ranks, any number of them (simulated in this process).
    case cpu
    /// One GPU.
    case cuda
}

public struct ServerOptions: Sendable {
    /// Triton's --model-control-mode.
    public enum ModelControlMode: String, Sendable, CaseIterable {
        /// Load every model at start; the repository API cannot load or unload.
        case none
        /// Like none, and rescan the repository every `repositoryPollSeconds`: load new models,
        /// reload changed ones (the old version serves until the new one is ready), unload removed ones.
        case poll
        /// Load only `startupModels`; load and unload through the API.
        case explicit
    }

    /// --model-repository (several allowed; model names must be unique across them).
    public var modelRepositories: [String]
    public var modelControlMode: ModelControlMode
    /// --load-model in explicit mode; "*" loads every model.
    public var startupModels: [String]
    /// --repository-poll-secs.
    public var repositoryPollSeconds: Double
    /// Makes the compute backend of each LLM model: the executable picks the device.
    public var backendFactory: @Sendable () throws -> any ComputeBackend
    /// KV-cache memory of one LLM model, before `kv_cache_free_gpu_mem_fraction` scales it and
    /// `max_tokens_in_paged_kv_cache` caps it (on a GPU the executable passes the memory free
    /// after the weights; on the CPU this is host memory).
    public var kvCacheMemoryBytes: Int
    /// Ranks of each LLM model whose config.pbtxt sets no tensor_parallel_size /
    /// pipeline_parallel_size (--tensor-parallel-size / --pipeline-parallel-size). Above 1, the
    /// model is cut over that many backends, each made by `backendFactory`.
    /// Quantization at load for LLM models whose config.pbtxt does not say (`weight_only_precision`).
    public var quantization: WeightQuantization?
    public var tensorParallelSize = 1
    public var pipelineParallelSize = 1
    /// LLM models pick tokens on the device where the backend can (ModelRunner.deviceSampling);
    /// false: every step's logits come to the host (petrel's --host-sampling).
    public var deviceSampling = true
    /// --strict-readiness: the server is ready only when every model it tried to load is ready.
    public var strictReadiness: Bool
    /// --exit-on-error: `start()` throws when a model fails to load. Off by default (a failed
    /// model is UNAVAILABLE with its reason, the others serve).
    public var exitOnError: Bool
    /// Unloading (and reloading) waits this long for the model's in-flight requests, then cancels them.
    public var unloadTimeoutSeconds: Double
    /// Backends beyond the built-in ones, by the name config.pbtxt gives in `backend:`.
    public var customBackends: [String: CustomBackendFactory]
    public var serverName: String
    public var serverVersion: String
    /// Protocol extensions announced in the server metadata (frontends may add theirs).
    public var extensions: [String]
    /// The server's log (model loads and unloads); the frontends' logging routes change it.
    public var log = ServerLog()
    /// The device LLM models run on: a config that asks for another, or for more than one
    /// rank of it, is refused at load.
    public var device = ServingDevice.cpu

    public init(modelRepositories: [String], modelControlMode: ModelControlMode = .none, startupModels: [String] = [],
                repositoryPollSeconds: Double = 15, backendFactory: @escaping @Sendable () throws -> any ComputeBackend,
                kvCacheMemoryBytes: Int = 512 << 20, strictReadiness: Bool = true, exitOnError: Bool = false,
                unloadTimeoutSeconds: Double = 30, customBackends: [String: CustomBackendFactory] = [:],
                serverName: String = "petrel", serverVersion: String = "0.1.0",
                extensions: [String] = ["model_repository", "model_repository(unload_dependents)", "schedule_policy",
                                        "model_configuration", "binary_tensor_data", "parameters", "statistics", "generate",
                                        "logging"]) {
        self.modelRepositories = modelRepositories
        self.modelControlMode = modelControlMode
        self.startupModels = startupModels
        self.repositoryPollSeconds = repositoryPollSeconds
        self.backendFactory = backendFactory
        self.kvCacheMemoryBytes = kvCacheMemoryBytes
        self.strictReadiness = strictReadiness
        self.exitOnError = exitOnError
        self.unloadTimeoutSeconds = unloadTimeoutSeconds
        self.customBackends = customBackends
        self.serverName = serverName
        self.serverVersion = serverVersion
        self.extensions = extensions
    }
}
