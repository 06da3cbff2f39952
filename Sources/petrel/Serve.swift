// `petrel serve`: Triton's server — KServe v2 over HTTP on 8000 (with the generate extension),
// gRPC on 8001, Prometheus metrics on 8002 — over a Triton model repository. With no
// --model-repository it serves the default model's generated repository.
import ArgumentParser
import Foundation
import GRPCFrontend
import HTTPFrontend
import Serving
import Telemetry

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve a Triton model repository (HTTP 8000, gRPC 8001, metrics 8002).")

    @Option(name: .customLong("model-repository"), help: "Triton model repository (default: PETREL_MODEL_REPOSITORY, else the default model's, generated on first use).")
    var modelRepository: [String] = []
    @Option(name: .customLong("model-control-mode"), help: "none | poll | explicit") var modelControlMode = "none"
    @Option(name: .customLong("load-model"), help: "With explicit control: models to load at start (repeatable).") var loadModels: [String] = []
    @Option(name: .customLong("repository-poll-secs")) var pollSeconds: Double = 15
    @Option(name: .customLong("http-address")) var httpAddress = "0.0.0.0"
    @Option(name: .customLong("http-port")) var httpPort = 8000
    @Option(name: .customLong("grpc-address")) var grpcAddress = "0.0.0.0"
    @Option(name: .customLong("grpc-port")) var grpcPort = 8001
    @Option(name: .customLong("metrics-address")) var metricsAddress = "0.0.0.0"
    @Option(name: .customLong("metrics-port")) var metricsPort = 8002
    @Flag(name: .customLong("no-grpc"), help: "Do not serve gRPC.") var noGRPC = false
    @Option(name: .customLong("http-max-input-size"), help: "Largest HTTP request body in bytes.") var maxInputSize = 64 * 1024 * 1024
    @Option(name: .customLong("http-restricted-api"), help: "API groups protected by a header, as GROUP[,GROUP]:KEY=VALUE (repeatable; groups: model-repository, logging, statistics, health, metadata, inference, shared-memory, trace, model-config).")
    var restrictedAPIs: [String] = []
    @Option(name: .customLong("exit-timeout-secs"), help: "Grace period for in-flight requests at shutdown.") var exitTimeout = 30
    @Option(name: .customLong("kv-cache-bytes"), help: "CPU KV-cache budget per LLM model instance, in bytes.") var kvCacheBytes = 512 << 20
    @Option(name: .customLong("device"), help: "Device for LLM models: cpu or cuda (default: PETREL_DEVICE, else cpu).") var deviceFlag: Device?
    @Option(help: GPUDType.help) var gpuDtype: GPUDType = .f16
    @OptionGroup var cuda: CUDAFlags
    @Flag(name: .customLong("host-sampling"), help: "Bring every step's logits to the host and pick tokens there, also where the device could.")
    var hostSampling = false
    @Option(help: "CPU threads (default: PETREL_THREADS, else all online CPUs).") var threads = 0
    @OptionGroup var parallel: ParallelOptions
    @OptionGroup var quantization: QuantizationOptions
    @Option(name: .customLong("log-verbose"), help: "Verbose log level (1: every HTTP / gRPC request).") var logVerbose: UInt32 = 0
    @Option(name: .customLong("log-info"), help: "Write info lines (true / false).") var logInfo = true
    @Option(name: .customLong("log-warning"), help: "Write warnings (true / false).") var logWarning = true
    @Option(name: .customLong("log-error"), help: "Write errors (true / false).") var logError = true
    @Option(name: .customLong("log-format"), help: "default | ISO8601") var logFormat = "default"

    /// --device, else PETREL_DEVICE, else the CPU.
    var device: Device {
        get throws {
            if let deviceFlag { return deviceFlag }
            guard let name = Environment.current.device else { return .cpu }
            guard let device = Device(rawValue: name) else { throw ValidationError("PETREL_DEVICE must be cpu or cuda, got '\(name)'") }
            return device
        }
    }

    func validate() throws {
        guard ServerOptions.ModelControlMode(rawValue: modelControlMode) != nil else {
            throw ValidationError("--model-control-mode must be none, poll or explicit, got '\(modelControlMode)'")
        }
        for (name, port) in [("--http-port", httpPort), ("--grpc-port", grpcPort), ("--metrics-port", metricsPort)] where !(0...65535).contains(port) {
            throw ValidationError("\(name) must be 0...65535, got \(port)")
        }
        if maxInputSize < 1024 { throw ValidationError("--http-max-input-size must be at least 1024 bytes") }
        for r in restrictedAPIs { _ = try RestrictedAPI(parsing: r) }
        // Sharded serving runs its ranks in this process (CPU); several GPUs need the NCCL path.
        try parallel.check(try device)
        guard LogSettings.Format(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format must be default or ISO8601, got '\(logFormat)'")
        }
    }

    func run() async throws {
        var repositories = modelRepository
        if repositories.isEmpty { repositories = Environment.current.modelRepositories }
        if repositories.isEmpty { repositories = [try DefaultModel.repository()] }
        let device = try self.device, threads = self.threads, gpuDtype = self.gpuDtype, cudaOptions = cuda.options
        let gpuMetrics = GPUMetrics()
        var logSettings = LogSettings()
        logSettings.info = logInfo
        logSettings.warning = logWarning
        logSettings.error = logError
        logSettings.verboseLevel = logVerbose
        logSettings.format = LogSettings.Format(rawValue: logFormat)!
        let serverLog = ServerLog(logSettings)
        var options = ServerOptions(modelRepositories: repositories,
                                    modelControlMode: ServerOptions.ModelControlMode(rawValue: modelControlMode)!,
                                    startupModels: loadModels, repositoryPollSeconds: pollSeconds,
                                    backendFactory: { gpuMetrics.track(try device.makeBackend(threads: threads, gpuDtype: gpuDtype, cuda: cudaOptions)) },
                                    kvCacheMemoryBytes: kvCacheBytes)
        options.tensorParallelSize = parallel.tensorParallelSize
        options.pipelineParallelSize = parallel.pipelineParallelSize
        options.deviceSampling = !hostSampling
        options.quantization = try quantization.value()
        options.log = serverLog
        options.device = device == .cuda ? .cuda : .cpu
        let server = InferenceServer(options: options)
        try await server.start()
        // Triton's start-up tables: the models, then the options.
        let models = server.repositoryIndex(readyOnly: false).map { m in
            [m.name, m.version.isEmpty ? "-" : m.version, m.reason.isEmpty ? m.state : "\(m.state): \(m.reason)"]
        }
        serverLog.info("\n" + textTable(["Model", "Version", "Status"], models))
        let metadata = server.serverMetadata()
        var rows: [[String]] = [["server_id", metadata.name], ["server_version", metadata.version],
                                ["server_extensions", metadata.extensions.joined(separator: " ")]]
        for (i, path) in repositories.enumerated() { rows.append(["model_repository_path[\(i)]", path]) }
        rows += [["model_control_mode", "MODE_" + modelControlMode.uppercased()],
                 ["device", device == .cuda ? "cuda (\(gpuDtype.rawValue))" : "cpu"],
                 ["http_address", "\(httpAddress):\(httpPort)"], ["grpc_address", noGRPC ? "off" : "\(grpcAddress):\(grpcPort)"],
                 ["metrics_address", "\(metricsAddress):\(metricsPort)"], ["exit_timeout", "\(exitTimeout)"],
                 ["kv_cache_bytes (cpu)", "\(kvCacheBytes)"]]
        serverLog.info("\n" + textTable(["Option", "Value"], rows))
        for s in server.loadSummaries() { serverLog.info("\(s.model) v\(s.version): \(s.summary)") }

        let exporter = MetricsExporter(sources: [ServingMetrics(server), ProcessMetrics(), gpuMetrics])
        let http = HTTPServer(service: server,
                              options: HTTPFrontendOptions(host: httpAddress, port: httpPort, maxBodyBytes: maxInputSize,
                                                           restrictedAPIs: try restrictedAPIs.map(RestrictedAPI.init(parsing:)),
                                                           shutdownGracePeriod: .seconds(exitTimeout), log: serverLog),
                              metrics: (MetricsEndpointOptions(host: metricsAddress, port: metricsPort), { exporter.render() }),
                              handleSignals: true)
        let grpc = noGRPC ? nil : GRPCFrontendServer(service: server, options: GRPCFrontendOptions(host: grpcAddress, port: grpcPort,
                                                                                                 shutdownGracePeriod: .seconds(exitTimeout),
                                                                                                 log: serverLog))
        let grace = Double(exitTimeout)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await http.run() }
            if let grpc { group.addTask { try await grpc.run() } }
            group.addTask {
                let ports = await http.boundPorts()
                serverLog.info("HTTP on \(self.httpAddress):\(ports["http"] ?? self.httpPort), metrics on \(self.metricsAddress):\(ports["metrics"] ?? self.metricsPort)/metrics" +
                    (grpc == nil ? "" : ", gRPC on \(self.grpcAddress):\(self.grpcPort)"))
            }
            // The HTTP server handles SIGTERM / SIGINT: when it returns, stop the rest.
            try await group.next()
            try await group.next()
            grpc?.shutdown()
            await server.shutdown(gracePeriod: grace)
            group.cancelAll()
        }
        serverLog.info("shut down")
    }
}

func log(_ message: String) {
    FileHandle.standardError.write("petrel: \(message)\n".data(using: .utf8)!)
}
