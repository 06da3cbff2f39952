// The LLM backend: TensorRT-LLM's `tensorrt_llm` model (backend "tensorrtllm" or "petrel").
// One Engine (in-flight batching over a paged KV cache) per model instance, sharing the
// weights. Tensors in and out follow TensorRT-LLM's inflight_batcher_llm model: input_ids,
// input_lengths, request_output_len, sampling inputs, stop / bad word lists → output_ids,
// sequence_length, cum_log_probs, output_log_probs. Decoupled mode streams one response per
// engine step. The BLS model drives the same engines through `generate` (LLMGeneration.swift).
import Compute
import Engine
import Foundation
import Checkpoints
import Models
import Parallel
import Runtime
import Synchronization
import Tokenization
import TritonProtos

/// Input names that differ between the `tensorrt_llm` model and the text-level models
/// (ensemble, BLS); the first name present wins.
struct GenerationInputNames: Sendable {
    var maxTokens: String
    var topK: [String]
    var topP: [String]
    var lengthPenalty: [String]
    var streaming: [String]

    static let tensorrtLLM = GenerationInputNames(maxTokens: "request_output_len", topK: ["runtime_top_k"], topP: ["runtime_top_p"],
                                                  lengthPenalty: ["len_penalty"], streaming: ["streaming"])
    static let text = GenerationInputNames(maxTokens: "max_tokens", topK: ["top_k"], topP: ["top_p"],
                                           lengthPenalty: ["length_penalty"], streaming: ["stream"])
}

extension ModelRequest {
    func firstInt(_ names: [String], item: Int) throws -> (String, Int64)? {
        for n in names { if let v = try int(n, item: item) { return (n, v) } }
        return nil
    }
    func firstDouble(_ names: [String], item: Int) throws -> (String, Double)? {
        for n in names { if let v = try double(n, item: item) { return (n, v) } }
        return nil
    }
    func firstBool(_ names: [String], item: Int) throws -> Bool? {
        for n in names { if let v = try bool(n, item: item) { return v } }
        return nil
    }
}

