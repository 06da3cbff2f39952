// ServingAPI: the contract between Triton's core (Serving) and its frontends (HTTP, gRPC).
// Frontends see only these types and the InferenceService protocol; they never touch the
// engine, the tokenizer or checkpoints. Names follow the KServe v2 / Triton protocol.
import Foundation
import TritonProtos

/// KServe v2 tensor datatypes, spelled as on the wire ("INT32", "BYTES", …).
public enum TensorDataType: String, Sendable, CaseIterable, Codable {
    case bool = "BOOL", uint8 = "UINT8", uint16 = "UINT16", uint32 = "UINT32", uint64 = "UINT64"
    case int8 = "INT8", int16 = "INT16", int32 = "INT32", int64 = "INT64"
    case fp16 = "FP16", fp32 = "FP32", fp64 = "FP64", bf16 = "BF16", bytes = "BYTES"

    /// Bytes per element in the binary tensor extension (BYTES elements are length-prefixed).
    public var elementSize: Int? {
        switch self {
        case .bool, .uint8, .int8: return 1
        case .uint16, .int16, .fp16, .bf16: return 2
        case .uint32, .int32, .fp32: return 4
        case .uint64, .int64, .fp64: return 8
        case .bytes: return nil
        }
    }
}

/// A tensor's elements, row-major. Integers and booleans widen to Int64, floats to Double;
/// BYTES elements are raw byte strings (usually UTF-8 text).
public enum TensorData: Sendable, Equatable {
    case bools([Bool])
    case ints([Int64])
    case floats([Double])
    case bytes([Data])

    public var count: Int {
        switch self {
        case .bools(let v): return v.count
        case .ints(let v): return v.count
        case .floats(let v): return v.count
        case .bytes(let v): return v.count
        }
    }
}

public struct InferTensor: Sendable, Equatable {
    public var name: String
    public var datatype: TensorDataType
    public var shape: [Int]
    public var data: TensorData
    /// Per-tensor parameters (e.g. "binary_data_size" on the wire); frontends handle those.
    public init(name: String, datatype: TensorDataType, shape: [Int], data: TensorData) {
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self.data = data
    }
}

/// Request- or response-level parameter values (KServe v2 "parameters").
public enum ParameterValue: Sendable, Equatable {
    case bool(Bool), int(Int64), double(Double), string(String)
}

public struct InferRequest: Sendable {
    public var modelName: String
    /// Empty: the latest ready version.
    public var modelVersion: String
    public var id: String
    public var inputs: [InferTensor]
    /// Empty: every output of the model.
    public var requestedOutputs: [String]
    public var parameters: [String: ParameterValue]
    public init(modelName: String, modelVersion: String = "", id: String = "", inputs: [InferTensor],
                requestedOutputs: [String] = [], parameters: [String: ParameterValue] = [:]) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.id = id
        self.inputs = inputs
        self.requestedOutputs = requestedOutputs
        self.parameters = parameters
    }
}

public struct InferResponse: Sendable {
    public var modelName: String
    public var modelVersion: String
    public var id: String
    public var outputs: [InferTensor]
    public var parameters: [String: ParameterValue]
    /// Decoupled models: true on the last response of a request (triton_final_response).
    public var isFinal: Bool
    public init(modelName: String, modelVersion: String, id: String, outputs: [InferTensor],
                parameters: [String: ParameterValue] = [:], isFinal: Bool = true) {
        self.modelName = modelName
        self.modelVersion = modelVersion
        self.id = id
        self.outputs = outputs
        self.parameters = parameters
        self.isFinal = isFinal
    }
}

/// An error with the HTTP status Triton would answer (gRPC frontends map it to a code).
public struct ServingError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Status: Int, Sendable {
        case badRequest = 400, unauthorized = 401, forbidden = 403, notFound = 404, conflict = 409
        case payloadTooLarge = 413, internalError = 500, notImplemented = 501, unavailable = 503
    }
    public var status: Status
    public var message: String
    public init(_ status: Status, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { message }
}

public struct ServerMetadata: Sendable, Equatable {
    public var name: String
    public var version: String
    public var extensions: [String]
    public init(name: String, version: String, extensions: [String]) {
        self.name = name
        self.version = version
        self.extensions = extensions
    }
}

