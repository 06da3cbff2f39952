// InferenceRPCService: Triton's `inference.GRPCInferenceService` over Serving's
// InferenceService. Semantics follow Triton's gRPC endpoint (grpc_server.cc,
// infer_handler.cc, stream_infer_handler.cc): the same messages, the same in-band stream errors,
// the same `triton_final_response` flags.
import Foundation
import GRPCCore
import Serving
import Synchronization
import Telemetry
import TritonProtos

final class InferenceRPCService: Inference_GRPCInferenceService.SimpleServiceProtocol {
    let service: any InferenceService
    let options: GRPCFrontendOptions
    /// Set when the endpoint starts shutting down.
    let draining: DrainFlag

    init(service: any InferenceService, options: GRPCFrontendOptions, draining: DrainFlag) {
        self.service = service
        self.options = options
        self.draining = draining
    }

    // MARK: health and metadata

    func serverLive(request: Inference_ServerLiveRequest, context: ServerContext) async throws -> Inference_ServerLiveResponse {
        var r = Inference_ServerLiveResponse()
        r.live = service.isLive()
        return r
    }

    func serverReady(request: Inference_ServerReadyRequest, context: ServerContext) async throws -> Inference_ServerReadyResponse {
        var r = Inference_ServerReadyResponse()
        r.ready = service.isReady()
        return r
    }

    func modelReady(request: Inference_ModelReadyRequest, context: ServerContext) async throws -> Inference_ModelReadyResponse {
        var r = Inference_ModelReadyResponse()
        r.ready = service.isModelReady(request.name, version: request.version)
        return r
    }

    func serverMetadata(request: Inference_ServerMetadataRequest, context: ServerContext) async throws -> Inference_ServerMetadataResponse {
        let m = service.serverMetadata()
        var r = Inference_ServerMetadataResponse()
        r.name = m.name
        r.version = m.version
        r.extensions = m.extensions
        return r
    }

    func modelMetadata(request: Inference_ModelMetadataRequest, context: ServerContext) async throws -> Inference_ModelMetadataResponse {
        try mapErrors {
            let m = try service.modelMetadata(request.name, version: request.version)
            var r = Inference_ModelMetadataResponse()
            r.name = m.name
            r.versions = m.versions
            r.platform = m.platform
            r.inputs = m.inputs.map(Self.tensorMetadata)
            r.outputs = m.outputs.map(Self.tensorMetadata)
            return r
        }
    }

    static func tensorMetadata(_ t: TensorMetadata) -> Inference_ModelMetadataResponse.TensorMetadata {
        var m = Inference_ModelMetadataResponse.TensorMetadata()
        m.name = t.name
        m.datatype = t.datatype.rawValue
        m.shape = t.shape.map(Int64.init)
        return m
    }

    func modelConfig(request: Inference_ModelConfigRequest, context: ServerContext) async throws -> Inference_ModelConfigResponse {
        try mapErrors {
            var r = Inference_ModelConfigResponse()
            r.config = try service.modelConfig(request.name, version: request.version)
            return r
        }
    }

    func modelStatistics(request: Inference_ModelStatisticsRequest, context: ServerContext) async throws -> Inference_ModelStatisticsResponse {
        try mapErrors {
            var r = Inference_ModelStatisticsResponse()
            r.modelStats = try service.modelStatistics(request.name, version: request.version).map(Self.statistics)
            return r
        }
    }

    static func statistics(_ s: Serving.ModelStatistics) -> Inference_ModelStatistics {
        func duration(_ d: Serving.ModelStatistics.Duration) -> Inference_StatisticDuration {
            var p = Inference_StatisticDuration()
            p.count = d.count
            p.ns = d.ns
            return p
        }
        var m = Inference_ModelStatistics()
        m.name = s.name
        m.version = s.version
        m.lastInference = s.lastInference
        m.inferenceCount = s.inferenceCount
        m.executionCount = s.executionCount
        var stats = Inference_InferStatistics()
        stats.success = duration(s.success)
        stats.fail = duration(s.fail)
        stats.queue = duration(s.queue)
        stats.computeInput = duration(s.computeInput)
        stats.computeInfer = duration(s.computeInfer)
        stats.computeOutput = duration(s.computeOutput)
        stats.cacheHit = Inference_StatisticDuration()
        stats.cacheMiss = Inference_StatisticDuration()
        m.inferenceStats = stats
        return m
    }

    // MARK: inference