/// Item `item`'s sampling and stopping settings, TensorRT-LLM's way: with neither top_k nor
/// top_p given (or top_k = 1) decoding is greedy whatever the temperature; temperature
/// defaults to 1. Word lists and the prompt are read by the caller.
func parseSampling(_ r: ModelRequest, item: Int, names: GenerationInputNames, defaultEndID: Int32?) throws -> (SamplingParameters, StopConditions) {
    var p = SamplingParameters()
    var s = StopConditions()
    guard let (_, maxTokens) = try r.firstInt([names.maxTokens], item: item) else {
        throw InputError(names.maxTokens, "is required")
    }
    guard maxTokens >= 1 else { throw InputError(names.maxTokens, "must be >= 1, got \(maxTokens)") }
    s.maxTokens = Int(clamping: maxTokens)

    let topK = try r.firstInt(names.topK, item: item)
    let topP = try r.firstDouble(names.topP, item: item)
    let temperature = try r.firstDouble(["temperature"], item: item)
    if let (n, k) = topK, k < 0 { throw InputError(n, "must be >= 0, got \(k)") }
    if let (n, v) = topP, !(v >= 0 && v <= 1) { throw InputError(n, "must be in [0, 1], got \(v)") }
    if let (n, t) = temperature, !(t.isFinite && t >= 0) { throw InputError(n, "must be a finite number >= 0, got \(t)") }
    let k = topK?.1 ?? 0, pp = topP?.1 ?? 0
    let greedy = (k == 0 && pp == 0) || k == 1 || (temperature?.1 ?? 1) == 0
    if !greedy {
        p.temperature = Float(temperature?.1 ?? 1)
        p.topK = Int(clamping: k)
        p.topP = pp > 0 ? Float(pp) : 1
    }
    if let (n, v) = try r.firstDouble(["min_p", "runtime_min_p"], item: item) {
        guard v >= 0 && v <= 1 else { throw InputError(n, "must be in [0, 1], got \(v)") }
        p.minP = Float(v)
    }
    if let (n, v) = try r.firstDouble(["repetition_penalty"], item: item) {
        guard v.isFinite && v > 0 else { throw InputError(n, "must be a finite number > 0, got \(v)") }
        p.repetitionPenalty = Float(v)
    }
    if let v = try r.double("presence_penalty", item: item) {
        guard v.isFinite else { throw InputError("presence_penalty", "must be finite, got \(v)") }
        p.presencePenalty = Float(v)
    }
    if let v = try r.double("frequency_penalty", item: item) {
        guard v.isFinite else { throw InputError("frequency_penalty", "must be finite, got \(v)") }
        p.frequencyPenalty = Float(v)
    }
    if let (n, v) = try r.firstDouble(names.lengthPenalty, item: item) {
        guard v.isFinite else { throw InputError(n, "must be finite, got \(v)") }
        p.lengthPenalty = Float(v)
    }
    if let v = try r.bool("early_stopping", item: item) { p.earlyStopping = v }
    if let (n, w) = try r.firstInt(["beam_width"], item: item) {
        guard w >= 1 else { throw InputError(n, "must be >= 1, got \(w)") }
        p.beamWidth = Int(clamping: w)
    }
    if let (_, seed) = try r.firstInt(["seed", "random_seed"], item: item) { p.seed = UInt64(bitPattern: seed) }
    if let v = try r.bool("return_log_probs", item: item) { p.returnLogProbs = v }
    if let (n, v) = try r.firstInt(["min_tokens", "min_length"], item: item) {
        guard v >= 0 && v <= maxTokens else { throw InputError(n, "must be in [0, \(names.maxTokens)], got \(v)") }
        s.minTokens = Int(v)
    }
    if let (_, e) = try r.firstInt(["end_id"], item: item) {
        s.endID = e >= 0 ? Int32(clamping: e) : nil      // TensorRT-LLM: end_id -1 never ends
    } else {
        s.endID = defaultEndID
    }
    if let (_, pad) = try r.firstInt(["pad_id"], item: item) { s.padID = Int32(clamping: pad) }
    if let (n, v) = try r.firstInt(["num_return_sequences"], item: item), v > 1 {
        throw InputError(n, "greater than 1 is not supported by Petrel (got \(v))")
    }
    return (p, s)
}

/// When the engine first schedules each watched request: the queue duration Triton reports
/// (arrival to first scheduling). Watched ids are forgotten by `take`.
final class SchedulingClock: Sendable {
    /// Request id → the start of the first step that ran it (nil while it waits).
    private let firstScheduled = Mutex<[String: UInt64?]>([:])

    func watch(_ id: String) { firstScheduled.withLock { $0[id] = .some(nil) } }

    /// A step over `ids` starts now.
    func stepStarting(_ ids: some Sequence<String>) {
        let now = StatisticsRecorder.now()
        firstScheduled.withLock { d in
            for id in ids where d[id] == .some(nil) { d[id] = now }
        }
    }

    /// When `id` was first scheduled (nil if never); stops watching it.
    func take(_ id: String) -> UInt64? { firstScheduled.withLock { $0.removeValue(forKey: id) ?? nil } }
}

/// The model runner, telling the clock which requests each step runs.
struct ClockedExecutor: Executor {
    let runner: any Executor
    let clock: SchedulingClock

    func execute(_ output: SchedulerOutput) async throws -> StepOutput {
        if !output.sequences.isEmpty { clock.stepStarting(output.sequences.lazy.map(\.requestID)) }
        return try await runner.execute(output)
    }
}

/// How many KV blocks each instance of an LLM model gets. On a device that reports its memory
/// (the GPU), TensorRT-LLM's way: kv_cache_free_gpu_mem_fraction of the memory free once the
/// weights are loaded, at the device's bytes per element, divided among the instances. Elsewhere
/// (the CPU) the fraction of the host budget (`petrel serve --kv-cache-bytes`), divided likewise.
/// Either way capped by max_tokens_in_paged_kv_cache and by every running request at full context.
struct KVCachePlan: Equatable {
    /// Bytes of KV cache one instance may take.
    var budgetBytes: Int
    var bytesPerBlock: Int
    var blocks: Int