public struct TensorMetadata: Sendable, Equatable {
    public var name: String
    public var datatype: TensorDataType
    /// -1 for variable dimensions.
    public var shape: [Int]
    public init(name: String, datatype: TensorDataType, shape: [Int]) {
        self.name = name
        self.datatype = datatype
        self.shape = shape
    }
}

public struct ModelMetadata: Sendable, Equatable {
    public var name: String
    public var versions: [String]
    public var platform: String
    public var inputs: [TensorMetadata]
    public var outputs: [TensorMetadata]
    public init(name: String, versions: [String], platform: String, inputs: [TensorMetadata], outputs: [TensorMetadata]) {
        self.name = name
        self.versions = versions
        self.platform = platform
        self.inputs = inputs
        self.outputs = outputs
    }
}

/// One row of the repository index (POST /v2/repository/index).
public struct RepositoryModel: Sendable, Equatable {
    public var name: String
    public var version: String
    /// "READY", "UNAVAILABLE", "LOADING", "UNLOADING".
    public var state: String
    public var reason: String
    public init(name: String, version: String, state: String, reason: String) {
        self.name = name
        self.version = version
        self.state = state
        self.reason = reason
    }
}

/// Triton's per-model statistics (GET /v2/models/{m}/stats), durations in nanoseconds.
public struct ModelStatistics: Sendable, Equatable {
    public struct Duration: Sendable, Equatable {
        public var count: UInt64 = 0
        public var ns: UInt64 = 0
        public init() {}
    }
    public var name: String
    public var version: String
    public var lastInference: UInt64 = 0      // ms since the epoch
    public var inferenceCount: UInt64 = 0     // inferences (batch elements)
    public var executionCount: UInt64 = 0     // model executions
    public var success = Duration()
    public var fail = Duration()
    public var queue = Duration()
    public var computeInput = Duration()
    public var computeInfer = Duration()
    public var computeOutput = Duration()
    public init(name: String, version: String) {
        self.name = name
        self.version = version
    }
}

/// What the frontends call. Implementations are thread-safe.
public protocol InferenceService: Sendable {
    func serverMetadata() -> ServerMetadata
    func isLive() -> Bool
    /// Ready: every model that should be loaded is loaded (and the server is not shutting down).
    func isReady() -> Bool
    func isModelReady(_ name: String, version: String) -> Bool
    func modelMetadata(_ name: String, version: String) throws -> ModelMetadata
    func modelConfig(_ name: String, version: String) throws -> Inference_ModelConfig
    /// Empty name: every model.
    func modelStatistics(_ name: String, version: String) throws -> [ModelStatistics]
    /// A single response (non-decoupled models; decoupled ones answer with their final response
    /// merged if the model allows it, else a 400 telling to use the streaming route).
    func infer(_ request: InferRequest) async throws -> InferResponse
    /// Runs the request, handing every response to `send` as it comes, the last one with
    /// isFinal; returns when the request is done. Cancelling the calling task cancels the
    /// request (freeing its KV blocks). An error thrown by `send` ends the request with it.
    func inferStream(_ request: InferRequest, send: @escaping @Sendable (InferResponse) async throws -> Void) async throws
    func repositoryIndex(readyOnly: Bool) -> [RepositoryModel]
    /// `config`: an optional JSON config override (Triton's load API "config" parameter).
    func loadModel(_ name: String, config: String?) async throws
    func unloadModel(_ name: String, unloadDependents: Bool) async throws
    /// The model's config, to map the generate extension's JSON fields to typed inputs.
    func inputsForGenerate(_ name: String, version: String) throws -> [TensorMetadata]
}

// MARK: - Metrics for Telemetry (Prometheus on 8002)

/// Where Telemetry reads Serving's figures. `InferenceServer` conforms. A snapshot is cheap
/// (a few locks, no waiting on requests) and may be taken at every scrape.
public protocol ServingMetricsSource: Sendable {
    func metricsSnapshot() -> ServingMetricsSnapshot
}

/// A histogram in Prometheus' shape: cumulative `le` buckets, then +Inf (= count).
public struct Histogram: Sendable, Equatable {
    /// Upper bounds, ascending. The +Inf bucket is implicit: its count is `count`.
    public var upperBounds: [Double]
    /// cumulativeCounts[i]: observations <= upperBounds[i].
    public var cumulativeCounts: [UInt64]
    public var count: UInt64 = 0
    public var sum: Double = 0

