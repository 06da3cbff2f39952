// `petrel repo init`: writes NVIDIA's inflight_batcher_llm model repository for a checkpoint —
// ensemble, preprocessing, tensorrt_llm, postprocessing, tensorrt_llm_bls — with the tensor
// names, datatypes, dims and `parameters` keys of TensorRT-LLM's templates (the inputs and
// outputs Petrel implements; multimodal, LoRA, speculative and logits tensors are left out).
import Foundation

public struct RepositoryTemplateOptions: Sendable {
    /// triton_max_batch_size.
    public var maxBatchSize = 64
    /// decoupled_mode of tensorrt_llm and tensorrt_llm_bls (streaming needs it).
    public var decoupled = true
    /// tokenizer_dir of the tokenizer models; nil: the checkpoint itself.
    public var tokenizerPath: String?
    /// batch_scheduler_policy: "max_utilization" or "guaranteed_no_evict".
    public var batchSchedulerPolicy = "guaranteed_no_evict"
    public var kvCacheFreeMemoryFraction = 0.9
    /// max_tokens_in_paged_kv_cache (nil: sized from kv_cache_free_gpu_mem_fraction).
    public var maxTokensInPagedKVCache: Int?
    public var enableKVCacheReuse = true
    public var enableChunkedContext = true
    public var maxBeamWidth = 1
    /// max_num_tokens per engine step (nil: the backend's default).
    public var maxNumTokens: Int?
    /// exclude_input_in_output: text_output holds only the generated text.
    public var excludeInputInOutput = true
    public var maxQueueDelayMicroseconds = 0
    /// default_queue_policy.max_queue_size of preprocessing and tensorrt_llm (0: unbounded).
    public var maxQueueSize = 0
    public var preprocessingInstanceCount = 1
    public var postprocessingInstanceCount = 1
    public var blsInstanceCount = 1
    public var addSpecialTokens = true
    public var skipSpecialTokens = true
    /// tensorrt_llm_bls streams the whole text so far (true) or the new text (false).
    public var accumulateTokens = false

    public init() {}
}

public struct RepositoryTemplateError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

public enum RepositoryTemplate {
    /// The models written, in load order.
    public static let modelNames = ["preprocessing", "tensorrt_llm", "postprocessing", "ensemble", "tensorrt_llm_bls"]

    /// Writes `<outputDirectory>/<model>/config.pbtxt` and `<model>/1/` for every model.
    /// `modelPath` is a GGUF file or a Hugging Face checkpoint folder (with tokenizer.json);
    /// it is written as an absolute path. Returns the config files written.
    @discardableResult
    public static func write(modelPath: String, outputDirectory: String, options: RepositoryTemplateOptions = .init()) throws -> [String] {
        let fm = FileManager.default
        let cwd = fm.currentDirectoryPath
        let model = resolvePath(modelPath, relativeTo: cwd)
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: model, isDirectory: &isDir) else {
            throw RepositoryTemplateError("no checkpoint at \(model)")
        }
        if isDir.boolValue && !fm.fileExists(atPath: model + "/config.json") {
            throw RepositoryTemplateError("\(model) is a folder without config.json: not a Hugging Face checkpoint")
        }
        let tokenizer = options.tokenizerPath.map { resolvePath($0, relativeTo: cwd) } ?? model
        if fm.fileExists(atPath: tokenizer, isDirectory: &isDir), isDir.boolValue, !fm.fileExists(atPath: tokenizer + "/tokenizer.json"),
           !fm.fileExists(atPath: tokenizer + "/tokenizer.gguf") {
            throw RepositoryTemplateError("\(tokenizer) has no tokenizer.json or tokenizer.gguf (give a tokenizer path)")
        }
        guard ["max_utilization", "guaranteed_no_evict"].contains(options.batchSchedulerPolicy) else {
            throw RepositoryTemplateError("batch scheduler policy '\(options.batchSchedulerPolicy)' is not max_utilization or guaranteed_no_evict")
        }
        guard options.maxBatchSize >= 1 else { throw RepositoryTemplateError("max batch size must be >= 1") }