    init(settings: LLMSettings, config: TransformerConfig, hostBytesPerBlock: Int, hostMemoryBytes: Int,
         device: (any DeviceMemoryReporting)?) throws {
        let instances = settings.instanceCount
        if let device {
            let free = try device.freeMemoryBytes()
            budgetBytes = KVCacheSizing.gpuBudget(freeBytesAfterWeights: free, freeGPUMemoryFraction: settings.freeMemoryFraction) / instances
            bytesPerBlock = KVCacheSizing.bytesPerBlock(layerCount: config.layerCount, kvHeadCount: config.kvHeadCount, headDim: config.headDim,
                                                        blockSize: settings.blockSize, bytesPerElement: device.kvCacheBytesPerElement)
        } else {
            budgetBytes = Int(Double(hostMemoryBytes) * settings.freeMemoryFraction) / instances
            bytesPerBlock = hostBytesPerBlock
        }
        // Never more than every running request at full context needs.
        let cap = settings.maxBatchSize * config.maxPositions * settings.maxBeamWidth / instances
        let tokens = min(settings.maxTokensInPagedKVCache.map { $0 / instances } ?? cap, cap)
        blocks = KVCacheSizing.blockCount(budgetBytes: budgetBytes, bytesPerBlock: bytesPerBlock, blockSize: settings.blockSize,
                                          maxTokens: max(tokens, settings.blockSize))
        guard blocks >= 1 else {
            throw ModelLoadError("the KV cache budget (\(budgetBytes) bytes per instance) holds no block of \(bytesPerBlock) bytes")
        }
    }
}

/// The model's settings from config.pbtxt (TensorRT-LLM's parameter names).
struct LLMSettings {
    var modelPath: String
    var instanceCount: Int
    var decoupled: Bool
    var excludeInputInOutput: Bool
    var maxBatchSize: Int
    var maxBeamWidth: Int
    var maxNumTokens: Int
    var policy: SchedulerConfig.Policy
    var enableKVCacheReuse: Bool
    var enableChunkedContext: Bool
    var blockSize: Int
    var freeMemoryFraction: Double
    var maxTokensInPagedKVCache: Int?
    var queuePolicy: BatcherSettings.QueuePolicy
    /// dynamic_batching's priority_levels: the engine admits lower levels first.
    var priorities: PriorityLevels
    /// tensor_parallel_size × pipeline_parallel_size ranks (Petrel's parameters; TensorRT-LLM
    /// bakes them into the engine). Unset: the server's --tensor-parallel-size / --pipeline-parallel-size.
    var parallel: ParallelConfig
    /// The checkpoint's float matrices quantized at load: `weight_only_precision` (int8 / int4,
    /// TensorRT-LLM's build option), with `weight_only_group_size` (128 or 64) and
    /// `weight_only_zero_points` for int4; "none" turns off the server's --quantization.
    var quantization: WeightQuantization?