    public init(upperBounds: [Double]) {
        self.upperBounds = upperBounds
        cumulativeCounts = Array(repeating: 0, count: upperBounds.count)
    }

    public mutating func observe(_ value: Double) {
        count += 1
        sum += value
        for i in upperBounds.indices.reversed() {
            guard value <= upperBounds[i] else { break }
            cumulativeCounts[i] += 1
        }
    }

    /// Adds another histogram with the same bounds (instances of one model are summed).
    public mutating func merge(_ other: Histogram) {
        guard other.upperBounds == upperBounds else { return }
        count += other.count
        sum += other.sum
        for i in cumulativeCounts.indices { cumulativeCounts[i] += other.cumulativeCounts[i] }
    }

    /// Time to first token, seconds (vLLM's buckets).
    public static let timeToFirstTokenBounds: [Double] =
        [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80]
    /// Inter-token latency, seconds (vLLM's buckets).
    public static let interTokenLatencyBounds: [Double] =
        [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80]
    /// Whole request, seconds.
    public static let requestLatencyBounds: [Double] =
        [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680]
    /// Triton's nv_inference_first_response_histogram_ms default buckets.
    public static let firstResponseMillisecondsBounds: [Double] = [100, 500, 2000, 5000]
}

/// The figures of an LLM model (the `tensorrt_llm` kind), summed over its instances. Names in
/// comments are the Prometheus families Triton's TensorRT-LLM backend (or vLLM) exposes.
public struct LLMMetrics: Sendable, Equatable {
    /// Submit → first generated token, per request with at least one token.
    public var timeToFirstTokenSeconds = Histogram(upperBounds: Histogram.timeToFirstTokenBounds)
    /// Gap between consecutive generated tokens (a response with n tokens after a gap g adds n
    /// observations of g / n).
    public var interTokenLatencySeconds = Histogram(upperBounds: Histogram.interTokenLatencyBounds)
    /// Submit → last token.
    public var requestLatencySeconds = Histogram(upperBounds: Histogram.requestLatencyBounds)
    /// Prompt tokens of every accepted request; generated tokens delivered (counters).
    public var promptTokensTotal: UInt64 = 0
    public var generatedTokensTotal: UInt64 = 0
    /// Finished requests by reason: "stop", "length", "cancelled", "error".
    public var finishedRequests: [String: UInt64] = [:]
    /// nv_trt_llm_request_metrics{request_type="active"|"max"|"scheduled"|"waiting"}:
    /// running (admitted, holding KV blocks), the limit, scheduled in the engine's step,
    /// queued in the engine (preempted included).
    public var activeRequests = 0
    public var maxRequests = 0
    public var scheduledRequests = 0
    public var waitingRequests = 0
    public var preemptionsTotal = 0
    /// nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used"|"free"|"max"|"tokens_per"}.
    public var kvBlocksUsed = 0
    public var kvBlocksFree = 0
    public var kvBlocksTotal = 0
    public var kvTokensPerBlock = 0
    /// Prefix reuse: blocks found cached / blocks looked up (enable_kv_cache_reuse).
    public var kvReuseHits = 0
    public var kvReuseQueries = 0
    /// Engine steps (iterations) and tokens fed in the last one.
    public var iterationsTotal = 0
    public var lastIterationTokenCount = 0
    public init() {}
}

/// One model version's figures.
public struct ModelMetricsSnapshot: Sendable, Equatable {
    public var name: String
    public var version: String
    /// Triton's counters and cumulative durations (nv_inference_request_success, _failure,
    /// nv_inference_count, _exec_count, _request_duration_us = success.ns + fail.ns, _queue_duration_us,
    /// _compute_input/_infer/_output_duration_us).
    public var statistics: ModelStatistics
    /// nv_inference_pending_request_count: accepted, not yet executing (batcher queue, engine queue).
    public var pendingRequests: Int
    /// Requests accepted and not yet answered (queued or executing).
    public var inflightRequests: Int
    /// nv_inference_first_response_histogram_ms: arrival → first response, milliseconds.
    public var firstResponseMilliseconds: Histogram
    /// Present for LLM models.
    public var llm: LLMMetrics?

