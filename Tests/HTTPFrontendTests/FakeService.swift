// A fake InferenceService standing in for the Serving layer: an identity model, an LLM-like
// decoupled model (text pieces with multi-byte characters), a failing model, a slow decoupled
// model that records cancellation, and a gated model the test releases response by response.
// It validates requests against the model's inputs the way Triton core does.
import Foundation
import Synchronization
@testable import Serving
import TritonProtos

struct FakeModel: Sendable {
    enum Behaviour: Sendable { case identity, llm, failing, slow, gated }
    var name: String
    var platform: String
    var behaviour: Behaviour
    var inputs: [TensorMetadata]
    var outputs: [TensorMetadata]
    var optionalInputs: Set<String> = []
    var decoupled = false
}

/// Observations and knobs shared between a test and the fake.
final class FakeProbe: Sendable {
    let state = Mutex(State())
    struct State {
        var ready = true
        var cancelled: [String] = []  // request ids whose work was cancelled
        var started: [String] = []
        var loads: [(String, String?)] = []
        var unloads: [(String, Bool)] = []
        var lastRequest: InferRequest?
        var lastText: TextGenerationRequest?
    }
    /// Each value releases one more response of the gated model.
    let gate = AsyncStream<Void>.makeStream()

    func release() { gate.continuation.yield() }

    var cancelled: [String] { state.withLock { $0.cancelled } }

    /// Polls until `condition` holds (or about five seconds pass).
    func wait(_ condition: @escaping @Sendable (State) -> Bool) async -> Bool {
        for _ in 0..<500 {
            if state.withLock({ condition($0) }) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }
}

/// The text pieces the llm model streams (multi-byte UTF-8 on purpose).
let llmPieces = ["Machine", " learning", " é", "tudie", " les", " 数据", " 🙂", "!"]

struct FakeService: InferenceService {
    let probe: FakeProbe
    let models: [String: FakeModel]

    init(probe: FakeProbe = FakeProbe()) {
        self.probe = probe
        let m = { (n: String, t: TensorDataType, s: [Int]) in TensorMetadata(name: n, datatype: t, shape: s) }
        let llmInputs = [
            m("text_input", .bytes, [-1, 1]), m("max_tokens", .int32, [-1, 1]), m("bad_words", .bytes, [-1, -1]),
            m("stop_words", .bytes, [-1, -1]), m("pad_id", .int32, [-1, 1]), m("end_id", .int32, [-1, 1]),
            m("stream", .bool, [-1, 1]), m("temperature", .fp32, [-1, 1]),
        ]
        let llmOptional: Set<String> = ["bad_words", "stop_words", "pad_id", "end_id", "stream", "temperature", "max_tokens"]
        let list = [
            FakeModel(name: "identity", platform: "fake_identity", behaviour: .identity,
                      inputs: [m("INPUT0", .int32, [-1]), m("INPUT1", .fp32, [-1, 2]), m("INPUT2", .bytes, [-1]),
                               m("INPUT3", .bool, [-1]), m("INPUT4", .fp16, [-1]), m("INPUT5", .uint64, [-1])],
                      outputs: [m("OUTPUT0", .int32, [-1]), m("OUTPUT1", .fp32, [-1, 2]), m("OUTPUT2", .bytes, [-1]),
                                m("OUTPUT3", .bool, [-1]), m("OUTPUT4", .fp16, [-1]), m("OUTPUT5", .uint64, [-1])],
                      optionalInputs: ["INPUT1", "INPUT2", "INPUT3", "INPUT4", "INPUT5"]),
            FakeModel(name: "ensemble", platform: "ensemble", behaviour: .llm, inputs: llmInputs,
                      outputs: [m("text_output", .bytes, [-1, -1])], optionalInputs: llmOptional, decoupled: true),
            FakeModel(name: "failing", platform: "fake", behaviour: .failing, inputs: llmInputs,
                      outputs: [m("text_output", .bytes, [-1, -1])], optionalInputs: llmOptional, decoupled: true),
            FakeModel(name: "slow", platform: "fake", behaviour: .slow, inputs: llmInputs,
                      outputs: [m("text_output", .bytes, [-1, -1])], optionalInputs: llmOptional, decoupled: true),
            FakeModel(name: "gated", platform: "fake", behaviour: .gated, inputs: llmInputs,
                      outputs: [m("text_output", .bytes, [-1, -1])], optionalInputs: llmOptional, decoupled: true),
        ]
        models = Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }

