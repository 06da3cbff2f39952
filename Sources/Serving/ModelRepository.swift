// The model repository on disk: `<repository>/<model>/config.pbtxt` and numeric version
// folders. Reading a model's config (or a load API override), checking what Triton checks
// before loading, choosing versions by version_policy, and picking the backend that runs it.
import Foundation
import SwiftProtobuf
import TritonProtos

/// One model folder found in a repository.
struct RepositoryEntry: Sendable, Equatable {
    var name: String
    var directory: String
    /// Numeric version folders, ascending.
    var versions: [Int64]
    /// config.pbtxt's text (nil when the file is missing or unreadable).
    var configText: String?
    /// Changes whenever the config or the version folders change (poll mode reloads then).
    var fingerprint: String { (configText ?? "<no config>") + "|" + versions.map(String.init).joined(separator: ",") }
}

enum ModelRepositoryScanner {
    /// Every model folder of the repositories. A name found twice is reported in `duplicates`.
    static func scan(_ repositories: [String]) throws -> (entries: [String: RepositoryEntry], duplicates: [String: String]) {
        let fm = FileManager.default
        var entries: [String: RepositoryEntry] = [:]
        var duplicates: [String: String] = [:]
        for repo in repositories {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: repo, isDirectory: &isDir), isDir.boolValue else {
                throw ServingError(.badRequest, "model repository \(repo) is not a directory")
            }
            for name in try fm.contentsOfDirectory(atPath: repo).sorted() where !name.hasPrefix(".") {
                let dir = repo + "/" + name
                guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else { continue }
                if let other = entries[name] {
                    duplicates[name] = "model '\(name)' appears in two repositories: \(other.directory) and \(dir)"
                    continue
                }
                entries[name] = entry(name: name, directory: dir)
            }
        }
        return (entries, duplicates)
    }

    static func entry(name: String, directory: String) -> RepositoryEntry {
        let fm = FileManager.default
        var versions: [Int64] = []
        for child in (try? fm.contentsOfDirectory(atPath: directory)) ?? [] {
            var isDir: ObjCBool = false
            if let v = Int64(child), v >= 0, fm.fileExists(atPath: directory + "/" + child, isDirectory: &isDir), isDir.boolValue {
                versions.append(v)
            }
        }
        let text = try? String(contentsOfFile: directory + "/config.pbtxt", encoding: .utf8)
        return RepositoryEntry(name: name, directory: directory, versions: versions.sorted(), configText: text)
    }
}

/// What runs a model.
enum ModelKind: Equatable {
    case llm, preprocessing, postprocessing, bls, ensemble, identity
    case custom(String)
}

/// A config read and checked, ready to instantiate.
struct PreparedModel {
    var name: String
    var directory: String
    var config: Inference_ModelConfig
    var source: ConfigSource
    var kind: ModelKind
    var versions: [Int64]
    /// Models this one needs loaded first (ensemble steps, the BLS model's LLM).
    var dependencies: [String]
    var fingerprint: String
}

enum ModelPreparation {
    static let llmBackends: Set<String> = ["tensorrtllm", "tensorrt_llm", "petrel"]

    /// Parses the config (the override JSON of the load API when given) and applies Triton's
    /// checks. Errors are ModelLoadError naming the file, the line and the field.
    static func prepare(_ entry: RepositoryEntry, overrideJSON: String?, customBackends: Set<String>,
                        device: ServingDevice = .cpu) throws -> PreparedModel {
        let path = entry.directory + "/config.pbtxt"
        var config: Inference_ModelConfig
        var source: ConfigSource
        if let json = overrideJSON {
            source = ConfigSource(path: "load API config of '\(entry.name)'", text: json)
            do {
                var options = JSONDecodingOptions()
                options.ignoreUnknownFields = false
                config = try Inference_ModelConfig(jsonString: json, options: options)
            } catch {
                throw ModelLoadError("\(source.path): not a valid ModelConfig in JSON: \(error)")
            }
        } else {
            guard let text = entry.configText else {
                throw ModelLoadError("\(path): no config.pbtxt in the model folder")
            }
            source = ConfigSource(path: path, text: text)
            do {
                config = try decodeModelConfig(text: text, path: path)
            } catch {
                throw ModelLoadError("\(error)")
            }
        }
        if config.name.isEmpty {
            config.name = entry.name
        } else if config.name != entry.name {
            throw source.error(field: "name", "'\(config.name)' differs from the model's folder name '\(entry.name)'")
        }
        try check(config, source: source)
        let kind = try kind(of: config, source: source, customBackends: customBackends)
        try checkImplemented(config, kind: kind, source: source, device: device)
        let versions = try selectVersions(entry.versions, config: config, source: source, directory: entry.directory)
        var dependencies: [String] = []
        switch kind {
        case .ensemble: dependencies = config.ensembleScheduling.step.map(\.modelName)
        case .bls:
            let p = ModelParameters(config, source: source)
            dependencies = [p.string("tensorrt_llm_model_name") ?? "tensorrt_llm"]
        default: break
        }
        return PreparedModel(name: entry.name, directory: entry.directory, config: config, source: source, kind: kind,
                             versions: versions, dependencies: dependencies,
                             fingerprint: overrideJSON.map { "override:" + $0 } ?? entry.fingerprint)
    }