    init(config: Inference_ModelConfig, parameters: ModelParameters, directory: String, version: Int64,
         defaultParallel: ParallelConfig = ParallelConfig(), defaultQuantization: WeightQuantization? = nil) throws {
        let source = parameters.source
        if let (_, path) = parameters.path(["gpt_model_path", "model_path", "engine_dir"], relativeTo: directory) {
            modelPath = path
        } else if let found = Self.checkpointIn(directory + "/\(version)") {
            modelPath = found
        } else {
            throw source.parameterError("gpt_model_path", "is required (a GGUF file or a Hugging Face checkpoint folder), or put a .gguf file in \(directory)/\(version)/")
        }
        instanceCount = max(1, config.instanceGroup.reduce(0) { $0 + Int(max($1.count, 1)) })
        decoupled = config.modelTransactionPolicy.decoupled
        excludeInputInOutput = try parameters.bool("exclude_input_in_output", default: false)
        maxBatchSize = config.maxBatchSize > 0 ? Int(config.maxBatchSize) : 64
        maxBeamWidth = try parameters.int("max_beam_width") ?? 1
        guard maxBeamWidth >= 1 else { throw source.parameterError("max_beam_width", "must be >= 1") }
        maxNumTokens = try parameters.int("max_num_tokens") ?? 8192
        guard maxNumTokens >= 1 else { throw source.parameterError("max_num_tokens", "must be >= 1") }
        if let s = parameters.string("batch_scheduler_policy") {
            guard let p = SchedulerConfig.Policy(rawValue: s) else {
                throw source.parameterError("batch_scheduler_policy", "'\(s)' is not one of max_utilization, guaranteed_no_evict")
            }
            policy = p
        } else {
            policy = .guaranteedNoEvict
        }
        enableKVCacheReuse = try parameters.bool("enable_kv_cache_reuse", default: false)
        enableChunkedContext = try parameters.bool("enable_chunked_context", default: false)
        blockSize = try parameters.int("tokens_per_block") ?? 32
        guard blockSize >= 1 else { throw source.parameterError("tokens_per_block", "must be >= 1") }
        freeMemoryFraction = try parameters.double("kv_cache_free_gpu_mem_fraction") ?? 0.9
        guard freeMemoryFraction > 0 && freeMemoryFraction <= 1 else {
            throw source.parameterError("kv_cache_free_gpu_mem_fraction", "must be in (0, 1], got \(freeMemoryFraction)")
        }
        maxTokensInPagedKVCache = try parameters.int("max_tokens_in_paged_kv_cache")
        if let t = maxTokensInPagedKVCache, t < 1 { throw source.parameterError("max_tokens_in_paged_kv_cache", "must be >= 1") }
        parallel = ParallelConfig(tensorParallelSize: try parameters.int("tensor_parallel_size") ?? defaultParallel.tensorParallelSize,
                                  pipelineParallelSize: try parameters.int("pipeline_parallel_size") ?? defaultParallel.pipelineParallelSize)
        if parallel.tensorParallelSize < 1 { throw source.parameterError("tensor_parallel_size", "must be >= 1") }
        if parallel.pipelineParallelSize < 1 { throw source.parameterError("pipeline_parallel_size", "must be >= 1") }
        if let precision = parameters.string("weight_only_precision") {
            do {
                quantization = precision.lowercased() == "none" ? nil
                    : try WeightQuantization(name: precision, groupSize: try parameters.int("weight_only_group_size"),
                                             zeroPoints: try parameters.bool("weight_only_zero_points", default: false))
            } catch let e as QuantizationError {
                throw source.parameterError("weight_only_precision", "\(e)")
            }
        } else if parameters.string("weight_only_group_size") != nil || parameters.string("weight_only_zero_points") != nil {
            throw source.parameterError("weight_only_group_size", "needs weight_only_precision int4")
        } else {
            quantization = defaultQuantization
        }
        if case .dynamicBatching(let d)? = config.schedulingChoice, d.hasDefaultQueuePolicy {
            queuePolicy = BatcherSettings.QueuePolicy(d.defaultQueuePolicy)
        } else {
            queuePolicy = BatcherSettings.QueuePolicy()
        }
        priorities = PriorityLevels(config)
    }

    /// A checkpoint inside a version folder: a .gguf file, or the folder itself when it holds config.json.
    static func checkpointIn(_ folder: String) -> String? {
        let fm = FileManager.default
        if fm.fileExists(atPath: folder + "/config.json") { return folder }
        let files = (try? fm.contentsOfDirectory(atPath: folder)) ?? []
        return files.sorted().first { $0.hasSuffix(".gguf") }.map { folder + "/" + $0 }
    }
}

final class LLMModel: ServedModel, TokenizingModel, Sendable {
    let bundle: ModelBundle
    let settings: LLMSettings
    let engines: [Engine]
    /// Each engine's executor's runner (a lost device context shows there).
    private let runners: [ModelRunner]
    let schedulerConfig: SchedulerConfig
    let recorder: StatisticsRecorder
    let clock: SchedulingClock
    var tokenizer: Tokenizer { bundle.tokenizer }
    var textTokenizer: Tokenizer? { bundle.tokenizer }
    var vocabularySize: Int { bundle.model.config.vocabularySize }
    /// Prompt plus generated tokens at most (the engine's max_seq_len).
    var contextLength: Int { schedulerConfig.maxSequenceLength ?? bundle.model.config.maxPositions }
    /// The tokenizer's end-of-sequence id: the default end_id.
    let defaultEndID: Int32?