    func serverMetadata() -> ServerMetadata {
        ServerMetadata(name: "triton", version: "2.59.0", extensions: ["classification", "binary_tensor_data", "statistics"])
    }
    func isLive() -> Bool { true }
    func isReady() -> Bool { probe.state.withLock { $0.ready } }
    func isModelReady(_ name: String, version: String) -> Bool { models[name] != nil && (version.isEmpty || version == "1") }

    func model(_ name: String, _ version: String = "") throws -> FakeModel {
        guard let m = models[name], version.isEmpty || version == "1" else {
            throw ServingError(.notFound, "Request for unknown model: '\(name)' is not found")
        }
        return m
    }

    func modelMetadata(_ name: String, version: String) throws -> ModelMetadata {
        let m = try model(name, version)
        return ModelMetadata(name: m.name, versions: ["1"], platform: m.platform, inputs: m.inputs, outputs: m.outputs)
    }

    func modelConfig(_ name: String, version: String) throws -> Inference_ModelConfig {
        let m = try model(name, version)
        var c = Inference_ModelConfig()
        c.name = m.name
        c.platform = m.platform
        c.maxBatchSize = m.behaviour == .identity ? 0 : 64
        func dataType(_ t: TensorDataType) -> Inference_DataType {
            switch t {
            case .int32: return .typeInt32
            case .fp32: return .typeFp32
            case .bytes: return .typeString
            case .bool: return .typeBool
            case .fp16: return .typeFp16
            case .uint64: return .typeUint64
            default: return .typeInvalid
            }
        }
        let batched = c.maxBatchSize > 0
        c.input = m.inputs.map { t in
            var i = Inference_ModelInput()
            i.name = t.name
            i.dataType = dataType(t.datatype)
            i.dims = (batched ? Array(t.shape.dropFirst()) : t.shape).map(Int64.init)
            i.optional = m.optionalInputs.contains(t.name)
            return i
        }
        c.output = m.outputs.map { t in
            var o = Inference_ModelOutput()
            o.name = t.name
            o.dataType = dataType(t.datatype)
            o.dims = (batched ? Array(t.shape.dropFirst()) : t.shape).map(Int64.init)
            return o
        }
        if m.decoupled { c.modelTransactionPolicy.decoupled = true }
        return c
    }

    func modelStatistics(_ name: String, version: String) throws -> [ModelStatistics] {
        let names = name.isEmpty ? models.keys.sorted() : [try model(name, version).name]
        return names.map { n in
            var s = ModelStatistics(name: n, version: "1")
            s.inferenceCount = 3
            s.executionCount = 2
            s.lastInference = 1_700_000_000_000
            s.success.count = 3
            s.success.ns = 123_456_789
            s.queue.count = 3
            s.queue.ns = 1_000
            return s
        }
    }

    /// Triton core's checks: known inputs, datatypes, shapes, required inputs present.
    func validate(_ request: InferRequest) throws -> FakeModel {
        let m = try model(request.modelName, request.modelVersion)
        let declared = Dictionary(uniqueKeysWithValues: m.inputs.map { ($0.name, $0) })
        for t in request.inputs {
            guard let d = declared[t.name] else {
                throw ServingError(.badRequest, "unexpected inference input '\(t.name)' for model '\(m.name)'")
            }
            guard d.datatype == t.datatype else {
                throw ServingError(.badRequest, "inference input '\(t.name)' data-type is '\(t.datatype.rawValue)', but model '\(m.name)' expects '\(d.datatype.rawValue)'")
            }
            guard d.shape.count == t.shape.count, zip(d.shape, t.shape).allSatisfy({ $0 == -1 || $0 == $1 }) else {
                throw ServingError(.badRequest, "unexpected shape for input '\(t.name)' for model '\(m.name)'. Expected \(d.shape), got \(t.shape)")
            }
        }
        let given = Set(request.inputs.map(\.name))
        let missing = m.inputs.map(\.name).filter { !given.contains($0) && !m.optionalInputs.contains($0) }
        if !missing.isEmpty {
            throw ServingError(.badRequest, "expected \(m.inputs.count - m.optionalInputs.count) inputs but got \(request.inputs.count) inputs for model '\(m.name)'. Got input(s) \(given.sorted()), but missing required input(s) \(missing)")
        }
        if let max = request.inputs.first(where: { $0.name == "max_tokens" }), case .ints(let v) = max.data, v.contains(where: { $0 <= 0 }) {
            throw ServingError(.badRequest, "max_tokens must be positive")
        }
        probe.state.withLock { $0.lastRequest = request }
        return m
    }

