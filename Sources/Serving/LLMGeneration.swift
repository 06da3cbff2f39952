// Generating on an LLM model's engines, shared by the tensor interface (LLMBackend.swift), the
// BLS model and the OpenAI text routes: submit sequences to the least loaded instance, read each
// one's engine stream in place (keeping the model's token metrics), end them early.
import Engine
import Foundation
import Synchronization

/// One sequence to generate.
struct Generation: Sendable {
    var prompt: [Int32]
    var parameters: SamplingParameters
    var stop: StopConditions
    /// The request's Triton "priority" (0: the model's default level); LLMSettings.priorities
    /// maps it to the engine's priority.
    var priority = 0
}

/// A submitted sequence: read its outputs once, in place, with `forEach` (which keeps the
/// model's token metrics as they pass), or end it early.
struct GenerationHandle: Sendable {
    fileprivate let model: LLMModel
    fileprivate let engine: Engine
    fileprivate let id: String
    fileprivate let clientID: String
    /// The engine's stream of this sequence (the only stream between the engine and the caller).
    fileprivate let outputs: AsyncThrowingStream<RequestOutput, Error>
    /// When the request reached the model (its queue duration runs from there).
    fileprivate let arrival: UInt64
    /// Queue timeout, microseconds.
    fileprivate let timeout: UInt64?

    /// Hands every output to `body` as the engine delivers it; returns when the sequence ends.
    /// Cancelling the calling task, or an error from `body`, cancels the sequence.
    func forEach(_ body: (RequestOutput) async throws -> Void) async throws {
        try await model.consume(self, body)
    }

    func cancel() { engine.cancel(id) }
    /// Ends it as finished by a stop matched above the engine (a stop string): finish reason "stop".
    func stop() { engine.cancel(id, reason: .stop) }
}

extension LLMModel {
    /// Submits one sequence to the least loaded instance. Throws at once for a request the
    /// engine refuses (400) or a full queue (503). Read the handle with `forEach`. A queue
    /// timeout (microseconds) cancels a request that has produced nothing when it expires.
    /// `clientID`: the client's request id, for the `stop` input ("" for none). `arrival`: when
    /// the request reached this model (its queue duration runs from there to first scheduling).
    func generate(_ g: Generation, clientID: String, timeoutMicroseconds: UInt64?,
                  arrival: UInt64 = StatisticsRecorder.now()) throws -> GenerationHandle {
        if let bad = g.prompt.first(where: { $0 < 0 || Int($0) >= vocabularySize }) {
            throw InputError("input_ids", "holds token id \(bad), outside the model's vocabulary of \(vocabularySize)")
        }
        var best = 0, bestLoad = Int.max, bestWaiting = 0
        for (i, e) in engines.enumerated() {
            let m = e.metrics
            if m.waitingCount + m.runningCount < bestLoad { best = i; bestLoad = m.waitingCount + m.runningCount; bestWaiting = m.waitingCount }
        }
        let limit = settings.queuePolicy.maxQueueSize
        if limit > 0 && bestWaiting >= limit {
            throw ServingError(.unavailable, "exceeds maximum queue size (\(limit))")
        }
        let engine = engines[best]
        let id = UUID().uuidString
        let request = Request(id: id, prompt: g.prompt, parameters: g.parameters, stop: g.stop,
                              priority: settings.priorities.level(requested: g.priority))
        let outputs: AsyncThrowingStream<RequestOutput, Error>
        clock.watch(id)
        do {
            outputs = try engine.submit(request)
        } catch let e as EngineError {
            _ = clock.take(id)
            throw Self.servingError(e)
        } catch {
            _ = clock.take(id)
            throw error
        }
        if !clientID.isEmpty { running.withLock { $0[clientID, default: []].append((best, id)) } }
        counters.withLock { $0.metrics.promptTokensTotal += UInt64(g.prompt.count) }
        return GenerationHandle(model: self, engine: engine, id: id, clientID: clientID, outputs: outputs, arrival: arrival,
                                timeout: settings.queuePolicy.timeout(requested: timeoutMicroseconds))
    }

    /// Submits every sequence, or none: a refused one withdraws those before it.
    func generate(_ items: [Generation], clientID: String, timeoutMicroseconds: UInt64?,
                  arrival: UInt64 = StatisticsRecorder.now()) throws -> [GenerationHandle] {
        var submitted: [GenerationHandle] = []
        do {
            for g in items {
                submitted.append(try generate(g, clientID: clientID, timeoutMicroseconds: timeoutMicroseconds, arrival: arrival))
            }
        } catch {
            for h in submitted { h.cancel() }
            throw error
        }
        return submitted
    }

