// Helpers for the Serving tests: temporary repositories, servers over the CPU
// backend, and tensor builders / readers.
import CPUCompute
import Foundation
import Serving
import TestFixtures
import Testing
import Synchronization

extension Fixtures {
    static var tinyLlama: String { path("tiny-llama") }
}

/// A fresh empty folder under the temporary directory.
func temporaryDirectory(_ label: String = "repo") throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("petrel-serving-\(label)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Writes `<repo>/<name>/config.pbtxt` and the version folders.
func writeModel(_ repo: String, _ name: String, _ config: String, versions: [Int] = [1]) throws {
    let dir = repo + "/" + name
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for v in versions { try FileManager.default.createDirectory(atPath: "\(dir)/\(v)", withIntermediateDirectories: true) }
    try config.write(toFile: dir + "/config.pbtxt", atomically: true, encoding: .utf8)
}

/// The inflight_batcher_llm repository for the tiny Llama (small KV cache, fast).
func tinyRepository(_ customize: (inout RepositoryTemplateOptions) -> Void = { _ in }) throws -> String {
    let repo = try temporaryDirectory()
    var options = RepositoryTemplateOptions()
    options.maxTokensInPagedKVCache = 8192
    options.maxBatchSize = 64
    customize(&options)
    try RepositoryTemplate.write(modelPath: Fixtures.tinyLlama, outputDirectory: repo, options: options)
    return repo
}

func startServer(_ repo: String, mode: ServerOptions.ModelControlMode = .none, startup: [String] = [],
                 _ customize: (inout ServerOptions) -> Void = { _ in }) async throws -> InferenceServer {
    var options = ServerOptions(modelRepositories: [repo], modelControlMode: mode, startupModels: startup,
                                backendFactory: { CPUBackend() }, kvCacheMemoryBytes: 64 << 20)
    customize(&options)
    let server = InferenceServer(options: options)
    try await server.start()
    return server
}

// MARK: tensors

func text(_ name: String, _ value: String) -> InferTensor {
    InferTensor(name: name, datatype: .bytes, shape: [1, 1], data: .bytes([Data(value.utf8)]))
}

func texts(_ name: String, _ values: [String]) -> InferTensor {
    InferTensor(name: name, datatype: .bytes, shape: [1, values.count], data: .bytes(values.map { Data($0.utf8) }))
}

func int32(_ name: String, _ values: [Int]) -> InferTensor {
    InferTensor(name: name, datatype: .int32, shape: [1, values.count], data: .ints(values.map(Int64.init)))
}

func uint64(_ name: String, _ value: UInt64) -> InferTensor {
    InferTensor(name: name, datatype: .uint64, shape: [1, 1], data: .ints([Int64(bitPattern: value)]))
}

func fp32(_ name: String, _ value: Double) -> InferTensor {
    InferTensor(name: name, datatype: .fp32, shape: [1, 1], data: .floats([value]))
}

func bool(_ name: String, _ value: Bool) -> InferTensor {
    InferTensor(name: name, datatype: .bool, shape: [1, 1], data: .bools([value]))
}

extension InferResponse {
    func output(_ name: String) -> InferTensor? { outputs.first { $0.name == name } }

    func text(_ name: String) -> String? {
        guard case .bytes(let v)? = output(name)?.data else { return nil }
        return v.map { String(decoding: $0, as: UTF8.self) }.joined()
    }

    func ints(_ name: String) -> [Int64]? {
        guard case .ints(let v)? = output(name)?.data else { return nil }
        return v
    }
}

/// The ServingError a call throws, or nil.
func servingError(_ body: () async throws -> Void) async -> ServingError? {
    do {
        try await body()
        return nil
    } catch let e as ServingError {
        return e
    } catch {
        Issue.record("expected a ServingError, got \(error)")
        return nil
    }
}

/// Every response of a streamed request.
func collect(_ stream: AsyncThrowingStream<InferResponse, Error>) async throws -> [InferResponse] {
    var out: [InferResponse] = []
    for try await r in stream { out.append(r) }
    return out
}

func ensembleRequest(_ prompt: String, maxTokens: Int, stream: Bool = false, extra: [InferTensor] = [], model: String = "ensemble") -> InferRequest {
    InferRequest(modelName: model, inputs: [text("text_input", prompt), int32("max_tokens", [maxTokens]), bool("stream", stream)] + extra)
}

final class Counter: Sendable {
    private let n = Atomic(0)
    func increment() { n.wrappingAdd(1, ordering: .relaxed) }
    var value: Int { n.load(ordering: .relaxed) }
}

/// Consumes `stream` in a task and cancels that task (as a frontend does when its client goes
/// away) once `count` responses have arrived.
func readThenCancel(_ stream: AsyncThrowingStream<InferResponse, Error>, after count: Int) async throws {
    let seen = Counter()
    let reader = Task {
        for try await _ in stream { seen.increment() }
    }
    while seen.value < count { try await Task.sleep(nanoseconds: 2_000_000) }
    reader.cancel()
    _ = await reader.result
}

/// For tests that read a request as it goes: its responses as a stream, from a task that
/// ending the consumption cancels (the product hands responses to the caller instead).
func responses<T: Sendable>(_ run: @escaping @Sendable (@escaping @Sendable (T) async throws -> Void) async throws -> Void)
    -> AsyncThrowingStream<T, Error> {
    AsyncThrowingStream { continuation in
        let task = Task {
            do {
                try await run { continuation.yield($0) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { termination in
            if case .cancelled = termination { task.cancel() }
        }
    }
}

extension InferenceServer {
    func inferStream(_ request: InferRequest) -> AsyncThrowingStream<InferResponse, Error> {
        responses { send in try await self.inferStream(request, send: send) }
    }
}

extension TextGeneration {
    var deltas: AsyncThrowingStream<TextDelta, Error> {
        responses { send in try await self.run(send: send) }
    }
}
