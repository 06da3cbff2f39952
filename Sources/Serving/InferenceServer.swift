// InferenceServer: Triton's core in one object. It scans the model repository, loads and
// unloads models (control modes none / poll / explicit), routes requests to loaded versions
// with Triton's input checks, keeps per-version statistics, and shuts down gracefully.
// Frontends drive it through `InferenceService`; Telemetry reads `metricsSnapshot()`.
import Dispatch
import Engine
import Foundation
import Synchronization
import Tokenization
import TritonProtos

public final class InferenceServer: InferenceService, ServingMetricsSource, ChatTemplating, ModelHost, Sendable {
    public let options: ServerOptions
    let tokenizers = TokenizerStore()
    let lifecycle = AsyncLock()
    let registry = Locked(Registry())

    /// A loaded version.
    final class Slot: Sendable {
        let name: String
        let version: Int64
        let model: ServedModel
        let config: Inference_ModelConfig
        let signature: ModelSignature
        let recorder: StatisticsRecorder
        let dependencies: [String]
        /// When this version was loaded, seconds since the epoch.
        let loadedAt = Int64(Date().timeIntervalSince1970)
        private let usage = Mutex(Usage())

        /// Requests holding the version, whether it takes new ones, and who waits for it to be idle.
        private struct Usage {
            var inflight = 0
            var ready = true
            var idleWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
            /// Waiters cancelled before they got in line (they must not wait).
            var cancelledWaiters: Set<Int> = []
            var nextWaiter = 0
        }

        /// False once the version is unloading: it takes no new requests.
        var ready: Bool { usage.withLock { $0.ready } }
        /// Why the loaded version cannot serve (ServedModel.failure): it takes no new requests.
        var failure: String? { model.failure }
        /// Ready, and not failed.
        var serving: Bool { ready && failure == nil }
        func stopTakingRequests() { usage.withLock { $0.ready = false } }
        func acquire() { usage.withLock { $0.inflight += 1 } }
        func release() {
            let waiters = usage.withLock { u -> [CheckedContinuation<Void, Never>] in
                u.inflight -= 1
                guard u.inflight == 0 else { return [] }
                defer { u.idleWaiters = [:] }
                return Array(u.idleWaiters.values)
            }
            for w in waiters { w.resume() }
        }

        /// Returns once no request holds the version, or when the calling task is cancelled.
        func idle() async {
            let id = usage.withLock { u -> Int in
                defer { u.nextWaiter += 1 }
                return u.nextWaiter
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let waits = usage.withLock { u -> Bool in
                        if u.inflight == 0 || u.cancelledWaiters.remove(id) != nil { return false }
                        u.idleWaiters[id] = c
                        return true
                    }
                    if !waits { c.resume() }
                }
            } onCancel: {
                let waiter = usage.withLock { u -> CheckedContinuation<Void, Never>? in
                    if let w = u.idleWaiters.removeValue(forKey: id) { return w }
                    u.cancelledWaiters.insert(id)
                    return nil
                }
                waiter?.resume()
            }
        }