    func infer(_ request: InferRequest) async throws -> InferResponse {
        let m = try validate(request)
        switch m.behaviour {
        case .identity:
            let outputs = request.inputs
                .filter { request.requestedOutputs.isEmpty || request.requestedOutputs.contains($0.name.replacingOccurrences(of: "INPUT", with: "OUTPUT")) }
                .map { InferTensor(name: $0.name.replacingOccurrences(of: "INPUT", with: "OUTPUT"), datatype: $0.datatype, shape: $0.shape, data: $0.data) }
            return InferResponse(modelName: m.name, modelVersion: "1", id: request.id, outputs: outputs,
                                 parameters: request.parameters)
        case .llm:
            return InferResponse(modelName: m.name, modelVersion: "1", id: request.id,
                                 outputs: [text(llmPieces.joined())])
        case .failing:
            throw ServingError(.internalError, "model 'failing' exploded")
        case .slow, .gated:
            probe.state.withLock { $0.started.append(request.id) }
            do {
                try await Task.sleep(for: .seconds(30))
            } catch {
                probe.state.withLock { $0.cancelled.append(request.id) }
                throw error
            }
            return InferResponse(modelName: m.name, modelVersion: "1", id: request.id, outputs: [text("late")])
        }
    }

    func text(_ s: String) -> InferTensor {
        InferTensor(name: "text_output", datatype: .bytes, shape: [1, 1], data: .bytes([Data(s.utf8)]))
    }

    func inferStream(_ request: InferRequest, send: @escaping @Sendable (InferResponse) async throws -> Void) async throws {
        for try await response in try responseStream(request) { try await send(response) }
    }

    func responseStream(_ request: InferRequest) throws -> AsyncThrowingStream<InferResponse, Error> {
        let m = try validate(request)
        let probe = self.probe
        let id = request.id
        let (stream, continuation) = AsyncThrowingStream<InferResponse, Error>.makeStream()
        let response = { (s: String, final: Bool) in
            InferResponse(modelName: m.name, modelVersion: "1", id: id, outputs: [self.text(s)], isFinal: final)
        }
        let producer = Task {
            switch m.behaviour {
            case .identity, .llm:
                for (k, piece) in llmPieces.enumerated() { continuation.yield(response(piece, k == llmPieces.count - 1)) }
                continuation.finish()
            case .failing:
                continuation.yield(response("partial", false))
                continuation.finish(throwing: ServingError(.internalError, "model 'failing' exploded mid-stream"))
            case .slow:
                probe.state.withLock { $0.started.append(id) }
                // One response, then a long silence: only noticing the hang-up can end it early.
                for k in 0..<3 {
                    continuation.yield(response("tick\(k) ", false))
                    do { try await Task.sleep(for: .seconds(30)) } catch { return }
                }
                continuation.finish()
            case .gated:
                var gate = probe.gate.stream.makeAsyncIterator()
                for (k, piece) in llmPieces.enumerated() {
                    if k > 0 { guard await gate.next() != nil else { return } }
                    continuation.yield(response(piece, false))
                }
                // A flag-only final response, as a decoupled model sends its last one.
                continuation.yield(InferResponse(modelName: m.name, modelVersion: "1", id: id, outputs: [], isFinal: true))
                continuation.finish()
            }
        }
        continuation.onTermination = { termination in
            if case .cancelled = termination { probe.state.withLock { $0.cancelled.append(id) } }
            producer.cancel()
        }
        return stream
    }

    func repositoryIndex(readyOnly: Bool) -> [RepositoryModel] {
        var index = models.keys.sorted().map { RepositoryModel(name: $0, version: "1", state: "READY", reason: "") }
        if !readyOnly { index.append(RepositoryModel(name: "broken", version: "", state: "UNAVAILABLE", reason: "config.pbtxt:3: unknown field 'foo'")) }
        return index
    }

    func loadModel(_ name: String, config: String?) async throws {
        guard name != "missing" else { throw ServingError(.badRequest, "failed to load 'missing', failed to poll from model repository") }
        probe.state.withLock { $0.loads.append((name, config)) }
    }

    func unloadModel(_ name: String, unloadDependents: Bool) async throws {
        probe.state.withLock { $0.unloads.append((name, unloadDependents)) }
    }

    func inputsForGenerate(_ name: String, version: String) throws -> [TensorMetadata] {
        try model(name, version).inputs
    }
}