    struct Counters {
        var metrics = LLMMetrics()
    }
    let counters = Mutex(Counters())
    /// Client request id → the engine requests it runs (for TensorRT-LLM's `stop` input).
    let running = Mutex<[String: [(engine: Int, id: String)]]>([:])

    /// Inputs this backend reads; any other input given with content is refused.
    static let handledInputs: Set<String> = [
        "input_ids", "input_lengths", "request_output_len", "end_id", "pad_id", "beam_width", "temperature",
        "runtime_top_k", "runtime_top_p", "min_p", "runtime_min_p", "len_penalty", "early_stopping", "repetition_penalty",
        "min_tokens", "min_length", "presence_penalty", "frequency_penalty", "seed", "random_seed", "return_log_probs",
        "exclude_input_in_output", "streaming", "stop", "stop_words_list", "bad_words_list", "num_return_sequences",
    ]

    /// `makeBackend`: one compute backend (called once per rank when the model is sharded).
    /// `deviceSampling`: each instance's ModelRunner.deviceSampling.
    init(settings: LLMSettings, makeBackend: @escaping @Sendable () throws -> ComputeBackend, kvCacheMemoryBytes: Int,
         deviceSampling: Bool = true, recorder: StatisticsRecorder, tokenizers: TokenizerStore) throws {
        self.settings = settings
        self.recorder = recorder
        let clock = SchedulingClock()
        self.clock = clock
        var device: (any DeviceMemoryReporting)?
        if settings.parallel.rankCount > 1 {
            let parallel = settings.parallel
            bundle = try ModelBundle(path: settings.modelPath) { ckpt in
                do {
                    return try ParallelLlamaModel(config: ckpt.config, weights: ckpt.weights, parallel: parallel,
                                                  quantization: settings.quantization, makeBackend: { _ in try makeBackend() })
                } catch let e as ParallelError {
                    throw ModelLoadError("\(parallel): \(e)")
                }
            }
        } else {
            let backend = try makeBackend()
            bundle = try ModelBundle(path: settings.modelPath, backend: backend, quantization: settings.quantization)
            device = backend as? DeviceMemoryReporting
        }
        tokenizers.insert(bundle.tokenizer, at: settings.modelPath)
        let model = bundle.model
        let maxSequence = model.config.maxPositions
        let plan = try KVCachePlan(settings: settings, config: model.config,
                                   hostBytesPerBlock: model.kvCacheLayout(blockCount: 1, blockSize: settings.blockSize).bytesPerBlock,
                                   hostMemoryBytes: kvCacheMemoryBytes, device: device)
        let blocks = plan.blocks
        let schedulerConfig = SchedulerConfig(numBlocks: blocks, blockSize: settings.blockSize, maxBatchSize: settings.maxBatchSize,
                                          maxNumTokens: settings.maxNumTokens, enableChunkedContext: settings.enableChunkedContext,
                                          policy: settings.policy, enableKVCacheReuse: settings.enableKVCacheReuse,
                                          maxBeamWidth: settings.maxBeamWidth, maxSequenceLength: maxSequence)
        self.schedulerConfig = schedulerConfig
        runners = try (0..<settings.instanceCount).map { _ in
            try ModelRunner(model: model, blockCount: blocks, blockSize: settings.blockSize, deviceSampling: deviceSampling)
        }
        engines = try runners.map { try Engine(config: schedulerConfig, executor: ClockedExecutor(runner: $0, clock: clock)) }
        defaultEndID = bundle.tokenizer.eosID ?? model.config.eosTokenIDs.first.map(Int32.init)
        counters.withLock { $0.metrics.maxRequests = settings.maxBatchSize * settings.instanceCount }
    }

    func shutdown() async {
        for e in engines { await e.shutdown() }
    }

    var pendingCount: Int { engines.reduce(0) { $0 + $1.metrics.waitingCount } }

    var failure: String? { runners.lazy.compactMap(\.lostContext).first.map { "\($0)" } }

