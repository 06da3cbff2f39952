// A loaded model version as the server drives it, and the wrapper that runs stateless
// backends (tokenizers, identity, custom) through the dynamic batcher.
import Foundation
import Synchronization
import Tokenization
import TritonProtos

/// Where a model hands its responses: the caller's function, awaited in place (in the spirit
/// of grpc-swift's RPCWriter). The server stamps model name, version and id on the way out.
typealias ResponseSink = @Sendable (InferResponse) async throws -> Void

/// A loaded model version. Requests reach it already checked against its config.
protocol ServedModel: AnyObject, Sendable {
    /// Runs the request, handing every response to `send` in order, the last with isFinal
    /// (non-decoupled models send exactly one), and returns when the request is done.
    /// Responses carry outputs only. Cancelling the calling task cancels the request.
    func execute(_ request: ModelRequest, send: @escaping ResponseSink) async throws
    /// False for models whose executions the server counts (one per request, its batch size
    /// as inferences), as Triton's ensemble scheduler does; true for models that count their
    /// own (the dynamic batcher per batch, the LLM backend per request).
    var countsExecutions: Bool { get }
    /// Accepted requests not yet executing (for nv_inference_pending_request_count).
    var pendingCount: Int { get }
    var llmMetrics: LLMMetrics? { get }
    /// One line on what was loaded (an LLM's weights, where, quantized how), for the server's log.
    var loadSummary: String? { get }
    /// Why the model can no longer serve though it is loaded (its device context is lost), or
    /// nil. Such a version is UNAVAILABLE with this reason until it is loaded anew.
    var failure: String? { get }
    /// The ensemble's stream `key` (RequestContext.streamKey) ended, whether or not its last
    /// chunk came: a model that keeps state per stream (postprocessing's detokenizers) drops it.
    func endStream(_ key: String)
    /// Cancels whatever still runs and releases the model (the server drains first).
    func shutdown() async
}

extension ServedModel {
    func endStream(_ key: String) {}
    var countsExecutions: Bool { true }
    var pendingCount: Int { 0 }
    var llmMetrics: LLMMetrics? { nil }
    var loadSummary: String? { nil }
    var failure: String? { nil }
}

/// A model that tokenizes (for chat templates).
protocol TokenizingModel {
    var textTokenizer: Tokenizer? { get }
}

/// Serializes calls to a sink from concurrent tasks (the items of a batched LLM request), in
/// the order they ask, so a response decided to be the last is also sent last.
final class OrderedSink: Sendable {
    private let sink: ResponseSink
    private let turn = AsyncLock()
    init(_ sink: @escaping ResponseSink) { self.sink = sink }

    /// Runs `decide` and sends what it returns (if anything) while holding the turn.
    func send(_ decide: @Sendable () -> InferResponse?) async throws {
        try await turn.run {
            if let response = decide() { try await sink(response) }
        }
    }
}

/// What a tokenizer model does in an ensemble, for the text routes that go straight to the
/// LLM with its tokenizer and settings.
enum TokenizerRole: Sendable, Equatable {
    case preprocessing(addSpecialTokens: Bool, endID: Int32)
    case postprocessing(skipSpecialTokens: Bool)
}

/// A stateless model: requests queue in a dynamic batcher; instances execute batches.
final class BatchedModel: ServedModel, TokenizingModel {
    let batcher: DynamicBatcher
    let backend: BatchBackend
    let textTokenizer: Tokenizer?
    let tokenizerRole: TokenizerRole?

    init(settings: BatcherSettings, backend: BatchBackend, recorder: StatisticsRecorder, label: String, tokenizer: Tokenizer? = nil,
         tokenizerRole: TokenizerRole? = nil) {
        batcher = DynamicBatcher(settings: settings, backend: backend, recorder: recorder, label: label)
        self.backend = backend
        textTokenizer = tokenizer
        self.tokenizerRole = tokenizerRole
    }

    func execute(_ request: ModelRequest, send: @escaping ResponseSink) async throws {
        let outputs = try await batcher.submit(request)
        try await send(InferResponse(modelName: "", modelVersion: "", id: request.id, outputs: outputs.filter { request.wants($0.name) }))
    }

    func endStream(_ key: String) { backend.endStream(key) }

    func shutdown() async { batcher.stop() }
}

// MARK: custom backends (public)

/// What a custom backend is told about the model it serves.
public struct CustomModelContext: Sendable {
    public var config: Inference_ModelConfig
    /// The model's folder in the repository.
    public var directory: String
    public var version: Int64
}

/// A backend for stateless models, registered in `ServerOptions.customBackends` under the name
/// a config.pbtxt gives in `backend:` (Triton's backend API, in small). Its models run through
/// the dynamic batcher with their instance_group count.
public protocol CustomBackend: Sendable {
    /// One execution over a batch of requests already checked against the config (with
    /// max_batch_size > 0 every tensor carries the batch dimension). `instance` is in
    /// 0..<instance count. Returns one result per request, in order: its output tensors (the
    /// server keeps those the request asked for).
    func execute(_ batch: [InferRequest], instance: Int) -> [Result<[InferTensor], ServingError>]
}

public typealias CustomBackendFactory = @Sendable (CustomModelContext) throws -> any CustomBackend

struct CustomBatchBackend: BatchBackend {
    let backend: any CustomBackend

    func execute(_ batch: [ModelRequest], instance: Int) -> [Result<[InferTensor], Error>] {
        let requests = batch.map {
            InferRequest(modelName: "", id: $0.id, inputs: Array($0.inputs.values).sorted { $0.name < $1.name },
                         requestedOutputs: $0.outputs, parameters: $0.parameters)
        }
        return backend.execute(requests, instance: instance).map { $0.mapError { $0 as Error } }
    }
}

/// A value behind a Mutex, shareable by reference (escaping closures and tasks capture it; a
/// Mutex itself cannot be captured). The one such wrapper in the package.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public func withLock<R, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R {
        try mutex.withLock(body)
    }
    public var current: Value { withLock { $0 } }
}