    public init(name: String, version: String, statistics: ModelStatistics, pendingRequests: Int, inflightRequests: Int,
                firstResponseMilliseconds: Histogram, llm: LLMMetrics?) {
        self.name = name
        self.version = version
        self.statistics = statistics
        self.pendingRequests = pendingRequests
        self.inflightRequests = inflightRequests
        self.firstResponseMilliseconds = firstResponseMilliseconds
        self.llm = llm
    }
}

public struct ServingMetricsSnapshot: Sendable, Equatable {
    /// Every loaded model version, ordered by name then version.
    public var models: [ModelMetricsSnapshot]
    public init(models: [ModelMetricsSnapshot]) { self.models = models }
}

// MARK: - Chat templates (for OpenAI-compatible routes)

/// One message of a chat, as OpenAI's `messages` carry it.
public struct ChatTurn: Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// What OpenAI-compatible routes need beyond KServe v2. `InferenceServer` conforms.
public protocol ChatTemplating: Sendable {
    /// `messages` rendered with the chat template of the tokenizer behind `model` (an
    /// ensemble, BLS, preprocessing or LLM model; a template-less tokenizer gets a plain
    /// fallback), the assistant's turn opened when `addGenerationPrompt`. Feed the result as
    /// text_input. Throws 404 / 503 as infer does, 400 when the model has no tokenizer or the
    /// template fails.
    func renderChat(model: String, messages: [ChatTurn], addGenerationPrompt: Bool) throws -> String
}

// MARK: - Text generation (for OpenAI-compatible routes)

/// A model that turns text into text (an ensemble, a BLS model or an LLM model with its
/// tokenizer), as `/v1/models` lists it.
public struct TextModel: Sendable, Equatable {
    public var name: String
    /// When its serving version was loaded, seconds since the epoch.
    public var created: Int64
    /// Prompt plus completion tokens at most.
    public var contextLength: Int
    public init(name: String, created: Int64, contextLength: Int) {
        self.name = name
        self.created = created
        self.contextLength = contextLength
    }
}

/// Sampling and stopping, OpenAI's way: temperature 0 (or top_p 0) is greedy, anything else
/// samples with the given temperature and nucleus. Ranges are checked by `generateText`.
public struct TextGenerationRequest: Sendable, Equatable {
    public enum Prompt: Sendable, Equatable {
        /// Encoded with the model's tokenizer and its add_special_tokens setting.
        case text(String)
        /// Used as they are.
        case tokenIDs([Int32])
        /// Rendered with the tokenizer's chat template (assistant turn opened) and encoded
        /// without adding special tokens (the template writes them); the tokenizer's
        /// end-of-turn tokens also end the completion.
        case chat([ChatTurn])
    }

    public var model: String
    public var prompts: [Prompt]
    /// Choices per prompt: choice `p * choicesPerPrompt + k` is prompt p's k-th.
    public var choicesPerPrompt: Int
    /// Generated tokens at most per choice; nil: up to the context length.
    public var maxTokens: Int?
    public var temperature: Double
    public var topP: Double
    /// Choice k samples with seed + k; nil: a fresh seed per choice.
    public var seed: UInt64?
    public var presencePenalty: Double
    public var frequencyPenalty: Double
    /// Text that ends a choice (matched on the text, across tokens); never part of its text.
    public var stop: [String]
    /// Each generated token's log probability, and that many most likely alternatives.
    public var logProbs: Bool
    public var topLogProbs: Int
    /// vLLM's sampling extensions, which load tools and vLLM clients send: the k most likely
    /// tokens only (0: all), tokens below min_p times the most likely one's probability dropped,
    /// the repetition penalty (1: none), tokens before a stop may end a choice, and generation
    /// past the end-of-sequence token.
    public var topK: Int = 0
    public var minP: Double = 0
    public var repetitionPenalty: Double = 1
    public var minTokens: Int = 0
    public var ignoreEOS: Bool = false

    public init(model: String, prompts: [Prompt], choicesPerPrompt: Int = 1, maxTokens: Int? = nil, temperature: Double = 1,
                topP: Double = 1, seed: UInt64? = nil, presencePenalty: Double = 0, frequencyPenalty: Double = 0,
                stop: [String] = [], logProbs: Bool = false, topLogProbs: Int = 0) {
        self.model = model
        self.prompts = prompts
        self.choicesPerPrompt = choicesPerPrompt
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.stop = stop
        self.logProbs = logProbs
        self.topLogProbs = topLogProbs
    }
}

