// A fake InferenceService for the gRPC frontend's tests: an identity model, a decoupled model
// streaming N responses, a failing model and a slow model that records cancellation.
import Foundation
@testable import Serving
import Synchronization
import TritonProtos

/// Events the fake records ("infer-cancelled:<id>", "stream-cancelled:<id>", "load:<name>", ...).
final class Probe: Sendable {
    private let events = Mutex<[String]>([])

    func record(_ event: String) { events.withLock { $0.append(event) } }

    var all: [String] { events.withLock { $0 } }

    func contains(_ event: String) -> Bool { events.withLock { $0.contains(event) } }
    func count(of event: String) -> Int { events.withLock { $0.filter { $0 == event }.count } }

    /// Polls until the event is recorded or the timeout passes.
    func wait(for event: String, timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if contains(event) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return contains(event)
    }
}

final class FakeInferenceService: InferenceService {
    let probe = Probe()
    private let ready = Mutex(true)

    func setReady(_ value: Bool) { ready.withLock { $0 = value } }

    static let models: [String: Bool] = [  // name -> decoupled
        "identity": false, "counter": true, "failing": false, "slow": true, "slow_unary": false,
        "delayed": false,
    ]

    func serverMetadata() -> ServerMetadata {
        ServerMetadata(name: "petrel", version: "0.1.0", extensions: ["classification", "model_repository", "logging"])
    }

    func isLive() -> Bool { true }
    func isReady() -> Bool { ready.withLock { $0 } }

    func isModelReady(_ name: String, version: String) -> Bool {
        Self.models[name] != nil && (version.isEmpty || version == "1")
    }

    func check(_ name: String) throws {
        guard Self.models[name] != nil else {
            throw ServingError(.notFound, "Request for unknown model: '\(name)' is not found")
        }
    }

    func modelMetadata(_ name: String, version: String) throws -> ModelMetadata {
        try check(name)
        return ModelMetadata(
            name: name, versions: ["1"], platform: "petrel",
            inputs: [TensorMetadata(name: "INPUT0", datatype: .int32, shape: [-1, 16])],
            outputs: [TensorMetadata(name: "OUTPUT0", datatype: .bytes, shape: [-1])])
    }

    func modelConfig(_ name: String, version: String) throws -> Inference_ModelConfig {
        try check(name)
        var c = Inference_ModelConfig()
        c.name = name
        c.backend = "fake"
        c.maxBatchSize = 8
        c.modelTransactionPolicy.decoupled = Self.models[name]!
        return c
    }

    func modelStatistics(_ name: String, version: String) throws -> [Serving.ModelStatistics] {
        let names = name.isEmpty ? Self.models.keys.sorted() : [name]
        return try names.map { n in
            try check(n)
            var s = Serving.ModelStatistics(name: n, version: "1")
            s.inferenceCount = 7
            s.executionCount = 5
            s.lastInference = 1_700_000_000_000
            s.success.count = 7
            s.success.ns = 7000
            s.queue.count = 7
            s.queue.ns = 700
            return s
        }
    }

    // MARK: inference

    /// Every response of `request` for the streaming route.
    func inferStream(_ request: InferRequest, send: @escaping @Sendable (InferResponse) async throws -> Void) async throws {
        for try await response in try responseStream(request) { try await send(response) }
    }

