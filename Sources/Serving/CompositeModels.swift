// Models made of other models: the ensemble platform (a dataflow graph of steps) and the
// BLS-style text model `tensorrt_llm_bls` (tokenizer + the LLM's engines, no tensor hops).
import Foundation
import Tokenization
import TritonProtos

/// A loaded version held by a request: unloading waits until every lease is released.
final class ModelLease: Sendable {
    let name: String
    let version: String
    let model: ServedModel
    let config: Inference_ModelConfig
    let signature: ModelSignature
    let recorder: StatisticsRecorder
    private let onRelease: @Sendable () -> Void
    private let released = Locked(false)

    init(name: String, version: String, model: ServedModel, config: Inference_ModelConfig, signature: ModelSignature,
         recorder: StatisticsRecorder, onRelease: @escaping @Sendable () -> Void) {
        self.name = name
        self.version = version
        self.model = model
        self.config = config
        self.signature = signature
        self.recorder = recorder
        self.onRelease = onRelease
    }

    func release() {
        if released.withLock({ was in defer { was = true }; return !was }) { onRelease() }
    }
}

/// What composite models need from the server.
protocol ModelHost: AnyObject, Sendable {
    /// Runs a request on a model as a client's would run (checks, statistics, leases), handing
    /// its responses to `send` in place.
    func run(_ request: InferRequest, context: RequestContext, send: @escaping ResponseSink) async throws
    /// Holds a ready version of a model; "" is the latest. Throws 404 / 503 as infer would.
    func lease(_ name: String, version: String) throws -> ModelLease
}

// MARK: ensemble

final class EnsembleModel: ServedModel, Sendable {
    struct Step: Sendable {
        var model: String
        /// "" for the latest version (model_version -1).
        var version: String
        /// Step input → ensemble tensor.
        var inputMap: [String: String]
        /// Step output → ensemble tensor.
        var outputMap: [String: String]
        var decoupled: Bool
    }

    let name: String
    let steps: [Step]
    let ensembleInputs: Set<String>
    /// Tensors some step produces.
    let produced: Set<String>
    weak let host: ModelHost?

    /// Checks the graph against the step models' signatures (Triton's load-time checks).
    init(name: String, config: Inference_ModelConfig, source: ConfigSource, host: ModelHost) throws {
        self.name = name
        self.host = host
        let scheduling = config.ensembleScheduling
        guard !scheduling.step.isEmpty else {
            throw source.error(field: "ensemble_scheduling.step", "an ensemble needs at least one step")
        }
        ensembleInputs = Set(config.input.map(\.name))
        var produced: [String: String] = [:]
        var steps: [Step] = []
        for s in scheduling.step {
            let line = source.line(ofString: s.modelName)
            let version = s.modelVersion < 0 ? "" : String(s.modelVersion)
            let lease: ModelLease
            do {
                lease = try host.lease(s.modelName, version: version)
            } catch {
                throw source.error(field: "ensemble_scheduling.step.model_name", line: line,
                                   "step model '\(s.modelName)' is not available: \(error)")
            }
            let sig = lease.signature
            let decoupled = lease.config.modelTransactionPolicy.decoupled
            lease.release()
            for (input, tensor) in s.inputMap {
                guard sig.input(input) != nil else {
                    throw source.error(field: "ensemble_scheduling.step.input_map", line: source.line(ofString: input),
                                       "model '\(s.modelName)' has no input '\(input)'")
                }
                _ = tensor
            }
            for spec in sig.inputs where !spec.optional && s.inputMap[spec.name] == nil {
                throw source.error(field: "ensemble_scheduling.step.input_map", line: line,
                                   "step '\(s.modelName)' does not map its required input '\(spec.name)'")
            }
            for (output, tensor) in s.outputMap {
                guard sig.output(output) != nil else {
                    throw source.error(field: "ensemble_scheduling.step.output_map", line: source.line(ofString: output),
                                       "model '\(s.modelName)' has no output '\(output)'")
                }
                if let other = produced[tensor] {
                    throw source.error(field: "ensemble_scheduling.step.output_map", line: source.line(ofString: tensor),
                                       "tensor '\(tensor)' is produced by both '\(other)' and '\(s.modelName)'")
                }
                if ensembleInputs.contains(tensor) {
                    throw source.error(field: "ensemble_scheduling.step.output_map", line: source.line(ofString: tensor),
                                       "tensor '\(tensor)' is an ensemble input; a step cannot produce it")
                }
                produced[tensor] = s.modelName
            }
            steps.append(Step(model: s.modelName, version: version, inputMap: s.inputMap, outputMap: s.outputMap, decoupled: decoupled))
        }
        for s in steps {
            for tensor in s.inputMap.values where !ensembleInputs.contains(tensor) && produced[tensor] == nil {
                throw source.error(field: "ensemble_scheduling.step.input_map", line: source.line(ofString: tensor),
                                   "tensor '\(tensor)' (input of step '\(s.model)') is neither an ensemble input nor produced by a step")
            }
        }
        for output in config.output where produced[output.name] == nil {
            throw source.error(field: "output", line: source.line(ofString: output.name),
                               "ensemble output '\(output.name)' is not produced by any step")
        }
        // Cycles: every step must become runnable in some order.
        var ready = ensembleInputs, left = Array(steps.indices)
        while !left.isEmpty {
            guard let i = left.firstIndex(where: { steps[$0].inputMap.values.allSatisfy(ready.contains) }) else {
                throw source.error(field: "ensemble_scheduling.step", "the steps form a cycle (step '\(steps[left[0]].model)' can never run)")
            }
            ready.formUnion(steps[left[i]].outputMap.values)
            left.remove(at: i)
        }
        self.steps = steps
        self.produced = Set(produced.keys)
    }