        let out = resolvePath(outputDirectory, relativeTo: cwd)
        let configs = [
            ("preprocessing", preprocessing(options, tokenizer: tokenizer)),
            ("tensorrt_llm", tensorrtLLM(options, model: model)),
            ("postprocessing", postprocessing(options, tokenizer: tokenizer)),
            ("ensemble", ensemble(options)),
            ("tensorrt_llm_bls", bls(options, tokenizer: tokenizer)),
        ]
        var written: [String] = []
        for (name, text) in configs {
            let dir = out + "/" + name
            try fm.createDirectory(atPath: dir + "/1", withIntermediateDirectories: true)
            let path = dir + "/config.pbtxt"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            written.append(path)
        }
        return written
    }

    // MARK: the five configs

    struct Tensor {
        var name: String
        var type: String
        var dims: [Int]
        var optional = false
        var scalar = false      // reshape: { shape: [ ] }
        var ragged = false      // allow_ragged_batch
    }

    static func tensors(_ key: String, _ list: [Tensor]) -> String {
        let items = list.map { t in
            var s = "  {\n    name: \"\(t.name)\"\n    data_type: \(t.type)\n    dims: [ \(t.dims.map(String.init).joined(separator: ", ")) ]\n"
            if t.scalar { s += "    reshape: { shape: [ ] }\n" }
            if t.optional { s += "    optional: true\n" }
            if t.ragged { s += "    allow_ragged_batch: true\n" }
            return s + "  }"
        }
        return "\(key) [\n" + items.joined(separator: ",\n") + "\n]\n"
    }

    static func parameters(_ list: [(String, String)]) -> String {
        list.map { "parameters: {\n  key: \"\($0.0)\"\n  value: {\n    string_value: \"\(escape($0.1))\"\n  }\n}\n" }.joined()
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }

    static func instances(_ count: Int) -> String {
        "instance_group [\n  {\n    count: \(count)\n    kind: KIND_CPU\n  }\n]\n"
    }

    static func flag(_ b: Bool) -> String { b ? "true" : "false" }

    /// The sampling inputs shared by the ensemble and the BLS model (TensorRT-LLM's names there).
    static let textSamplingInputs: [Tensor] = [
        Tensor(name: "bad_words", type: "TYPE_STRING", dims: [-1], optional: true),
        Tensor(name: "stop_words", type: "TYPE_STRING", dims: [-1], optional: true),
        Tensor(name: "exclude_input_in_output", type: "TYPE_BOOL", dims: [1], optional: true),
        Tensor(name: "end_id", type: "TYPE_INT32", dims: [1], optional: true),
        Tensor(name: "pad_id", type: "TYPE_INT32", dims: [1], optional: true),
        Tensor(name: "top_k", type: "TYPE_INT32", dims: [1], optional: true),
        Tensor(name: "top_p", type: "TYPE_FP32", dims: [1], optional: true),
        Tensor(name: "temperature", type: "TYPE_FP32", dims: [1], optional: true),
        Tensor(name: "length_penalty", type: "TYPE_FP32", dims: [1], optional: true),
        Tensor(name: "repetition_penalty", type: "TYPE_FP32", dims: [1], optional: true),
        Tensor(name: "min_tokens", type: "TYPE_INT32", dims: [1], optional: true),
        Tensor(name: "presence_penalty", type: "TYPE_FP32", dims: [1], optional: true),
        Tensor(name: "frequency_penalty", type: "TYPE_FP32", dims: [1], optional: true),
        Tensor(name: "seed", type: "TYPE_UINT64", dims: [1], optional: true),
        Tensor(name: "return_log_probs", type: "TYPE_BOOL", dims: [1], optional: true),
        Tensor(name: "num_return_sequences", type: "TYPE_INT32", dims: [1], optional: true),
        Tensor(name: "beam_width", type: "TYPE_INT32", dims: [1], optional: true),
        Tensor(name: "stream", type: "TYPE_BOOL", dims: [1], optional: true),
    ]

    static let textOutputs: [Tensor] = [
        Tensor(name: "text_output", type: "TYPE_STRING", dims: [-1]),
        Tensor(name: "cum_log_probs", type: "TYPE_FP32", dims: [-1]),
        Tensor(name: "output_log_probs", type: "TYPE_FP32", dims: [-1, -1]),
        Tensor(name: "batch_index", type: "TYPE_INT32", dims: [1]),
        Tensor(name: "sequence_index", type: "TYPE_INT32", dims: [1]),
    ]

    static func preprocessing(_ o: RepositoryTemplateOptions, tokenizer: String) -> String {
        """
        # Tokenizer step of the ensemble: text → input_ids, stop / bad word lists, end and pad ids.
        # NVIDIA ships this as a Python model; Petrel recognises it by its tensors and runs its
        # built-in tokenizer backend (no model.py needed).
        name: "preprocessing"
        backend: "python"
        max_batch_size: \(o.maxBatchSize)

        dynamic_batching {
          preferred_batch_size: [ \(o.maxBatchSize) ]
          max_queue_delay_microseconds: \(o.maxQueueDelayMicroseconds)
          default_queue_policy: { max_queue_size: \(o.maxQueueSize) }
        }

        """ + tensors("input", [
            Tensor(name: "QUERY", type: "TYPE_STRING", dims: [1]),
            Tensor(name: "REQUEST_OUTPUT_LEN", type: "TYPE_INT32", dims: [1]),
            Tensor(name: "BAD_WORDS_DICT", type: "TYPE_STRING", dims: [-1], optional: true),
            Tensor(name: "STOP_WORDS_DICT", type: "TYPE_STRING", dims: [-1], optional: true),
            Tensor(name: "END_ID", type: "TYPE_INT32", dims: [1], optional: true),
            Tensor(name: "PAD_ID", type: "TYPE_INT32", dims: [1], optional: true),
        ]) + tensors("output", [
            Tensor(name: "INPUT_ID", type: "TYPE_INT32", dims: [-1]),
            Tensor(name: "REQUEST_INPUT_LEN", type: "TYPE_INT32", dims: [1]),
            Tensor(name: "BAD_WORDS_IDS", type: "TYPE_INT32", dims: [2, -1]),
            Tensor(name: "STOP_WORDS_IDS", type: "TYPE_INT32", dims: [2, -1]),
            Tensor(name: "REQUEST_OUTPUT_LEN", type: "TYPE_INT32", dims: [-1]),
            Tensor(name: "OUT_END_ID", type: "TYPE_INT32", dims: [1]),
            Tensor(name: "OUT_PAD_ID", type: "TYPE_INT32", dims: [1]),
        ]) + "\n" + parameters([
            ("tokenizer_dir", tokenizer),
            ("add_special_tokens", flag(o.addSpecialTokens)),
        ]) + "\n" + instances(o.preprocessingInstanceCount)
    }

    static func postprocessing(_ o: RepositoryTemplateOptions, tokenizer: String) -> String {
        """
        # Detokenizer step of the ensemble: token ids → text (UTF-8 safe across streamed chunks).
        # NVIDIA ships this as a Python model; Petrel runs its built-in tokenizer backend.
        name: "postprocessing"
        backend: "python"
        max_batch_size: \(o.maxBatchSize)
        dynamic_batching {}

        """ + tensors("input", [
            Tensor(name: "TOKENS_BATCH", type: "TYPE_INT32", dims: [-1, -1]),
            Tensor(name: "SEQUENCE_LENGTH", type: "TYPE_INT32", dims: [-1]),
        ]) + tensors("output", [
            Tensor(name: "OUTPUT", type: "TYPE_STRING", dims: [-1]),
        ]) + "\n" + parameters([
            ("tokenizer_dir", tokenizer),
            ("skip_special_tokens", flag(o.skipSpecialTokens)),
        ]) + "\n" + instances(o.postprocessingInstanceCount)
    }

    static func tensorrtLLM(_ o: RepositoryTemplateOptions, model: String) -> String {
        var params: [(String, String)] = [
            ("max_beam_width", String(o.maxBeamWidth)),
            ("FORCE_CPU_ONLY_INPUT_TENSORS", "no"),
            ("gpt_model_type", "inflight_fused_batching"),
            ("gpt_model_path", model),
        ]
        if let t = o.maxTokensInPagedKVCache { params.append(("max_tokens_in_paged_kv_cache", String(t))) }
        params += [
            ("batch_scheduler_policy", o.batchSchedulerPolicy),
            ("kv_cache_free_gpu_mem_fraction", String(o.kvCacheFreeMemoryFraction)),
            ("exclude_input_in_output", flag(o.excludeInputInOutput)),
            ("enable_kv_cache_reuse", flag(o.enableKVCacheReuse)),
            ("enable_chunked_context", flag(o.enableChunkedContext)),
        ]
        if let n = o.maxNumTokens { params.append(("max_num_tokens", String(n))) }
        let scalar = { (name: String, type: String) in Tensor(name: name, type: type, dims: [1], optional: true, scalar: true) }
        return """
        # The LLM: in-flight batching over a paged KV cache (Petrel's engine in place of TensorRT-LLM's).
        # gpt_model_path names the checkpoint: a GGUF file or a Hugging Face folder.
        name: "tensorrt_llm"
        backend: "tensorrtllm"
        max_batch_size: \(o.maxBatchSize)

        model_transaction_policy {
          decoupled: \(flag(o.decoupled))
        }

        dynamic_batching {
          preferred_batch_size: [ \(o.maxBatchSize) ]
          max_queue_delay_microseconds: \(o.maxQueueDelayMicroseconds)
          default_queue_policy: { max_queue_size: \(o.maxQueueSize) }
        }

        """ + tensors("input", [
            Tensor(name: "input_ids", type: "TYPE_INT32", dims: [-1], optional: true, ragged: true),
            Tensor(name: "input_lengths", type: "TYPE_INT32", dims: [1], scalar: true),
            Tensor(name: "request_output_len", type: "TYPE_INT32", dims: [1], scalar: true),
            scalar("num_return_sequences", "TYPE_INT32"),
            scalar("end_id", "TYPE_INT32"),
            scalar("pad_id", "TYPE_INT32"),
            Tensor(name: "stop_words_list", type: "TYPE_INT32", dims: [2, -1], optional: true, ragged: true),
            Tensor(name: "bad_words_list", type: "TYPE_INT32", dims: [2, -1], optional: true, ragged: true),
            scalar("beam_width", "TYPE_INT32"),
            scalar("temperature", "TYPE_FP32"),
            scalar("runtime_top_k", "TYPE_INT32"),
            scalar("runtime_top_p", "TYPE_FP32"),
            scalar("len_penalty", "TYPE_FP32"),
            scalar("early_stopping", "TYPE_BOOL"),
            scalar("repetition_penalty", "TYPE_FP32"),
            scalar("min_tokens", "TYPE_INT32"),
            scalar("presence_penalty", "TYPE_FP32"),
            scalar("frequency_penalty", "TYPE_FP32"),
            scalar("seed", "TYPE_UINT64"),
            scalar("return_log_probs", "TYPE_BOOL"),
            scalar("exclude_input_in_output", "TYPE_BOOL"),
            scalar("stop", "TYPE_BOOL"),
            scalar("streaming", "TYPE_BOOL"),
        ]) + tensors("output", [
            Tensor(name: "output_ids", type: "TYPE_INT32", dims: [-1, -1]),
            Tensor(name: "sequence_length", type: "TYPE_INT32", dims: [-1]),
            Tensor(name: "cum_log_probs", type: "TYPE_FP32", dims: [-1]),
            Tensor(name: "output_log_probs", type: "TYPE_FP32", dims: [-1, -1]),
            Tensor(name: "batch_index", type: "TYPE_INT32", dims: [1]),
            Tensor(name: "sequence_index", type: "TYPE_INT32", dims: [1]),
        ]) + instances(1) + parameters(params)
    }

    static func ensemble(_ o: RepositoryTemplateOptions) -> String {
        func map(_ key: String, _ pairs: [(String, String)]) -> String {
            pairs.map { "      \(key) {\n        key: \"\($0.0)\"\n        value: \"\($0.1)\"\n      }\n" }.joined()
        }
        func step(_ model: String, inputs: [(String, String)], outputs: [(String, String)]) -> String {
            "    {\n      model_name: \"\(model)\"\n      model_version: -1\n" + map("input_map", inputs) + map("output_map", outputs) + "    }"
        }
        let steps = [
            step("preprocessing", inputs: [
                ("QUERY", "text_input"), ("REQUEST_OUTPUT_LEN", "max_tokens"), ("BAD_WORDS_DICT", "bad_words"),
                ("STOP_WORDS_DICT", "stop_words"), ("END_ID", "end_id"), ("PAD_ID", "pad_id"),
            ], outputs: [
                ("REQUEST_INPUT_LEN", "_REQUEST_INPUT_LEN"), ("INPUT_ID", "_INPUT_ID"), ("REQUEST_OUTPUT_LEN", "_REQUEST_OUTPUT_LEN"),
                ("STOP_WORDS_IDS", "_STOP_WORDS_IDS"), ("BAD_WORDS_IDS", "_BAD_WORDS_IDS"),
                ("OUT_END_ID", "_PREPROCESSOR_END_ID"), ("OUT_PAD_ID", "_PREPROCESSOR_PAD_ID"),
            ]),
            step("tensorrt_llm", inputs: [
                ("input_ids", "_INPUT_ID"), ("input_lengths", "_REQUEST_INPUT_LEN"), ("exclude_input_in_output", "exclude_input_in_output"),
                ("request_output_len", "_REQUEST_OUTPUT_LEN"), ("end_id", "_PREPROCESSOR_END_ID"), ("pad_id", "_PREPROCESSOR_PAD_ID"),
                ("runtime_top_k", "top_k"), ("runtime_top_p", "top_p"), ("temperature", "temperature"), ("len_penalty", "length_penalty"),
                ("repetition_penalty", "repetition_penalty"), ("min_tokens", "min_tokens"), ("presence_penalty", "presence_penalty"),
                ("frequency_penalty", "frequency_penalty"), ("seed", "seed"), ("return_log_probs", "return_log_probs"),
                ("num_return_sequences", "num_return_sequences"), ("beam_width", "beam_width"), ("streaming", "stream"),
                ("stop_words_list", "_STOP_WORDS_IDS"), ("bad_words_list", "_BAD_WORDS_IDS"),
            ], outputs: [
                ("output_ids", "_TOKENS_BATCH"), ("sequence_length", "_SEQUENCE_LENGTH"), ("cum_log_probs", "cum_log_probs"),
                ("output_log_probs", "output_log_probs"), ("batch_index", "batch_index"), ("sequence_index", "sequence_index"),
            ]),
            step("postprocessing", inputs: [
                ("TOKENS_BATCH", "_TOKENS_BATCH"), ("SEQUENCE_LENGTH", "_SEQUENCE_LENGTH"),
            ], outputs: [
                ("OUTPUT", "text_output"),
            ]),
        ]
        return """
        # Text in, text out: preprocessing (tokenize) → tensorrt_llm (generate) → postprocessing
        # (detokenize). With a decoupled tensorrt_llm every streamed response flows through
        # postprocessing and becomes one ensemble response (generate_stream).
        name: "ensemble"
        platform: "ensemble"
        max_batch_size: \(o.maxBatchSize)

        """ + tensors("input", [
            Tensor(name: "text_input", type: "TYPE_STRING", dims: [1]),
            Tensor(name: "max_tokens", type: "TYPE_INT32", dims: [1]),
        ] + textSamplingInputs) + tensors("output", textOutputs)
            + "ensemble_scheduling {\n  step [\n" + steps.joined(separator: ",\n") + "\n  ]\n}\n"
    }

    static func bls(_ o: RepositoryTemplateOptions, tokenizer: String) -> String {
        """
        # Business-logic route: text in, text out, straight through the tokenizer and the
        # tensorrt_llm model's engine (no ensemble hops). NVIDIA ships this as a Python model;
        # Petrel recognises it by its tensors.
        name: "tensorrt_llm_bls"
        backend: "python"
        max_batch_size: \(o.maxBatchSize)

        model_transaction_policy {
          decoupled: \(flag(o.decoupled))
        }

        """ + tensors("input", [
            Tensor(name: "text_input", type: "TYPE_STRING", dims: [1]),
            Tensor(name: "max_tokens", type: "TYPE_INT32", dims: [1]),
        ] + textSamplingInputs) + tensors("output", textOutputs) + "\n" + parameters([
            ("accumulate_tokens", flag(o.accumulateTokens)),
            ("tensorrt_llm_model_name", "tensorrt_llm"),
            ("tokenizer_dir", tokenizer),
            ("add_special_tokens", flag(o.addSpecialTokens)),
            ("skip_special_tokens", flag(o.skipSpecialTokens)),
        ]) + "\n" + instances(o.blsInstanceCount)
    }
}