    var loadSummary: String? {
        let gib = Double(bundle.model.weightBytes) / Double(1 << 30)
        return String(format: "matrices %.2f GiB (%.2f GB)", gib, Double(bundle.model.weightBytes) / 1e9)
            + ", quantization \(settings.quantization.map { "\($0)" } ?? bundle.checkpoint.quantizationSummary)"
            + ", \(settings.parallel.rankCount > 1 ? "\(settings.parallel)" : "1 rank") × \(settings.instanceCount) instance(s)"
    }

    var llmMetrics: LLMMetrics? {
        var m = counters.withLock { $0.metrics }
        for e in engines {
            let s = e.metrics
            m.activeRequests += s.runningCount
            m.scheduledRequests += s.runningCount
            m.waitingRequests += s.waitingCount
            m.preemptionsTotal += s.preemptionsTotal
            m.kvBlocksUsed += s.kvBlocksUsed
            m.kvBlocksFree += s.kvBlocksFree
            m.kvBlocksTotal += s.kvBlocksTotal
            m.kvReuseHits += s.reuseHits
            m.kvReuseQueries += s.reuseQueries
            m.iterationsTotal += s.stepsTotal
            m.lastIterationTokenCount += s.lastStepTokenCount
        }
        m.kvTokensPerBlock = settings.blockSize
        return m
    }

    // MARK: the tensor interface

    func execute(_ r: ModelRequest, send: @escaping ResponseSink) async throws {
        let inputStart = StatisticsRecorder.now()
        for (name, t) in r.inputs where !Self.handledInputs.contains(name) && !t.isTrivial {
            throw InputError(name, "is not supported by Petrel's LLM backend")
        }
        if try r.bool("stop", item: 0) == true {
            stop(clientID: r.id)
            try await send(InferResponse(modelName: "", modelVersion: "", id: r.id, outputs: []))
            return
        }
        var streaming = try r.firstBool(["streaming"], item: 0) ?? false
        if streaming && !settings.decoupled {
            throw InputError("streaming", "is only supported when the model is decoupled (model_transaction_policy { decoupled: true })")
        }
        streaming = streaming && r.context.allowStreaming
        let exclude = try r.bool("exclude_input_in_output", item: 0) ?? settings.excludeInputInOutput
        var items: [Generation] = []
        for i in 0..<r.batchSize {
            guard var ids = try r.ints("input_ids", item: i).map({ $0.map { Int32(truncatingIfNeeded: $0) } }) else {
                throw InputError("input_ids", "is required")
            }
            if let n = try r.int("input_lengths", item: i) {
                guard n >= 1 && n <= ids.count else { throw InputError("input_lengths", "must be in [1, \(ids.count)] (the row of input_ids), got \(n)") }
                ids = Array(ids.prefix(Int(n)))
            }
            guard !ids.isEmpty else { throw InputError("input_ids", "must not be empty") }
            let (p, sampling) = try parseSampling(r, item: i, names: .tensorrtLLM, defaultEndID: defaultEndID)
            var s = sampling
            if let row = try r.ints("stop_words_list", item: i) { s.stopSequences = try parseWordList(row, input: "stop_words_list") }
            if let row = try r.ints("bad_words_list", item: i) { s.badWords = try parseWordList(row, input: "bad_words_list") }
            if p.beamWidth > settings.maxBeamWidth {
                throw InputError("beam_width", "is \(p.beamWidth), more than max_beam_width (\(settings.maxBeamWidth))")
            }
            items.append(Generation(prompt: ids, parameters: p, stop: s, priority: r.context.priority))
            try checkContext(items[i], maxTokensInput: GenerationInputNames.tensorrtLLM.maxTokens)
        }
        let inputNs = StatisticsRecorder.now() - inputStart
        try await run(items, request: r, streaming: streaming, excludeInput: exclude, arrival: inputStart, inputNs: inputNs, send: send)
    }

    /// Per item, what has come back so far.
    private struct ItemState {
        var tokens: [Int32] = []
        var logProbs: [Float] = []
        var cumulative: Double = 0
        var reason: FinishReason?