    /// Tensors known so far: present ones, and those a finished step did not produce.
    private struct Flow {
        var tensors: [String: InferTensor]
        var settled: Set<String>
        var parameters: [String: ParameterValue] = [:]
    }

    /// Executions are counted by the server, one per request (Triton's ensemble scheduler).
    var countsExecutions: Bool { false }

    func execute(_ r: ModelRequest, send: @escaping ResponseSink) async throws {
        let flow = Flow(tensors: r.inputs, settled: ensembleInputs)
        let emitted = try await run(pending: Array(steps.indices), flow, request: r, final: true, streamKey: nil, send)
        if !emitted.final {
            try await send(InferResponse(modelName: "", modelVersion: "", id: r.id, outputs: [], isFinal: true))
        }
    }

    /// Tells the models of `steps` that stream `key` ended.
    private func endStream(_ key: String, steps indices: [Int]) {
        for i in indices {
            guard let lease = try? host?.lease(steps[i].model, version: steps[i].version) else { continue }
            lease.model.endStream(key)
            lease.release()
        }
    }

    /// Runs the pending steps as their inputs become ready, each awaited in place. A decoupled
    /// step's every response continues the graph on its own copy of the flow, in order, before
    /// the step's next response is taken; each completed flow is one ensemble response. Returns
    /// whether any and whether a final response went out.
    private func run(pending: [Int], _ flow: Flow, request r: ModelRequest, final: Bool, streamKey: String?,
                     _ out: @escaping ResponseSink) async throws -> (any: Bool, final: Bool) {
        var pending = pending, flow = flow
        while true {
            try Task.checkCancellation()
            let runnable = pending.filter { i in steps[i].inputMap.values.allSatisfy { flow.settled.contains($0) } }
            guard let pick = runnable.first(where: { !steps[$0].decoupled }) ?? runnable.first else { break }
            pending.removeAll { $0 == pick }
            let step = steps[pick]
            var inputs: [InferTensor] = []
            for (input, tensor) in step.inputMap.sorted(by: { $0.key < $1.key }) {
                if let t = flow.tensors[tensor] { inputs.append(t.renamed(input)) }
            }
            let request = InferRequest(modelName: step.model, modelVersion: step.version, id: r.id, inputs: inputs,
                                       requestedOutputs: step.outputMap.keys.sorted(), parameters: r.parameters)
            var context = r.context
            context.streamKey = streamKey
            context.isFinalChunk = final
            let key = streamKey ?? (step.decoupled ? UUID().uuidString : nil)
            let remaining = pending
            // A stream this step opens ends with it, however it ends (a client gone mid-stream
            // sends no last chunk): the steps after it drop what they keep for it.
            defer { if streamKey == nil, let key { endStream(key, steps: remaining) } }
            // What the step's responses did: the flow after a plain step; for a decoupled step,
            // whether any / a final response went out below it and whether it sent a final one.
            struct Outcome { var flow: Flow; var emitted = (any: false, final: false); var sawFinal = false }
            let outcome = Locked(Outcome(flow: flow))
            let before = flow
            do {
                guard let host else { throw ServingError(.unavailable, "the server is shutting down") }
                try await host.run(request, context: context) { [self] response in
                    var next = step.decoupled ? before : outcome.withLock { $0.flow }
                    for t in response.outputs {
                        if let tensor = step.outputMap[t.name] { next.tensors[tensor] = t.renamed(tensor) }
                    }
                    next.settled.formUnion(step.outputMap.values)
                    next.parameters.merge(response.parameters) { $1 }
                    if step.decoupled {
                        let sub = try await run(pending: remaining, next, request: r, final: final && response.isFinal,
                                                streamKey: key, out)
                        outcome.withLock { o in
                            o.sawFinal = o.sawFinal || response.isFinal
                            o.emitted = (o.emitted.any || sub.any, o.emitted.final || sub.final)
                        }
                    } else {
                        outcome.withLock { $0.flow = next }
                    }
                }
            } catch let e as InputError {
                if let name = step.inputMap[e.input], ensembleInputs.contains(name) { throw InputError(name, e.detail) }
                throw ServingError(.badRequest, "in ensemble step '\(step.model)': \(e)")
            } catch let e as ServingError {
                throw ServingError(e.status, "in ensemble step '\(step.model)': \(e.message)")
            }
            let done = outcome.withLock { $0 }
            if step.decoupled {
                var result = done.emitted
                if !done.sawFinal && final && !result.final {
                    // The step ended without a final response: close the flows below it.
                    var last = flow
                    last.settled.formUnion(step.outputMap.values)
                    let sub = try await run(pending: pending, last, request: r, final: true, streamKey: key, out)
                    result = (result.any || sub.any, result.final || sub.final)
                }
                return result
            }
            flow = done.flow
            flow.settled.formUnion(step.outputMap.values)
        }
        let outputs = r.outputs.compactMap { flow.tensors[$0] }
        try await out(InferResponse(modelName: "", modelVersion: "", id: r.id, outputs: outputs, parameters: flow.parameters, isFinal: final))
        return (true, final)
    }