/// A token as log probabilities show it: its own bytes (out of context; a piece of a
/// multi-byte character is a few bytes of it) and those bytes as text (U+FFFD where they are
/// not UTF-8).
public struct TokenText: Sendable, Equatable {
    public var text: String
    public var bytes: [UInt8]
    public init(text: String, bytes: [UInt8]) {
        self.text = text
        self.bytes = bytes
    }
}

public struct TokenAlternative: Sendable, Equatable {
    public var token: TokenText
    public var logProb: Double
    public init(token: TokenText, logProb: Double) {
        self.token = token
        self.logProb = logProb
    }
}

/// One generated token with its log probability (at the sampling temperature; greedy at 1).
public struct GeneratedToken: Sendable, Equatable {
    public var id: Int32
    public var token: TokenText
    public var logProb: Double
    /// Where the token's text begins in the choice's text, in Unicode scalars.
    public var textOffset: Int
    /// The most likely tokens at this step, most likely first.
    public var top: [TokenAlternative]
    public init(id: Int32, token: TokenText, logProb: Double, textOffset: Int, top: [TokenAlternative]) {
        self.id = id
        self.token = token
        self.logProb = logProb
        self.textOffset = textOffset
        self.top = top
    }
}

/// What one choice added. A choice's deltas arrive in order; its last carries finishReason.
public struct TextDelta: Sendable, Equatable {
    public var choice: Int
    /// New text (text that may begin a stop string is held back until decided).
    public var text: String
    /// Tokens generated for this delta (they count in usage even when their text is held back).
    public var tokenCount: Int
    /// With logProbs: those tokens.
    public var tokens: [GeneratedToken]
    /// "stop" (end of sequence or a stop string) or "length" on the choice's last delta.
    public var finishReason: String?
    public init(choice: Int, text: String, tokenCount: Int, tokens: [GeneratedToken] = [], finishReason: String? = nil) {
        self.choice = choice
        self.text = text
        self.tokenCount = tokenCount
        self.tokens = tokens
        self.finishReason = finishReason
    }
}

/// A submitted text generation: the prompts as the model saw them, and `run`, which reads
/// every choice in place. Dropping it without running it cancels every choice.
public final class TextGeneration: Sendable {
    /// The model's name as requested.
    public let model: String
    /// Per prompt: its token count, and its text (token-id prompts decoded, chats rendered).
    public let promptTokenCounts: [Int]
    public let promptTexts: [String]
    private let body: @Sendable (@escaping @Sendable (TextDelta) async throws -> Void) async throws -> Void
    private let abandon: @Sendable () -> Void
    private let started = Locked(false)

    public init(model: String, promptTokenCounts: [Int], promptTexts: [String],
                run: @escaping @Sendable (@escaping @Sendable (TextDelta) async throws -> Void) async throws -> Void,
                abandon: @escaping @Sendable () -> Void) {
        self.model = model
        self.promptTokenCounts = promptTokenCounts
        self.promptTexts = promptTexts
        body = run
        self.abandon = abandon
    }

    /// Hands the deltas of all choices to `send` as they come (one choice's in order, choices
    /// interleaved) and returns after every choice's last delta. Cancelling the calling task
    /// cancels every choice (freeing KV blocks). Runs once; a second call throws.
    public func run(send: @escaping @Sendable (TextDelta) async throws -> Void) async throws {
        guard started.withLock({ was in defer { was = true }; return !was }) else {
            throw ServingError(.internalError, "a text generation runs once")
        }
        try await body(send)
    }

    deinit {
        if !started.current { abandon() }
    }
}

/// Text in, text out over the same engines and tokenizers as the Triton routes (so greedy
/// text equals `generate` on the same model). `InferenceServer` conforms.
public protocol TextGenerationService: Sendable {
    /// The loaded models `generateText` accepts, by name.
    func textModels() -> [TextModel]
    /// Tokenizes and submits every choice; throws at once for an unknown model or one that
    /// does not generate text (404), bad values or a prompt too long (400), a full queue (503).
    func generateText(_ request: TextGenerationRequest) throws -> TextGeneration
}