    /// Triton's structural checks of inputs, outputs and batching.
    static func check(_ config: Inference_ModelConfig, source: ConfigSource) throws {
        guard config.maxBatchSize >= 0 else {
            throw source.error(field: "max_batch_size", "must be >= 0, got \(config.maxBatchSize)")
        }
        for (kind, tensors) in [("input", config.input.map { ($0.name, $0.dataType, $0.dims) }),
                                ("output", config.output.map { ($0.name, $0.dataType, $0.dims) })] {
            var seen: Set<String> = []
            for (name, type, dims) in tensors {
                guard !name.isEmpty else { throw source.error(field: "\(kind).name", "every \(kind) needs a name") }
                guard seen.insert(name).inserted else {
                    throw source.error(field: "\(kind).name", line: source.line(ofString: name), "\(kind) '\(name)' is declared twice")
                }
                guard TensorDataType(type) != nil else {
                    throw source.error(field: "\(kind).data_type", line: source.line(ofString: name), "\(kind) '\(name)' needs a data_type")
                }
                if let bad = dims.first(where: { $0 < -1 || $0 == 0 }) {
                    throw source.error(field: "\(kind).dims", line: source.line(ofString: name), "\(kind) '\(name)' has dimension \(bad); dimensions are -1 (any) or positive")
                }
                if dims.isEmpty && config.maxBatchSize == 0 {
                    throw source.error(field: "\(kind).dims", line: source.line(ofString: name), "\(kind) '\(name)' needs dims")
                }
            }
        }
        if case .dynamicBatching(let d)? = config.schedulingChoice, config.maxBatchSize > 0 {
            if let p = d.preferredBatchSize.first(where: { $0 <= 0 || $0 > config.maxBatchSize }) {
                throw source.error(field: "dynamic_batching.preferred_batch_size",
                                   "\(p) is outside [1, max_batch_size = \(config.maxBatchSize)]")
            }
        }
        if case .sequenceBatching? = config.schedulingChoice {
            throw source.error(field: "sequence_batching", "the sequence batcher is not supported by Petrel")
        }
        for g in config.instanceGroup where g.count < 0 {
            throw source.error(field: "instance_group.count", "must be >= 0, got \(g.count)")
        }
    }

    /// Refuses what Petrel would otherwise ignore: settings it does not implement, instances
    /// on a device the model does not run on, priority levels out of range.
    static func checkImplemented(_ config: Inference_ModelConfig, kind: ModelKind, source: ConfigSource, device: ServingDevice) throws {
        func notImplemented(_ field: String, _ what: String) -> ModelLoadError {
            source.error(field: field, "\(what) is not implemented by Petrel; remove it from the config")
        }
        if !config.modelWarmup.isEmpty { throw notImplemented("model_warmup", "model warmup") }
        if config.hasResponseCache && config.responseCache.enable { throw notImplemented("response_cache", "the response cache") }
        if config.hasOptimization { throw notImplemented("optimization", "the optimization policy") }
        // An LLM model runs on --device; every other model on the CPU.
        let onGPU = kind == .llm && device == .cuda
        for g in config.instanceGroup {
            if g.hasRateLimiter { throw notImplemented("instance_group.rate_limiter", "the rate limiter") }
            if g.passive { throw notImplemented("instance_group.passive", "a passive instance group") }
            if !g.secondaryDevices.isEmpty { throw notImplemented("instance_group.secondary_devices", "secondary devices") }
            if !g.hostPolicy.isEmpty { throw notImplemented("instance_group.host_policy", "a host policy") }
            switch g.kind {
            case .auto, .cpu: break   // TensorRT-LLM's tensorrt_llm model says KIND_CPU and runs on the GPU
            case .model where kind == .llm: break
            case .gpu where onGPU: break
            case .gpu:
                throw source.error(field: "instance_group.kind", kind == .llm
                                   ? "KIND_GPU needs petrel serve --device cuda; this server runs LLM models on the CPU"
                                   : "KIND_GPU: Petrel runs this model on the CPU (use KIND_CPU or KIND_AUTO)")
            default:
                throw source.error(field: "instance_group.kind", "\(g.kind == .model ? "KIND_MODEL" : "kind \(g.kind.rawValue)") is not supported by Petrel (KIND_AUTO, KIND_CPU; KIND_GPU for an LLM model under --device cuda)")
            }
            if !g.gpus.isEmpty && !(onGPU && g.gpus.allSatisfy { $0 == 0 }) {
                throw source.error(field: "instance_group.gpus", onGPU
                                   ? "\(g.gpus): Petrel runs on one GPU, device 0"
                                   : "\(g.gpus): this model does not run on a GPU here (petrel serve --device cuda runs LLM models on GPU 0)")
            }
        }
        if case .dynamicBatching(let d)? = config.schedulingChoice {
            if d.priorityLevels > 0 && !(1...d.priorityLevels).contains(d.defaultPriorityLevel) {
                throw source.error(field: "dynamic_batching.default_priority_level",
                                   "must be in [1, priority_levels = \(d.priorityLevels)], got \(d.defaultPriorityLevel)")
            }
            if !d.priorityQueuePolicy.isEmpty {
                throw notImplemented("dynamic_batching.priority_queue_policy", "a queue policy per priority level (default_queue_policy applies to every level)")
            }
        }
    }