    func shutdown() async {}
}

// MARK: BLS

/// TensorRT-LLM's `tensorrt_llm_bls`: text in, text out, straight through a tokenizer and the
/// LLM model's engines (named by `tensorrt_llm_model_name`, default "tensorrt_llm").
final class BLSModel: ServedModel, TokenizingModel, Sendable {
    let llmName: String
    let tokenizer: Tokenizer?
    let decoupled: Bool
    /// Streamed text_output: the whole text so far (true) or the new text (false).
    let accumulateTokens: Bool
    let addSpecialTokens: Bool
    let skipSpecialTokens: Bool
    weak let host: ModelHost?

    static let handledInputs: Set<String> = [
        "text_input", "max_tokens", "bad_words", "stop_words", "end_id", "pad_id", "top_k", "top_p", "temperature",
        "length_penalty", "repetition_penalty", "min_tokens", "min_length", "presence_penalty", "frequency_penalty",
        "seed", "random_seed", "return_log_probs", "beam_width", "stream", "exclude_input_in_output", "min_p",
        "early_stopping", "num_return_sequences",
    ]

    init(config: Inference_ModelConfig, parameters: ModelParameters, directory: String, tokenizers: TokenizerStore, host: ModelHost) throws {
        llmName = parameters.string("tensorrt_llm_model_name") ?? "tensorrt_llm"
        decoupled = config.modelTransactionPolicy.decoupled
        accumulateTokens = try parameters.bool("accumulate_tokens", default: false)
        addSpecialTokens = try parameters.bool("add_special_tokens", default: true)
        skipSpecialTokens = try parameters.bool("skip_special_tokens", default: true)
        tokenizer = parameters.string(["tokenizer_dir", "tokenizer_path"]) == nil ? nil
            : try loadTokenizer(parameters, directory: directory, store: tokenizers)
        self.host = host
        do {
            let lease = try host.lease(llmName, version: "")
            defer { lease.release() }
            guard lease.model is LLMModel else {
                throw parameters.source.parameterError("tensorrt_llm_model_name", "model '\(llmName)' is not an LLM model")
            }
        } catch let e as ModelLoadError {
            throw e
        } catch {
            throw parameters.source.parameterError("tensorrt_llm_model_name", "model '\(llmName)' is not available: \(error)")
        }
    }