        mutating func take(_ out: RequestOutput) {
            tokens += out.newTokenIDs
            logProbs += out.logProbs
            cumulative = out.cumulativeLogProb
            if let r = out.finishReason { reason = r }
        }
    }

    /// Submits the items and reads their outputs in place: one item in the calling task, several
    /// in child tasks whose responses take turns (the last one decided and sent last).
    private func run(_ items: [Generation], request r: ModelRequest, streaming: Bool, excludeInput: Bool, arrival: UInt64,
                     inputNs: UInt64, send: @escaping ResponseSink) async throws {
        let handles = try generate(items, clientID: r.id, timeoutMicroseconds: r.context.timeoutMicroseconds, arrival: arrival)
        let inferStart = StatisticsRecorder.now()
        var outputNs: UInt64 = 0
        defer {
            recorder.execution(requestCount: 1, inferences: items.count, inputNs: inputNs,
                               inferNs: StatisticsRecorder.now() - inferStart - outputNs, outputNs: outputNs)
        }
        var states: [ItemState]
        do {
            if handles.count == 1 {
                var state = ItemState()
                try await handles[0].forEach { out in
                    state.take(out)
                    let last = out.finishReason != nil
                    guard streaming && (!out.newTokenIDs.isEmpty || last) else { return }
                    var response = chunkResponse(out, item: 0, request: r)
                    response.isFinal = last
                    if last { response.parameters = finalParameters([state], items) }
                    try await send(response)
                }
                states = [state]
            } else {
                let shared = Locked(Array(repeating: ItemState(), count: items.count))
                let remaining = Locked(items.count)
                let ordered = OrderedSink(send)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (i, handle) in handles.enumerated() {
                        group.addTask { [self] in
                            try await handle.forEach { out in
                                shared.withLock { $0[i].take(out) }
                                guard streaming && (!out.newTokenIDs.isEmpty || out.finishReason != nil) else { return }
                                try await ordered.send {
                                    let last = out.finishReason != nil && remaining.withLock { $0 -= 1; return $0 == 0 }
                                    guard !out.newTokenIDs.isEmpty || last else { return nil }
                                    var response = self.chunkResponse(out, item: i, request: r)
                                    response.isFinal = last
                                    if last { response.parameters = self.finalParameters(shared.current, items) }
                                    return response
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                states = shared.current
            }
        } catch {
            for h in handles { h.cancel() }
            throw error
        }
        if !streaming {
            let t0 = StatisticsRecorder.now()
            var response = wholeResponse(states, items, request: r, excludeInput: excludeInput)
            response.parameters = finalParameters(states, items)
            outputNs = StatisticsRecorder.now() - t0
            try await send(response)
        }
    }

    private func finalParameters(_ states: [ItemState], _ items: [Generation]) -> [String: ParameterValue] {
        [
            "finish_reason": .string(states.first?.reason.map(Self.reasonName) ?? "stop"),
            "prompt_tokens": .int(Int64(items.reduce(0) { $0 + $1.prompt.count })),
            "completion_tokens": .int(Int64(states.reduce(0) { $0 + $1.tokens.count })),
        ]
    }

    /// One streamed chunk of item `item`: its new tokens only (as TensorRT-LLM streams).
    private func chunkResponse(_ out: RequestOutput, item: Int, request r: ModelRequest) -> InferResponse {
        InferResponse(modelName: "", modelVersion: "", id: r.id,
                      outputs: tensorrtLLMOutputs(r.outputs, [GeneratedSequence(chunk: out, batchIndex: item)]), isFinal: false)
    }

    /// The single response of a non-streaming request: [batch, beams = 1, length] padded.
    private func wholeResponse(_ states: [ItemState], _ items: [Generation], request r: ModelRequest, excludeInput: Bool) -> InferResponse {
        let sequences = items.indices.map { i in
            GeneratedSequence(items[i], tokens: states[i].tokens, logProbs: states[i].logProbs,
                              cumulativeLogProb: Float(states[i].cumulative), excludeInput: excludeInput, batchIndex: i)
        }
        return InferResponse(modelName: "", modelVersion: "", id: r.id, outputs: tensorrtLLMOutputs(r.outputs, sequences))
    }
}