        init(name: String, version: Int64, model: ServedModel, config: Inference_ModelConfig, recorder: StatisticsRecorder, dependencies: [String]) {
            self.name = name
            self.version = version
            self.model = model
            self.config = config
            signature = ModelSignature(config)
            self.recorder = recorder
            self.dependencies = dependencies
        }
    }

    struct Record {
        var name: String
        var state = "UNAVAILABLE"
        var reason = "not loaded"
        /// Loaded versions (ready, or unloading while they drain).
        var slots: [Int64: Slot] = [:]
        var fingerprint: String?
        /// The server means this model to be loaded (strict readiness counts it).
        var wanted = false
    }

    struct Registry {
        var records: [String: Record] = [:]
        var started = false
        var shuttingDown = false
        var pollTask: Task<Void, Never>?
    }

    public init(options: ServerOptions) {
        self.options = options
    }

    // MARK: starting and stopping

    /// Scans the repositories and loads the models the control mode asks for (explicit: the
    /// startup models). A model that fails is UNAVAILABLE with its reason; the call throws only
    /// when a repository is unreadable, or with exitOnError when a model failed.
    public func start() async throws {
        let (entries, duplicates) = try ModelRepositoryScanner.scan(options.modelRepositories)
        var names: [String]
        if options.modelControlMode == .explicit {
            names = options.startupModels.contains("*") ? Array(entries.keys) : options.startupModels
        } else {
            names = Array(entries.keys)
        }
        names = Array(Set(names)).sorted()
        var failures: [String] = []
        await lifecycle.run {
            for (name, reason) in duplicates { setFailed(name, reason, fingerprint: nil) }
            for name in names where duplicates[name] == nil {
                do {
                    try await loadLocked(name, override: nil, chain: [], entries: entries)
                } catch {
                    failures.append("\(Self.publicError(error))")
                }
            }
        }
        registry.withLock { $0.started = true }
        if options.modelControlMode == .poll {
            let interval = max(options.repositoryPollSeconds, 0.05)
            let task = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
                    guard let self, !Task.isCancelled else { return }
                    await self.poll()
                }
            }
            registry.withLock { $0.pollTask = task }
        }
        if options.exitOnError && !failures.isEmpty {
            throw ServingError(.internalError, "models failed to load: " + failures.joined(separator: "; "))
        }
    }

    /// Stops accepting requests (503), lets in-flight ones finish for up to `gracePeriod`
    /// seconds, then cancels the rest and releases every model.
    public func shutdown(gracePeriod: Double) async {
        let poll = registry.withLock { r -> Task<Void, Never>? in
            r.shuttingDown = true
            defer { r.pollTask = nil }
            return r.pollTask
        }
        poll?.cancel()
        let slots = registry.withLock { $0.records.values.flatMap { $0.slots.values } }
        await drain(slots, timeout: gracePeriod)
        for slot in slots { await slot.model.shutdown() }
    }

    /// Waits until no request holds the slots, for at most `timeout` seconds.
    func drain(_ slots: [Slot], timeout: Double) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for slot in slots { await slot.idle() } }
            group.addTask { try? await Task.sleep(nanoseconds: UInt64(max(timeout, 0) * 1e9)) }
            await group.next()
            group.cancelAll()
        }
    }

    // MARK: routing

    /// The ready version `version` ("" or "-1": the latest) of `name`.
    func readySlot(_ r: Registry, _ name: String, _ version: String) throws -> Slot {
        if r.shuttingDown { throw ServingError(.unavailable, "the server is shutting down") }
        guard let rec = r.records[name] else {
            throw ServingError(.notFound, "unknown model: '\(name)' is not found")
        }
        if version.isEmpty || version == "-1" {
            guard let slot = rec.slots.values.filter(\.ready).max(by: { $0.version < $1.version }) else {
                throw ServingError(.unavailable, "model '\(name)' is not ready\(rec.reason.isEmpty ? "" : ": \(rec.reason)")")
            }
            if let failure = slot.failure { throw ServingError(.unavailable, "model '\(name)' is not ready: \(failure)") }
            return slot
        }
        guard let v = Int64(version) else { throw ServingError(.badRequest, "model version '\(version)' is not a number") }
        guard let slot = rec.slots[v] else {
            throw ServingError(.notFound, "unknown version \(version) of model '\(name)'")
        }
        guard slot.ready else { throw ServingError(.unavailable, "version \(version) of model '\(name)' is unloading") }
        if let failure = slot.failure { throw ServingError(.unavailable, "version \(version) of model '\(name)' is not ready: \(failure)") }
        return slot
    }

    func lease(_ name: String, version: String) throws -> ModelLease {
        let slot = try registry.withLock { r -> Slot in
            let slot = try readySlot(r, name, version)
            slot.acquire()
            return slot
        }
        return ModelLease(name: name, version: String(slot.version), model: slot.model, config: slot.config,
                          signature: slot.signature, recorder: slot.recorder) {
            slot.release()
        }
    }

    func run(_ request: InferRequest, context: RequestContext, send: @escaping ResponseSink) async throws {
        try await run(request, context: context, publicErrors: false, send: send)
    }

    /// The one place a request's statistics are kept: it holds the version, checks the request,
    /// awaits the model, and counts the request (and, for models that do not count their own, the
    /// execution) before the final response reaches the caller, so a client that reads the
    /// statistics after its last response sees its own request counted. The final response is
    /// held until the model returns: a request that fails after its final response (an engine
    /// error ends with a last output, then throws) counts as a failure, and its caller still
    /// gets that response first.
    private func run(_ request: InferRequest, context: RequestContext, publicErrors: Bool, send: @escaping ResponseSink) async throws {
        var context = context
        context.arrivalNanoseconds = StatisticsRecorder.now()
        let lease = try self.lease(request.modelName, version: request.modelVersion)
        defer { lease.release() }
        let recorder = lease.recorder
        let arrival = context.arrivalNanoseconds
        recorder.requestStarted()
        let checked: ModelRequest
        do {
            checked = try lease.signature.check(request, modelName: lease.name, context: context)
        } catch {
            recorder.requestFinished(success: false, arrival: arrival)
            throw error
        }
        let name = lease.name, version = lease.version, id = request.id
        let held = Locked<(first: Bool, final: InferResponse?)>((true, nil))
        do {
            try await lease.model.execute(checked) { response in
                var response = response
                response.modelName = name
                response.modelVersion = version
                response.id = id
                let (first, previous) = held.withLock { h -> (Bool, InferResponse?) in
                    defer { h.first = false }
                    let previous = h.final
                    h.final = response.isFinal ? response : nil
                    return (h.first, previous)
                }
                if first { recorder.firstResponse(arrival: arrival) }
                if let previous { try await send(previous) }
                if !response.isFinal { try await send(response) }
            }
        } catch {
            recorder.requestFinished(success: false, arrival: arrival)
            if let final = held.withLock({ $0.final }) { try? await send(final) }
            throw publicErrors ? Self.publicError(error) : error
        }
        let success = !Task.isCancelled
        if success && !lease.model.countsExecutions {
            recorder.execution(requestCount: 1, inferences: checked.batchSize, inputNs: 0,
                               inferNs: StatisticsRecorder.now() &- arrival, outputNs: 0)
        }
        recorder.requestFinished(success: success, arrival: arrival)
        if let final = held.withLock({ $0.final }) { try await send(final) }
        if !success { throw ServingError(.unavailable, "the request was cancelled") }
    }

    /// Request-level parameters Triton reads: "timeout" (microseconds), "priority".
    private func context(for request: InferRequest, streaming: Bool) -> RequestContext {
        var c = RequestContext()
        c.allowStreaming = streaming
        if case .int(let t)? = request.parameters["timeout"], t > 0 { c.timeoutMicroseconds = UInt64(t) }
        if case .int(let p)? = request.parameters["priority"], p > 0 { c.priority = Int(clamping: p) }
        return c
    }

    /// The error a frontend reports: a ServingError with Triton's status.
    static func publicError(_ error: Error) -> ServingError {
        switch error {
        case let e as ServingError: return e
        case let e as InputError: return ServingError(.badRequest, e.description)
        case let e as ModelLoadError: return ServingError(.badRequest, e.description)
        case let e as EngineError:
            if case .invalidParameter(let field, let message) = e { return ServingError(.badRequest, InputError(field, message).description) }
            return ServingError(e == .shutDown ? .unavailable : .badRequest, e.description)
        case is CancellationError: return ServingError(.unavailable, "the request was cancelled")
        default: return ServingError(.internalError, "\(error)")
        }
    }

    // MARK: InferenceService

    public func serverMetadata() -> ServerMetadata {
        ServerMetadata(name: options.serverName, version: options.serverVersion, extensions: options.extensions)
    }

    public func isLive() -> Bool { true }

    public func isReady() -> Bool {
        registry.withLock { r in
            guard r.started && !r.shuttingDown else { return false }
            guard options.strictReadiness else { return true }
            return r.records.values.filter(\.wanted).allSatisfy { rec in rec.slots.values.contains(where: \.serving) && rec.reason.isEmpty }
        }
    }

    public func isModelReady(_ name: String, version: String) -> Bool {
        registry.withLock { r in
            guard let slot = try? readySlot(r, name, version) else { return false }
            return slot.dependencies.allSatisfy { dep in r.records[dep]?.slots.values.contains(where: \.serving) ?? false }
        }
    }

    public func modelMetadata(_ name: String, version: String) throws -> ModelMetadata {
        try registry.withLock { r in
            let slot = try readySlot(r, name, version)
            let versions = r.records[name]!.slots.values.filter(\.ready).map(\.version).sorted().map(String.init)
            let platform = slot.config.platform.isEmpty ? slot.config.backend : slot.config.platform
            return ModelMetadata(name: name, versions: versions, platform: platform,
                                 inputs: slot.signature.metadata(slot.signature.inputs),
                                 outputs: slot.signature.metadata(slot.signature.outputs))
        }
    }

    public func modelConfig(_ name: String, version: String) throws -> Inference_ModelConfig {
        try registry.withLock { r in try readySlot(r, name, version).config }
    }

    public func modelStatistics(_ name: String, version: String) throws -> [ModelStatistics] {
        try registry.withLock { r in
            if name.isEmpty {
                return r.records.keys.sorted().flatMap { n in
                    r.records[n]!.slots.values.sorted { $0.version < $1.version }.map(\.recorder.statistics)
                }
            }
            if version.isEmpty || version == "-1" {
                guard let rec = r.records[name] else { throw ServingError(.notFound, "unknown model: '\(name)' is not found") }
                guard !rec.slots.isEmpty else { throw ServingError(.unavailable, "model '\(name)' is not loaded") }
                return rec.slots.values.sorted { $0.version < $1.version }.map(\.recorder.statistics)
            }
            return [try readySlot(r, name, version).recorder.statistics]
        }
    }

    public func infer(_ request: InferRequest) async throws -> InferResponse {
        let collected = Locked<(result: InferResponse?, count: Int)>((nil, 0))
        let modelName = request.modelName
        do {
            try await run(request, context: context(for: request, streaming: false), publicErrors: true) { response in
                try collected.withLock { c in
                    if response.outputs.isEmpty && c.result != nil {
                        c.result?.parameters.merge(response.parameters) { $1 }
                        return
                    }
                    c.count += 1
                    if c.count > 1 {
                        throw ServingError(.badRequest, "model '\(modelName)' sent several responses to one request; use the streaming route (generate_stream or gRPC streaming)")
                    }
                    c.result = response
                }
            }
        } catch {
            throw Self.publicError(error)
        }
        if Task.isCancelled { throw ServingError(.unavailable, "the request was cancelled") }
        guard var result = collected.withLock({ $0.result }) else {
            throw ServingError(.internalError, "model '\(request.modelName)' sent no response")
        }
        result.isFinal = true
        return result
    }

    public func inferStream(_ request: InferRequest, send: @escaping @Sendable (InferResponse) async throws -> Void) async throws {
        do {
            try await run(request, context: context(for: request, streaming: true), publicErrors: true, send: send)
        } catch {
            throw Self.publicError(error)
        }
    }

    /// The load summary of every ready model version that has one (its LLM weights).
    public func loadSummaries() -> [(model: String, version: String, summary: String)] {
        registry.withLock { r in
            r.records.keys.sorted().flatMap { name in
                r.records[name]!.slots.values.sorted { $0.version < $1.version }.compactMap { slot in
                    slot.ready ? slot.model.loadSummary.map { (name, String(slot.version), $0) } : nil
                }
            }
        }
    }

    public func repositoryIndex(readyOnly: Bool) -> [RepositoryModel] {
        let names = Set(((try? ModelRepositoryScanner.scan(options.modelRepositories))?.entries.keys).map(Array.init) ?? [])
        return registry.withLock { r in
            var rows: [RepositoryModel] = []
            for name in names.union(r.records.keys).sorted() {
                let rec = r.records[name] ?? Record(name: name)
                if rec.slots.isEmpty {
                    rows.append(RepositoryModel(name: name, version: "", state: rec.state, reason: rec.reason))
                } else {
                    for slot in rec.slots.values.sorted(by: { $0.version < $1.version }) {
                        let state = !slot.ready ? "UNLOADING" : slot.failure == nil ? "READY" : "UNAVAILABLE"
                        rows.append(RepositoryModel(name: name, version: String(slot.version), state: state,
                                                    reason: slot.failure ?? (slot.ready ? rec.reason : "")))
                    }
                }
            }
            return readyOnly ? rows.filter { $0.state == "READY" } : rows
        }
    }

    public func inputsForGenerate(_ name: String, version: String) throws -> [TensorMetadata] {
        try registry.withLock { r in
            let slot = try readySlot(r, name, version)
            return slot.signature.metadata(slot.signature.inputs)
        }
    }

    // MARK: chat templates

    public func renderChat(model: String, messages: [ChatTurn], addGenerationPrompt: Bool) throws -> String {
        do {
            guard let tokenizer = try tokenizer(behind: model, depth: 0) else {
                throw ServingError(.badRequest, "model '\(model)' has no tokenizer to take a chat template from")
            }
            return try tokenizer.applyChatTemplate(messages.map { ChatMessage(role: $0.role, content: $0.content) },
                                                   addGenerationPrompt: addGenerationPrompt).text
        } catch let e as ServingError {
            throw e
        } catch {
            throw ServingError(.badRequest, "chat template of model '\(model)': \(error)")
        }
    }

    /// The tokenizer of a model, or of the first step of an ensemble that has one.
    private func tokenizer(behind name: String, depth: Int) throws -> Tokenizer? {
        let lease = try self.lease(name, version: "")
        defer { lease.release() }
        if let t = (lease.model as? TokenizingModel)?.textTokenizer { return t }
        guard depth < 4, let ensemble = lease.model as? EnsembleModel else { return nil }
        for step in ensemble.steps {
            if let t = try tokenizer(behind: step.model, depth: depth + 1) { return t }
        }
        return nil
    }

    // MARK: metrics

    public func metricsSnapshot() -> ServingMetricsSnapshot {
        let slots = registry.withLock { r in
            r.records.keys.sorted().flatMap { n in r.records[n]!.slots.values.sorted { $0.version < $1.version } }
        }
        return ServingMetricsSnapshot(models: slots.map { s in
            s.recorder.snapshot(llm: s.model.llmMetrics, enginePending: s.model.pendingCount)
        })
    }
}

/// A lock for async code: one holder at a time, FIFO (model loads and unloads take turns).
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func run<T>(_ body: () async throws -> T) async rethrows -> T {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { s -> Bool in
                if s.locked {
                    s.waiters.append(c)
                    return false
                }
                s.locked = true
                return true
            }
            if acquired { c.resume() }
        }
        defer {
            // Hands the lock to the next waiter, or frees it.
            let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
                if s.waiters.isEmpty {
                    s.locked = false
                    return nil
                }
                return s.waiters.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}