    /// The backend that runs the config. NVIDIA's Python models of the TensorRT-LLM repository
    /// (preprocessing, postprocessing, tensorrt_llm_bls) are recognised by their tensors.
    static func kind(of config: Inference_ModelConfig, source: ConfigSource, customBackends: Set<String>) throws -> ModelKind {
        let inputs = Set(config.input.map(\.name)), outputs = Set(config.output.map(\.name))
        if !config.platform.isEmpty {
            guard config.platform == "ensemble" else {
                throw source.error(field: "platform", "platform '\(config.platform)' is not supported by Petrel (supported: ensemble; backends: tensorrtllm, petrel, python for TensorRT-LLM's models, identity)")
            }
            guard case .ensembleScheduling? = config.schedulingChoice else {
                throw source.error(field: "platform", "an ensemble needs ensemble_scheduling { step [...] }")
            }
            return .ensemble
        }
        if case .ensembleScheduling? = config.schedulingChoice {
            throw source.error(field: "ensemble_scheduling", "only platform \"ensemble\" models take ensemble_scheduling")
        }
        let backend = config.backend
        if customBackends.contains(backend) { return .custom(backend) }
        if llmBackends.contains(backend) { return .llm }
        let isPre = inputs.contains("QUERY") && outputs.contains("INPUT_ID")
        let isPost = inputs.contains("TOKENS_BATCH") && outputs.contains("OUTPUT")
        let isBLS = inputs.contains("text_input") && outputs.contains("text_output")
        switch backend {
        case "python", "petrel_tokenizer", "petrel_bls":
            if backend != "petrel_bls" && isPre { return .preprocessing }
            if backend != "petrel_bls" && isPost { return .postprocessing }
            if backend != "petrel_tokenizer" && isBLS { return .bls }
            throw source.error(field: "backend", "Petrel runs no Python; a '\(backend)' model must be one of TensorRT-LLM's preprocessing (QUERY → INPUT_ID), postprocessing (TOKENS_BATCH → OUTPUT) or tensorrt_llm_bls (text_input → text_output) models")
        case "identity": return .identity
        case "": throw source.error(field: "backend", "neither backend nor platform is set")
        default:
            throw source.error(field: "backend", "backend '\(backend)' is not available in Petrel (built in: tensorrtllm / petrel for LLMs, python for TensorRT-LLM's pre/postprocessing and BLS models, petrel_tokenizer, petrel_bls, identity; platform ensemble)")
        }
    }

    /// Versions to load under version_policy (default: the latest one).
    static func selectVersions(_ available: [Int64], config: Inference_ModelConfig, source: ConfigSource, directory: String) throws -> [Int64] {
        var chosen: [Int64]
        switch config.versionPolicy.policyChoice {
        case .all?: chosen = available
        case .specific(let s)?:
            for v in s.versions where !available.contains(v) {
                throw source.error(field: "version_policy.specific.versions", "version \(v) has no folder \(directory)/\(v)")
            }
            chosen = s.versions.sorted()
        case .latest(let l)?:
            chosen = Array(available.suffix(Int(max(l.numVersions, 1))))
        case nil:
            chosen = Array(available.suffix(1))
        }
        guard !chosen.isEmpty else {
            throw ModelLoadError("\(directory): no version folder (such as \(directory)/1/) to load under the model's version_policy")
        }
        return chosen
    }
}
