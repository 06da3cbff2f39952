// `petrel repo init`: writes NVIDIA's inflight_batcher_llm repository layout for a checkpoint.
import ArgumentParser
import Serving

struct Repo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Model repository tools.", subcommands: [Init.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a Triton model repository (ensemble, preprocessing, tensorrt_llm, postprocessing, tensorrt_llm_bls) for a checkpoint.")

        @Option(help: "A GGUF file or Hugging Face folder (default: the default model).") var model: String?
        @Option(help: "The repository folder to write.") var output: String
        @Option(name: .customLong("max-batch-size")) var maxBatchSize = 64
        @Option(name: .customLong("batch-scheduler-policy"), help: "max_utilization or guaranteed_no_evict") var policy = "guaranteed_no_evict"
        @Flag(name: .customLong("no-decoupled"), help: "Write tensorrt_llm without decoupled mode (no streaming).") var notDecoupled = false
        @Option(name: .customLong("max-num-tokens"), help: "max_num_tokens: the engine's token budget per step (default: the backend's, 8192).")
        var maxNumTokens: Int?
        @Option(name: .customLong("max-tokens-in-paged-kv-cache"), help: "max_tokens_in_paged_kv_cache: caps the KV cache (default: sized from kv_cache_free_gpu_mem_fraction).")
        var maxTokensInPagedKVCache: Int?
        @Option(name: .customLong("enable-kv-cache-reuse"), help: "enable_kv_cache_reuse: true or false.") var enableKVCacheReuse = true

        func validate() throws {
            guard ["max_utilization", "guaranteed_no_evict"].contains(policy) else {
                throw ValidationError("--batch-scheduler-policy must be max_utilization or guaranteed_no_evict")
            }
            if maxBatchSize < 1 { throw ValidationError("--max-batch-size must be >= 1") }
            if let n = maxNumTokens, n < 1 { throw ValidationError("--max-num-tokens must be >= 1") }
            if let n = maxTokensInPagedKVCache, n < 1 { throw ValidationError("--max-tokens-in-paged-kv-cache must be >= 1") }
        }

        func run() throws {
            var options = RepositoryTemplateOptions()
            options.maxBatchSize = maxBatchSize
            options.batchSchedulerPolicy = policy
            options.decoupled = !notDecoupled
            options.maxNumTokens = maxNumTokens
            options.maxTokensInPagedKVCache = maxTokensInPagedKVCache
            options.enableKVCacheReuse = enableKVCacheReuse
            let written = try RepositoryTemplate.write(modelPath: try model ?? DefaultModel.resolve(), outputDirectory: output, options: options)
            for path in written { print(path) }
        }
    }
}
