// Model lifecycle of InferenceServer: loading (with dependencies first), reloading (the old
// version drains while the new one serves), unloading (drain, then cancel), and poll mode.
// Lifecycle operations run one at a time under `lifecycle`; requests never wait on it.
import Compute
import Dispatch
import Foundation
import Parallel
import Telemetry
import TritonProtos

extension InferenceServer {

    public func loadModel(_ name: String, config: String?) async throws {
        guard options.modelControlMode == .explicit else {
            throw ServingError(.badRequest, "explicit model load / unload is not allowed unless --model-control-mode is explicit")
        }
        try await lifecycle.run {
            do {
                try await loadLocked(name, override: config, chain: [], entries: nil, force: true)
            } catch {
                throw Self.publicError(error)
            }
        }
    }

    public func unloadModel(_ name: String, unloadDependents: Bool) async throws {
        guard options.modelControlMode == .explicit else {
            throw ServingError(.badRequest, "explicit model load / unload is not allowed unless --model-control-mode is explicit")
        }
        try await lifecycle.run { try await unloadLocked(name, dependents: unloadDependents) }
    }

    func findEntry(_ name: String) -> RepositoryEntry? {
        guard !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else { return nil }
        for repo in options.modelRepositories {
            var isDir: ObjCBool = false
            let dir = repo + "/" + name
            if FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue {
                return ModelRepositoryScanner.entry(name: name, directory: dir)
            }
        }
        return nil
    }

    func setFailed(_ name: String, _ reason: String, fingerprint: String?) {
        options.log.error("failed to load '\(name)': \(reason)")
        registry.withLock { r in
            var rec = r.records[name] ?? Record(name: name)
            rec.wanted = true
            rec.fingerprint = fingerprint
            rec.reason = reason
            if rec.slots.values.contains(where: \.serving) {
                rec.state = "READY"           // a failed reload keeps the loaded version serving
            } else {
                rec.state = "UNAVAILABLE"
            }
            r.records[name] = rec
        }
    }

    /// Loads (or reloads) `name` and, first, the models it depends on. Call with the lifecycle
    /// lock held. A loaded model whose files did not change is left alone unless `force` (or it
    /// has failed: its device context is lost).
    func loadLocked(_ name: String, override: String?, chain: [String], entries: [String: RepositoryEntry]?, force: Bool = false) async throws {
        guard !chain.contains(name) else {
            throw ServingError(.badRequest, "models depend on each other in a cycle: \((chain + [name]).joined(separator: " → "))")
        }
        guard let entry = entries?[name] ?? findEntry(name) else {
            throw ServingError(.notFound, "failed to load '\(name)': no such model in the model repository")
        }
        let loaded = registry.withLock { r in r.records[name].map { rec in (rec.fingerprint, rec.slots.values.contains(where: \.serving)) } }
        if let (fingerprint, ready) = loaded, ready, override == nil, fingerprint == entry.fingerprint, !force || chain.count > 0 {
            return
        }
        registry.withLock { r in
            var rec = r.records[name] ?? Record(name: name)
            rec.wanted = true
            if !rec.slots.values.contains(where: \.serving) { rec.state = "LOADING" }
            r.records[name] = rec
        }
        let prepared: PreparedModel
        do {
            prepared = try ModelPreparation.prepare(entry, overrideJSON: override, customBackends: Set(options.customBackends.keys),
                                                    device: options.device)
        } catch {
            setFailed(name, "\(error)", fingerprint: entry.fingerprint)
            throw ServingError(.badRequest, "failed to load '\(name)': \(error)")
        }
        for dependency in prepared.dependencies {
            do {
                try await loadLocked(dependency, override: nil, chain: chain + [name], entries: entries)
            } catch {
                let reason = "model '\(dependency)', which it needs, failed to load: \(Self.publicError(error).message)"
                setFailed(name, reason, fingerprint: prepared.fingerprint)
                throw ServingError(.badRequest, "failed to load '\(name)': \(reason)")
            }
        }
        var slots: [Int64: Slot] = [:]
        do {
            for version in prepared.versions {
                slots[version] = try await instantiate(prepared, version: version)
            }
        } catch {
            for slot in slots.values { await slot.model.shutdown() }
            setFailed(name, "\(error)", fingerprint: prepared.fingerprint)
            throw ServingError(.badRequest, "failed to load '\(name)': \(error)")
        }
        let old = registry.withLock { r -> [Slot] in
            var rec = r.records[name] ?? Record(name: name)
            let old = Array(rec.slots.values)
            for s in old { s.stopTakingRequests() }
            rec.slots = slots
            rec.state = "READY"
            rec.reason = ""
            options.log.info("successfully loaded '\(name)' version\(slots.count > 1 ? "s" : "") \(slots.keys.sorted().map(String.init).joined(separator: ", "))")
            rec.wanted = true
            rec.fingerprint = prepared.fingerprint
            r.records[name] = rec
            return old
        }
        if !old.isEmpty {
            // The previous versions finish what they started, then go.
            let timeout = options.unloadTimeoutSeconds
            Task {
                await self.drain(old, timeout: timeout)
                for s in old { await s.model.shutdown() }
            }
        }
    }