    /// `GenerationHandle.forEach`: reads the engine's stream in the caller's task, keeping the
    /// queue duration, time to first token, inter-token latency and finish reasons as outputs
    /// pass. A queue timeout runs as a child task beside the reading, only when one is set.
    fileprivate func consume(_ h: GenerationHandle, _ body: (RequestOutput) async throws -> Void) async throws {
        let begin = StatisticsRecorder.now()
        var last = begin
        var reason: String?
        var queueTaken = false
        let started = Locked(false)
        let timedOut = Locked(false)
        func read() async throws {
            for try await out in h.outputs {
                let now = StatisticsRecorder.now()
                if !queueTaken {
                    queueTaken = true
                    if let scheduled = clock.take(h.id) { recorder.queued(nanoseconds: scheduled &- min(h.arrival, scheduled)) }
                }
                if !out.newTokenIDs.isEmpty {
                    let n = out.newTokenIDs.count
                    let first = started.withLock { was in defer { was = true }; return !was }
                    counters.withLock { c in
                        if first {
                            c.metrics.timeToFirstTokenSeconds.observe(Double(now - begin) / 1e9)
                        } else {
                            let gap = Double(now - last) / 1e9 / Double(n)
                            for _ in 0..<n { c.metrics.interTokenLatencySeconds.observe(gap) }
                        }
                        c.metrics.generatedTokensTotal += UInt64(n)
                    }
                    last = now
                }
                if let r = out.finishReason {
                    reason = Self.reasonName(r)
                    if r == .cancelled && timedOut.current {
                        throw ServingError(.unavailable, "request timeout expired while queued")
                    }
                }
                try await body(out)
            }
        }
        var failure: Error?
        do {
            if let us = h.timeout {
                let engine = h.engine, id = h.id
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        try? await Task.sleep(nanoseconds: us * 1000)
                        guard !Task.isCancelled, !started.current else { return }
                        timedOut.withLock { $0 = true }
                        engine.cancel(id)
                    }
                    try await read()
                    group.cancelAll()
                }
            } else {
                try await read()
            }
            if reason == nil { reason = "cancelled" }   // the caller went away
        } catch let e as EngineError {
            reason = "error"
            failure = Self.servingError(e)
        } catch {
            reason = reason ?? "error"
            failure = error
        }
        if failure != nil || Task.isCancelled { h.cancel() }
        if !queueTaken, let scheduled = clock.take(h.id) { recorder.queued(nanoseconds: scheduled &- min(h.arrival, scheduled)) }
        let end = StatisticsRecorder.now()
        counters.withLock { c in
            c.metrics.finishedRequests[reason ?? "error", default: 0] += 1
            c.metrics.requestLatencySeconds.observe(Double(end - begin) / 1e9)
        }
        if !h.clientID.isEmpty {
            running.withLock { r in
                r[h.clientID]?.removeAll { $0.id == h.id }
                if r[h.clientID]?.isEmpty == true { r[h.clientID] = nil }
            }
        }
        if let failure { throw failure }
    }

    /// A prompt and max_tokens that together exceed the context are refused (400), with vLLM's
    /// message. TensorRT-LLM instead lowers max_tokens to what fits and logs a warning
    /// (LlmRequest::validate); Petrel answers as its OpenAI routes do rather than cut silently.
    func checkContext(_ g: Generation, maxTokensInput: String) throws {
        guard g.prompt.count + g.stop.maxTokens > contextLength else { return }
        throw InputError(maxTokensInput, "is too large: " + Self.contextExceeded(limit: contextLength, promptTokens: g.prompt.count,
                                                                                 maxTokens: g.stop.maxTokens, prompt: "prompt"))
    }

    /// vLLM's words; `prompt` names the prompt ("prompt", or "messages" for a chat).
    static func contextExceeded(limit: Int, promptTokens: Int, maxTokens: Int, prompt: String) -> String {
        "This model's maximum context length is \(limit) tokens. However, you requested \(promptTokens + maxTokens) tokens "
            + "(\(promptTokens) in the \(prompt), \(maxTokens) in the completion). Please reduce the length of the \(prompt) or completion."
    }

    /// TensorRT-LLM's `stop` input: ends the client's requests in flight under this id.
    func stop(clientID: String) {
        guard !clientID.isEmpty else { return }
        let targets = running.withLock { $0[clientID] ?? [] }
        for t in targets { engines[t.engine].cancel(t.id) }
    }

    static func reasonName(_ r: FinishReason) -> String {
        switch r {
        case .stop: "stop"
        case .length: "length"
        case .cancelled: "cancelled"
        case .error: "error"
        }
    }

    static func servingError(_ e: EngineError) -> Error {
        switch e {
        case let .invalidParameter(field, message): InputError(field, message)
        case .requestTooLarge(let m): ServingError(.badRequest, m)
        case .duplicateRequestID: ServingError(.conflict, e.description)
        case .requestFailed: ServingError(.internalError, e.description)
        case .shutDown: ServingError(.unavailable, "the model is unloading")
        }
    }
}