    func modelInfer(request: Inference_ModelInferRequest, context: ServerContext) async throws -> Inference_ModelInferResponse {
        do {
            let inferRequest = try TensorCoding.inferRequest(from: request)
            let service = self.service
            let response = try await cancellingOnRPCCancel { try await service.infer(inferRequest) }
            return try TensorCoding.inferResponse(from: response, request: inferRequest)
        } catch {
            throw ErrorMapping.rpcError(error)
        }
    }

    /// Requests on one stream run concurrently; their responses interleave, each carrying its
    /// request's id. Errors go in-band (`error_message`) and the stream stays open. The stream
    /// ends once the client has closed its side and every request has answered. A client that
    /// cancels or disconnects cancels every request still running (their tasks are cancelled,
    /// which cancels Serving's streams and frees their KV blocks).
    func modelStreamInfer(request: RPCAsyncSequence<Inference_ModelInferRequest, any Error>,
                          response: RPCWriter<Inference_ModelStreamInferResponse>,
                          context: ServerContext) async throws {
        let (outbox, sink) = AsyncStream<Inference_ModelStreamInferResponse>.makeStream()
        let this = self
        do {
            try await cancellingOnRPCCancel {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask {
                        for await message in outbox {
                            try await response.write(message)
                        }
                    }
                    group.addTask {
                        defer { sink.finish() }
                        try await withThrowingDiscardingTaskGroup { requests in
                            for try await message in request {
                                requests.addTask { await this.streamRequest(message, emit: sink) }
                            }
                        }
                    }
                }
            }
        } catch {
            sink.finish()
            throw ErrorMapping.rpcError(error)
        }
    }

    /// One request of a ModelStreamInfer stream.
    ///
    /// Every response carries `triton_final_response` (true on the request's last one). For a
    /// decoupled model a final Serving response without outputs is Triton's "null final
    /// response": it is sent, as an empty response with only id, model and the flag, when the
    /// request asked for it (`triton_enable_empty_final_response: true`, as perf_analyzer and
    /// `tritonclient`'s `enable_empty_final_response=True` do) or
    /// `alwaysSendEmptyFinalResponse` is set; with that, every response with outputs is flagged
    /// false and the request always ends with the empty flagged one.
    func streamRequest(_ message: Inference_ModelInferRequest,
                       emit sink: AsyncStream<Inference_ModelStreamInferResponse>.Continuation) async {
        var emptyFinal = options.alwaysSendEmptyFinalResponse
        if let p = message.parameters["triton_enable_empty_final_response"] {
            guard case .boolParam(let enabled)? = p.parameterChoice else {
                sink.yield(Self.errorResponse(
                    for: message,
                    RequestDecodingError("invalid value type for 'triton_enable_empty_final_response' parameter, expected bool_param.")))
                return
            }
            emptyFinal = emptyFinal || enabled
        }
        do {
            let request = try TensorCoding.inferRequest(from: message)
            // An unknown model fails in inferStream with Serving's own message.
            let decoupled = (try? service.modelConfig(request.modelName, version: request.modelVersion))?
                .modelTransactionPolicy.decoupled ?? false
            // Responses are encoded and queued for the writer as the request hands them over;
            // nothing follows a final one.
            let ended = Locked(false)
            let flagEmptyFinal = emptyFinal
            try await service.inferStream(request) { r in
                guard !ended.current else { return }
                if r.isFinal { ended.withLock { $0 = true } }
                if decoupled && r.isFinal && r.outputs.isEmpty { return }
                var out = Inference_ModelStreamInferResponse()
                out.inferResponse = try TensorCoding.inferResponse(from: r, request: request)
                let last = r.isFinal && !(decoupled && flagEmptyFinal)
                out.inferResponse.parameters["triton_final_response"] = Self.boolParameter(last)
                sink.yield(out)
            }
            if Task.isCancelled { return }
            if decoupled && emptyFinal {
                // Also when Serving's stream ended without a final response.
                sink.yield(Self.emptyFinalResponse(for: message))
            }
        } catch {
            if Task.isCancelled || error is CancellationError { return }
            sink.yield(Self.errorResponse(for: message, error))
        }
    }

    static func boolParameter(_ value: Bool) -> Inference_InferParameter {
        var p = Inference_InferParameter()
        p.boolParam = value
        return p
    }

    static func emptyFinalResponse(for message: Inference_ModelInferRequest) -> Inference_ModelStreamInferResponse {
        var out = Inference_ModelStreamInferResponse()
        out.inferResponse.id = message.id
        out.inferResponse.modelName = message.modelName
        out.inferResponse.modelVersion = message.modelVersion
        out.inferResponse.parameters["triton_final_response"] = boolParameter(true)
        return out
    }

    /// Triton's in-band error: the message, plus the request's id, model and version and
    /// `triton_final_response: true` in `infer_response`.
    static func errorResponse(for message: Inference_ModelInferRequest, _ error: any Error) -> Inference_ModelStreamInferResponse {
        var out = Inference_ModelStreamInferResponse()
        out.errorMessage = ErrorMapping.message(error)
        out.inferResponse.id = message.id
        out.inferResponse.modelName = message.modelName
        out.inferResponse.modelVersion = message.modelVersion
        out.inferResponse.parameters["triton_final_response"] = boolParameter(true)
        return out
    }

    // MARK: repository

    func repositoryIndex(request: Inference_RepositoryIndexRequest, context: ServerContext) async throws -> Inference_RepositoryIndexResponse {
        var r = Inference_RepositoryIndexResponse()
        r.models = service.repositoryIndex(readyOnly: request.ready).map { m in
            var i = Inference_RepositoryIndexResponse.ModelIndex()
            i.name = m.name
            i.version = m.version
            i.state = m.state
            i.reason = m.reason
            return i
        }
        return r
    }

    func repositoryModelLoad(request: Inference_RepositoryModelLoadRequest, context: ServerContext) async throws -> Inference_RepositoryModelLoadResponse {
        do {
            var config: String?
            for (key, value) in request.parameters {
                if key == "config" {
                    switch value.parameterChoice {
                    case .stringParam(let s)?: config = s
                    case .bytesParam(let b)?: config = String(decoding: b, as: UTF8.self)
                    default:
                        throw RequestDecodingError("the 'config' parameter of the load request must be a string (the model configuration as JSON)")
                    }
                } else if key.hasPrefix("file:") {
                    throw RequestDecodingError(
                        "'\(key)': loading model files sent with the load request is not supported by Petrel; place them in the model repository",
                        status: .notImplemented)
                }
            }
            let service = self.service
            let name = request.modelName
            let override = config
            try await cancellingOnRPCCancel { try await service.loadModel(name, config: override) }
            return Inference_RepositoryModelLoadResponse()
        } catch {
            throw ErrorMapping.rpcError(error)
        }
    }

    func repositoryModelUnload(request: Inference_RepositoryModelUnloadRequest, context: ServerContext) async throws -> Inference_RepositoryModelUnloadResponse {
        do {
            var dependents = false
            if let p = request.parameters["unload_dependents"] {
                guard case .boolParam(let b)? = p.parameterChoice else {
                    throw RequestDecodingError("the 'unload_dependents' parameter of the unload request must be a bool")
                }
                dependents = b
            }
            let service = self.service
            let name = request.modelName
            let unloadDependents = dependents
            try await cancellingOnRPCCancel { try await service.unloadModel(name, unloadDependents: unloadDependents) }
            return Inference_RepositoryModelUnloadResponse()
        } catch {
            throw ErrorMapping.rpcError(error)
        }
    }

    // MARK: unsupported: shared memory, tracing

    /// Triton's answers with client shared memory disabled: status lists no region, register and
    /// unregister are UNSUPPORTED (UNIMPLEMENTED).
    static func sharedMemoryUnsupported(_ kind: String) -> RPCError {
        RPCError(code: .unimplemented, message: "\(kind) shared memory is not supported by this server; send tensor data in the request (raw_input_contents or contents)")
    }

    static func unknownRegion(_ kind: String, _ name: String) -> RPCError {
        RPCError(code: .invalidArgument, message: "Unable to find \(kind) shared memory region: '\(name)'")
    }

    func systemSharedMemoryStatus(request: Inference_SystemSharedMemoryStatusRequest, context: ServerContext) async throws -> Inference_SystemSharedMemoryStatusResponse {
        guard request.name.isEmpty else { throw Self.unknownRegion("system", request.name) }
        return Inference_SystemSharedMemoryStatusResponse()
    }

    func systemSharedMemoryRegister(request: Inference_SystemSharedMemoryRegisterRequest, context: ServerContext) async throws -> Inference_SystemSharedMemoryRegisterResponse {
        throw Self.sharedMemoryUnsupported("system")
    }

    func systemSharedMemoryUnregister(request: Inference_SystemSharedMemoryUnregisterRequest, context: ServerContext) async throws -> Inference_SystemSharedMemoryUnregisterResponse {
        throw Self.sharedMemoryUnsupported("system")
    }

    func cudaSharedMemoryStatus(request: Inference_CudaSharedMemoryStatusRequest, context: ServerContext) async throws -> Inference_CudaSharedMemoryStatusResponse {
        guard request.name.isEmpty else { throw Self.unknownRegion("CUDA", request.name) }
        return Inference_CudaSharedMemoryStatusResponse()
    }

    func cudaSharedMemoryRegister(request: Inference_CudaSharedMemoryRegisterRequest, context: ServerContext) async throws -> Inference_CudaSharedMemoryRegisterResponse {
        throw Self.sharedMemoryUnsupported("CUDA")
    }

    func cudaSharedMemoryUnregister(request: Inference_CudaSharedMemoryUnregisterRequest, context: ServerContext) async throws -> Inference_CudaSharedMemoryUnregisterResponse {
        throw Self.sharedMemoryUnsupported("CUDA")
    }

    /// Triton's answer when built without tracing.
    func traceSetting(request: Inference_TraceSettingRequest, context: ServerContext) async throws -> Inference_TraceSettingResponse {
        throw RPCError(code: .unavailable, message: "the server does not support trace")
    }

    // MARK: logging

    /// Triton's rules: each known setting must have its type (bool for log_info / log_warning /
    /// log_error, uint32 for log_verbose_level, string "default" or "ISO8601" for log_format);
    /// log_file cannot be changed over the network; unknown keys are ignored. Unlike Triton, a
    /// request with an invalid setting changes nothing. The answer holds every setting.
    func logSettings(request: Inference_LogSettingsRequest, context: ServerContext) async throws -> Inference_LogSettingsResponse {
        let settings = try options.log.update { next in
            for (key, value) in request.settings {
                let choice = value.parameterChoice
                func bool() throws -> Bool {
                    guard case .boolParam(let b)? = choice else {
                        throw RPCError(code: .invalidArgument, message: "expect boolean for '\(key)'")
                    }
                    return b
                }
                switch key {
                case "log_file":
                    if choice == nil { continue }
                    if case .stringParam(let s)? = choice, s == next.file { continue }
                    throw RPCError(code: .unimplemented, message: "log file location can not be updated through network protocol")
                case "log_info": next.info = try bool()
                case "log_warning": next.warning = try bool()
                case "log_error": next.error = try bool()
                case "log_verbose_level":
                    guard case .uint32Param(let level)? = choice else {
                        throw RPCError(code: .invalidArgument, message: "expect int32 for '\(key)'")
                    }
                    next.verboseLevel = level
                case "log_format":
                    guard case .stringParam(let text)? = choice else {
                        throw RPCError(code: .invalidArgument, message: "expect string for '\(key)'")
                    }
                    guard let format = LogSettings.Format(rawValue: text) else {
                        throw RPCError(code: .invalidArgument, message: "invalid argument for log_format, got: \(text)")
                    }
                    next.format = format
                default:
                    continue
                }
            }
        }
        var r = Inference_LogSettingsResponse()
        func value(_ choice: Inference_LogSettingsResponse.SettingValue.OneOf_ParameterChoice) -> Inference_LogSettingsResponse.SettingValue {
            var v = Inference_LogSettingsResponse.SettingValue()
            v.parameterChoice = choice
            return v
        }
        r.settings["log_file"] = value(.stringParam(settings.file))
        r.settings["log_info"] = value(.boolParam(settings.info))
        r.settings["log_warning"] = value(.boolParam(settings.warning))
        r.settings["log_error"] = value(.boolParam(settings.error))
        r.settings["log_verbose_level"] = value(.uint32Param(settings.verboseLevel))
        r.settings["log_format"] = value(.stringParam(settings.format.rawValue))
        return r
    }

    // MARK: helpers

    func mapErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw ErrorMapping.rpcError(error)
        }
    }

    /// Runs `operation` in a task that is cancelled when gRPC cancels the RPC (the client
    /// cancelled or disconnected, or its deadline passed) or when the calling task is cancelled
    /// (the server stopping for good). grpc-swift signals RPC cancellation through the
    /// context's handle, not by cancelling the handler's task. It also fires that handle on
    /// every in-flight RPC when a graceful shutdown begins (as a hint to wrap up); Petrel lets
    /// them run instead, for the grace period, as Triton does.
    func cancellingOnRPCCancel<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let task = Task { try await operation() }
        let draining = self.draining
        return try await withTaskCancellationHandler {
            try await withRPCCancellationHandler {
                try await task.value
            } onCancelRPC: {
                if !draining.isSet { task.cancel() }
            }
        } onCancel: {
            task.cancel()
        }
    }
}