    var textTokenizer: Tokenizer? {
        if let tokenizer { return tokenizer }
        guard let lease = try? host?.lease(llmName, version: "") else { return nil }
        defer { lease.release() }
        return (lease.model as? LLMModel)?.tokenizer
    }

    /// Executions are counted by the server, one per request.
    var countsExecutions: Bool { false }

    func execute(_ r: ModelRequest, send: @escaping ResponseSink) async throws {
        for (name, t) in r.inputs where !Self.handledInputs.contains(name) && !t.isTrivial {
            throw InputError(name, "is not supported by Petrel's BLS model")
        }
        var streaming = try r.bool("stream", item: 0) ?? false
        if streaming && !decoupled {
            throw InputError("stream", "is only supported when the model is decoupled (model_transaction_policy { decoupled: true })")
        }
        streaming = streaming && r.context.allowStreaming
        guard let host else { throw ServingError(.unavailable, "the server is shutting down") }
        let lease = try host.lease(llmName, version: "")
        defer { lease.release() }
        guard let llm = lease.model as? LLMModel else { throw ServingError(.unavailable, "model '\(llmName)' is not an LLM model") }
        try await run(r, llm: llm, recorder: lease.recorder, streaming: streaming, send: send)
    }

    /// Tokenizes, runs the items on the LLM's engines (counted in the LLM model's statistics,
    /// as Triton counts the BLS model's calls to it) and detokenizes, in place.
    private func run(_ r: ModelRequest, llm: LLMModel, recorder: StatisticsRecorder, streaming: Bool,
                     send: @escaping ResponseSink) async throws {
        let tokenizer = self.tokenizer ?? llm.tokenizer
        let exclude = try r.bool("exclude_input_in_output", item: 0) ?? llm.settings.excludeInputInOutput
        var items: [Generation] = []
        for i in 0..<r.batchSize {
            let text = (try r.strings("text_input", item: i) ?? []).joined()
            let prompt = tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
            guard !prompt.isEmpty else { throw InputError("text_input", "encodes to no tokens") }
            var (p, s) = try parseSampling(r, item: i, names: .text, defaultEndID: tokenizer.eosID ?? llm.defaultEndID)
            s.stopSequences = encodeWordList(try r.strings("stop_words", item: i) ?? [], tokenizer)
            s.badWords = encodeWordList(try r.strings("bad_words", item: i) ?? [], tokenizer)
            if p.beamWidth > llm.settings.maxBeamWidth {
                throw InputError("beam_width", "is \(p.beamWidth), more than max_beam_width (\(llm.settings.maxBeamWidth)) of model '\(llmName)'")
            }
            p.topLogProbs = 0
            items.append(Generation(prompt: prompt, parameters: p, stop: s, priority: r.context.priority))
            try llm.checkContext(items[i], maxTokensInput: GenerationInputNames.text.maxTokens)
        }
        let handles = try llm.generate(items, clientID: r.id, timeoutMicroseconds: r.context.timeoutMicroseconds)
        recorder.requestStarted()
        let arrival = StatisticsRecorder.now()
        let b = items.count
        var texts = Array(repeating: "", count: b)
        var tokens = Array(repeating: [Int32](), count: b)
        var logProbs = Array(repeating: [Float](), count: b)
        var cumulative = Array(repeating: Float(0), count: b)
        var reason = "stop"
        // Statistics are recorded before the final response goes out; the final streamed
        // response waits for the items to end, so an item that fails after its last output
        // counts the request as failed.
        var heldFinal: InferResponse?
        func record(_ success: Bool) {
            recorder.execution(requestCount: 1, inferences: b, inputNs: 0, inferNs: StatisticsRecorder.now() - arrival, outputNs: 0)
            recorder.requestFinished(success: success, arrival: arrival)
        }
        do {
            // Items run concurrently in the engine; their outputs are read in turn.
            for (i, handle) in handles.enumerated() {
                var detokenizer = tokenizer.makeDetokenizer(skipSpecialTokens: skipSpecialTokens)
                try await handle.forEach { out in
                    tokens[i] += out.newTokenIDs
                    logProbs[i] += out.logProbs
                    cumulative[i] = Float(out.cumulativeLogProb)
                    if let f = out.finishReason { reason = LLMModel.reasonName(f) }
                    guard streaming else { return }
                    var delta = out.newTokenIDs.reduce(into: "") { $0 += detokenizer.append($1) }
                    let done = out.finishReason != nil
                    if done { delta += detokenizer.finish() }
                    texts[i] += delta
                    let last = done && i == b - 1
                    guard !out.newTokenIDs.isEmpty || last || !delta.isEmpty else { return }
                    let text = accumulateTokens ? texts[i] : delta
                    let outputs = tensorrtLLMOutputs(r.outputs, [GeneratedSequence(chunk: out, batchIndex: i)]) { name in
                        name == "text_output" ? .text(name, [1, 1], [text]) : nil
                    }
                    let response = InferResponse(modelName: "", modelVersion: "", id: r.id, outputs: outputs,
                                                 parameters: last ? Self.parameters(reason, items, tokens) : [:], isFinal: last)
                    if last { heldFinal = response } else { try await send(response) }
                }
            }
            if !streaming {
                let full = zip(items, tokens).map { g, t in
                    tokenizer.decode((exclude ? [] : g.prompt) + t, skipSpecialTokens: skipSpecialTokens)
                }
                let sequences = (0..<b).map { i in
                    GeneratedSequence(items[i], tokens: tokens[i], logProbs: logProbs[i], cumulativeLogProb: cumulative[i],
                                      excludeInput: exclude, batchIndex: i)
                }
                let outputs = tensorrtLLMOutputs(r.outputs, sequences) { name in
                    name == "text_output" ? .text(name, [b, 1], full) : nil
                }
                heldFinal = InferResponse(modelName: "", modelVersion: "", id: r.id, outputs: outputs,
                                          parameters: Self.parameters(reason, items, tokens))
            }
        } catch {
            for h in handles { h.cancel() }
            record(false)
            if let heldFinal { try? await send(heldFinal) }
            throw error
        }
        record(true)
        if let heldFinal { try await send(heldFinal) }
    }

    private static func parameters(_ reason: String, _ items: [Generation], _ tokens: [[Int32]]) -> [String: ParameterValue] {
        ["finish_reason": .string(reason),
         "prompt_tokens": .int(Int64(items.reduce(0) { $0 + $1.prompt.count })),
         "completion_tokens": .int(Int64(tokens.reduce(0) { $0 + $1.count }))]
    }

    func shutdown() async {}
}