    /// Builds one version of a prepared model (off the cooperative pool: loading weights is slow).
    func instantiate(_ p: PreparedModel, version: Int64) async throws -> Slot {
        let recorder = StatisticsRecorder(name: p.name, version: String(version))
        let options = self.options
        let build: @Sendable () throws -> ServedModel = { [self] in
            let parameters = ModelParameters(p.config, source: p.source)
            let label = "\(p.name).v\(version)"
            switch p.kind {
            case .llm:
                let settings = try LLMSettings(config: p.config, parameters: parameters, directory: p.directory, version: version,
                                               defaultParallel: ParallelConfig(tensorParallelSize: options.tensorParallelSize,
                                                                               pipelineParallelSize: options.pipelineParallelSize),
                                               defaultQuantization: options.quantization)
                if options.device == .cuda && settings.parallel.rankCount > 1 {
                    // Until the NCCL path exists, N x M ranks would all be contexts on GPU 0.
                    let key = settings.parallel.tensorParallelSize > 1 ? "tensor_parallel_size" : "pipeline_parallel_size"
                    throw p.source.parameterError(key, "\(settings.parallel) needs \(settings.parallel.rankCount) GPUs; multi-GPU serving is not "
                                                  + "built yet (--device cuda runs one GPU); set it to 1, or serve on --device cpu")
                }
                let makeBackend: @Sendable () throws -> ComputeBackend = {
                    do {
                        return try options.backendFactory()
                    } catch {
                        throw ModelLoadError("cannot create the compute backend: \(error)")
                    }
                }
                do {
                    return try LLMModel(settings: settings, makeBackend: makeBackend, kvCacheMemoryBytes: options.kvCacheMemoryBytes,
                                        deviceSampling: options.deviceSampling, recorder: recorder, tokenizers: tokenizers)
                } catch let e as ModelLoadError {
                    throw e
                } catch {
                    throw p.source.parameterError(parameters.string(["gpt_model_path", "model_path", "engine_dir"])?.key ?? "gpt_model_path",
                                                  "cannot load the checkpoint \(settings.modelPath): \(error)")
                }
            case .preprocessing:
                let tokenizer = try loadTokenizer(parameters, directory: p.directory, store: tokenizers)
                let backend = try PreprocessingBackend(tokenizer: tokenizer, parameters: parameters)
                return BatchedModel(settings: BatcherSettings(config: p.config), backend: backend, recorder: recorder, label: label,
                                    tokenizer: tokenizer,
                                    tokenizerRole: .preprocessing(addSpecialTokens: backend.addSpecialTokens, endID: backend.endID))
            case .postprocessing:
                let tokenizer = try loadTokenizer(parameters, directory: p.directory, store: tokenizers)
                let backend = try PostprocessingBackend(tokenizer: tokenizer, parameters: parameters)
                return BatchedModel(settings: BatcherSettings(config: p.config), backend: backend, recorder: recorder, label: label,
                                    tokenizer: tokenizer, tokenizerRole: .postprocessing(skipSpecialTokens: backend.skipSpecialTokens))
            case .identity:
                let backend = IdentityBackend(inputNames: p.config.input.map(\.name), outputNames: p.config.output.map(\.name),
                                              delayMilliseconds: try parameters.int("execute_delay_ms") ?? 0)
                return BatchedModel(settings: BatcherSettings(config: p.config), backend: backend, recorder: recorder, label: label)
            case .custom(let name):
                guard let factory = options.customBackends[name] else { throw ModelLoadError("backend '\(name)' is not registered") }
                let backend: any CustomBackend
                do {
                    backend = try factory(CustomModelContext(config: p.config, directory: p.directory, version: version))
                } catch {
                    throw ModelLoadError("\(p.source.path): backend '\(name)' failed to create the model: \(error)")
                }
                return BatchedModel(settings: BatcherSettings(config: p.config), backend: CustomBatchBackend(backend: backend),
                                    recorder: recorder, label: label)
            case .ensemble:
                return try EnsembleModel(name: p.name, config: p.config, source: p.source, host: self)
            case .bls:
                return try BLSModel(config: p.config, parameters: parameters, directory: p.directory, tokenizers: tokenizers, host: self)
            }
        }
        let model = try await withCheckedThrowingContinuation { (c: CheckedContinuation<ServedModel, Error>) in
            DispatchQueue.global().async { c.resume(with: Result { try build() }) }
        }
        return Slot(name: p.name, version: version, model: model, config: p.config, recorder: recorder, dependencies: p.dependencies)
    }