    func responseStream(_ request: InferRequest) throws -> AsyncThrowingStream<InferResponse, Error> {
        try check(request.modelName)
        let probe = self.probe
        let id = request.id
        func response(_ outputs: [InferTensor], final: Bool) -> InferResponse {
            InferResponse(modelName: request.modelName, modelVersion: "1", id: id, outputs: outputs, isFinal: final)
        }
        switch request.modelName {
        case "counter":
            // N responses with OUT = [i]; then an empty final one, or (parameter
            // "final_with_data") the last data response is the final one.
            guard let n = request.inputs.first(where: { $0.name == "N" }), case .ints(let values) = n.data, let count = values.first else {
                throw ServingError(.badRequest, "counter needs an INT32 input 'N'")
            }
            let finalWithData = request.parameters["final_with_data"] == .bool(true)
            return AsyncThrowingStream { continuation in
                for i in 0..<Int(count) {
                    let last = finalWithData && i == Int(count) - 1
                    continuation.yield(response([InferTensor(name: "OUT", datatype: .int32, shape: [1], data: .ints([Int64(i)]))], final: last))
                }
                if !finalWithData { continuation.yield(response([], final: true)) }
                continuation.finish()
            }
        case "slow":
            // One response every 10 ms until cancelled.
            let (stream, continuation) = AsyncThrowingStream<InferResponse, Error>.makeStream()
            let task = Task {
                var i: Int64 = 0
                while !Task.isCancelled {
                    continuation.yield(response([InferTensor(name: "OUT", datatype: .int64, shape: [1], data: .ints([i]))], final: false))
                    i += 1
                    try? await Task.sleep(for: .milliseconds(10))
                }
                continuation.finish()
            }
            continuation.onTermination = { reason in
                task.cancel()
                if case .cancelled = reason { probe.record("stream-cancelled:\(id)") }
            }
            return stream
        case "failing":
            // One good response, then an error.
            return AsyncThrowingStream { continuation in
                continuation.yield(response([InferTensor(name: "OUT", datatype: .int32, shape: [1], data: .ints([1]))], final: false))
                continuation.finish(throwing: ServingError(.internalError, "failing model broke mid-stream"))
            }
        default:
            let (stream, continuation) = AsyncThrowingStream<InferResponse, Error>.makeStream()
            Task {
                do {
                    continuation.yield(try await self.infer(request))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            return stream
        }
    }

    func infer(_ request: InferRequest) async throws -> InferResponse {
        try check(request.modelName)
        switch request.modelName {
        case "identity":
            // Echoes the inputs (only the requested ones when outputs are named) and the
            // request parameters.
            let outputs = request.requestedOutputs.isEmpty
                ? request.inputs
                : request.inputs.filter { request.requestedOutputs.contains($0.name) }
            return InferResponse(modelName: "identity", modelVersion: "1", id: request.id, outputs: outputs,
                                 parameters: request.parameters)
        case "failing":
            var status = ServingError.Status.badRequest
            if case .int(let code)? = request.parameters["status"], let s = ServingError.Status(rawValue: Int(code)) {
                status = s
            }
            if request.parameters["plain_error"] == .bool(true) {
                struct Oops: Error, CustomStringConvertible { var description: String { "oops" } }
                throw Oops()
            }
            throw ServingError(status, "failing model failed with \(status.rawValue)")
        case "delayed":
            // Answers after 1.5 s (for graceful shutdown).
            probe.record("delayed-started:\(request.id)")
            do { try await Task.sleep(for: .milliseconds(1500)) } catch { probe.record("delayed-cancelled:\(request.id)"); throw error }
            probe.record("delayed-done:\(request.id)")
            return InferResponse(modelName: "delayed", modelVersion: "1", id: request.id, outputs: request.inputs)
        case "slow_unary", "slow":
            do {
                try await Task.sleep(for: .seconds(60))
            } catch {
                probe.record("infer-cancelled:\(request.id)")
                throw error
            }
            return InferResponse(modelName: request.modelName, modelVersion: "1", id: request.id, outputs: [])
        default:
            throw ServingError(.badRequest, "model '\(request.modelName)' is decoupled: use ModelStreamInfer")
        }
    }

    // MARK: repository

    func repositoryIndex(readyOnly: Bool) -> [RepositoryModel] {
        var rows = Self.models.keys.sorted().map { RepositoryModel(name: $0, version: "1", state: "READY", reason: "") }
        if !readyOnly { rows.append(RepositoryModel(name: "broken", version: "1", state: "UNAVAILABLE", reason: "load failed")) }
        return rows
    }

    func loadModel(_ name: String, config: String?) async throws {
        if name == "missing" { throw ServingError(.badRequest, "failed to load 'missing', no version is available") }
        probe.record("load:\(name):\(config ?? "-")")
    }

    func unloadModel(_ name: String, unloadDependents: Bool) async throws {
        try check(name)
        probe.record("unload:\(name):\(unloadDependents)")
    }

    func inputsForGenerate(_ name: String, version: String) throws -> [TensorMetadata] { [] }
}