    /// Stops routing to `name`, drains its requests (cancelling them after unloadTimeoutSeconds),
    /// releases it; then its dependents when asked. Call with the lifecycle lock held.
    func unloadLocked(_ name: String, dependents: Bool) async throws {
        let slots = try registry.withLock { r -> [Slot] in
            guard var rec = r.records[name] else {
                throw ServingError(.notFound, "failed to unload '\(name)': no such model")
            }
            let slots = Array(rec.slots.values)
            for s in slots { s.stopTakingRequests() }
            rec.state = slots.isEmpty ? "UNAVAILABLE" : "UNLOADING"
            rec.wanted = false
            r.records[name] = rec
            return slots
        }
        await drain(slots, timeout: options.unloadTimeoutSeconds)
        for s in slots { await s.model.shutdown() }
        registry.withLock { r in
            r.records[name]?.slots = [:]
            r.records[name]?.state = "UNAVAILABLE"
            r.records[name]?.reason = "unloaded"
            options.log.info("successfully unloaded '\(name)'")
            r.records[name]?.fingerprint = nil
        }
        if dependents {
            let users = registry.withLock { r in
                r.records.values.filter { rec in rec.slots.values.contains { $0.dependencies.contains(name) } }.map(\.name)
            }
            for user in users.sorted() { try await unloadLocked(user, dependents: true) }
        }
    }

    /// Poll mode: load new or changed models, unload removed ones.
    func poll() async {
        guard let (entries, duplicates) = try? ModelRepositoryScanner.scan(options.modelRepositories) else { return }
        await lifecycle.run {
            if registry.withLock({ $0.shuttingDown }) { return }
            let known = registry.withLock { r in r.records.mapValues { ($0.fingerprint, $0.slots.isEmpty) } }
            for (name, entry) in entries.sorted(by: { $0.key < $1.key }) where duplicates[name] == nil {
                if let (fingerprint, _) = known[name], fingerprint == entry.fingerprint { continue }
                try? await loadLocked(name, override: nil, chain: [], entries: entries, force: true)
            }
            for (name, state) in known where entries[name] == nil {
                if !state.1 { try? await unloadLocked(name, dependents: false) }
                registry.withLock { _ = $0.records.removeValue(forKey: name) }
            }
        }
    }
}
