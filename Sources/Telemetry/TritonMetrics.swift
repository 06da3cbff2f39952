// TritonMetrics: the metric families users of Triton and the TensorRT-LLM backend scrape, with
// their names, help texts and labels in one place. Sources hand over plain samples (per model
// version); these functions write them into a scrape's registry.

/// Triton's per-model inference figures (labels `model`, `version`). Durations are cumulative
/// microseconds, as Triton's counters are.
public struct ModelInferenceSample: Sendable {
    public var model: String
    public var version: String
    public var requestSuccess: UInt64 = 0
    public var requestFailure: UInt64 = 0
    public var inferenceCount: UInt64 = 0
    public var executionCount: UInt64 = 0
    public var requestDurationUs: UInt64 = 0
    public var queueDurationUs: UInt64 = 0
    public var computeInputDurationUs: UInt64 = 0
    public var computeInferDurationUs: UInt64 = 0
    public var computeOutputDurationUs: UInt64 = 0
    public var pendingRequests: Int = 0
    /// Request to first response, in milliseconds (the snapshot carries its bounds: Serving's).
    public var firstResponseMs: HistogramSnapshot?

    public init(model: String, version: String) {
        self.model = model
        self.version = version
    }
}

/// In-flight batching figures of one LLM model (TensorRT-LLM backend names, plus Petrel's
/// token-latency histograms and token counters).
public struct LLMEngineSample: Sendable {
    public var model: String
    public var version: String
    public var activeRequests = 0
    public var maxRequests = 0
    public var scheduledRequests = 0
    /// Requests in their context (prefill) phase; nil when the engine does not count them.
    public var contextRequests: Int?
    public var waitingRequests = 0
    public var kvCacheBlocksMax = 0
    public var kvCacheBlocksFree = 0
    public var kvCacheBlocksUsed = 0
    public var tokensPerKVCacheBlock = 0
    public var iterations: UInt64?
    public var promptTokens: UInt64 = 0
    public var generatedTokens: UInt64 = 0
    /// Seconds (the snapshot carries its bounds: Serving's).
    public var timeToFirstToken: HistogramSnapshot?
    /// Seconds between consecutive tokens of a request.
    public var interTokenLatency: HistogramSnapshot?
    /// Seconds from arrival to the last token.
    public var requestLatency: HistogramSnapshot?
    /// Finished requests by reason ("stop", "length", "cancelled", "error").
    public var finishedRequests: [String: UInt64] = [:]
    public var preemptions: UInt64 = 0
    /// Prefix reuse: KV blocks found cached, and blocks looked up.
    public var kvCacheReuseHits: UInt64 = 0
    public var kvCacheReuseQueries: UInt64 = 0

    public init(model: String, version: String) {
        self.model = model
        self.version = version
    }
}

public enum TritonMetrics {
    public static func record(_ s: ModelInferenceSample, into r: MetricsRegistry) {
        let l: Labels = ["model": s.model, "version": s.version]
        let counters: [(String, String, UInt64)] = [
            ("nv_inference_request_success", "Number of successful inference requests, all batch sizes", s.requestSuccess),
            ("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", s.requestFailure),
            ("nv_inference_count", "Number of inferences performed (does not include cached requests)", s.inferenceCount),
            ("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)", s.executionCount),
            ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds (includes cached requests)", s.requestDurationUs),
            ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds (includes cached requests)", s.queueDurationUs),
            ("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds (does not include cached requests)", s.computeInputDurationUs),
            ("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds (does not include cached requests)", s.computeInferDurationUs),
            ("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds (does not include cached requests)", s.computeOutputDurationUs),
        ]
        for (name, help, value) in counters { r.counter(name, help: help).set(l, Double(value)) }
        r.gauge("nv_inference_pending_request_count",
                help: "Instantaneous number of pending requests awaiting execution per-model.")
            .set(l, Double(s.pendingRequests))
        if let h = s.firstResponseMs {
            r.histogram("nv_inference_first_response_histogram_ms",
                        help: "Duration from request to first response in milliseconds", buckets: h.upperBounds)
                .set(l, h)
        }
    }

    public static func record(_ s: LLMEngineSample, into r: MetricsRegistry) {
        let l: Labels = ["model": s.model, "version": s.version]
        let requests = r.gauge("nv_trt_llm_request_metrics", help: "TRT LLM request metrics")
        var requestTypes = [("active", s.activeRequests), ("max", s.maxRequests), ("scheduled", s.scheduledRequests)]
        if let context = s.contextRequests { requestTypes.append(("context", context)) }
        requestTypes.append(("waiting", s.waitingRequests))
        for (type, value) in requestTypes {
            requests.set(l.appending("request_type", type), Double(value))
        }
        let blocks = r.gauge("nv_trt_llm_kv_cache_block_metrics", help: "TRT LLM KV cache block metrics")
        for (type, value) in [("max", s.kvCacheBlocksMax), ("free", s.kvCacheBlocksFree), ("used", s.kvCacheBlocksUsed),
                              ("tokens_per", s.tokensPerKVCacheBlock)] {
            blocks.set(l.appending("kv_cache_block_type", type), Double(value))
        }
        if let iterations = s.iterations {
            r.gauge("nv_trt_llm_general_metrics", help: "General TRT LLM metrics")
                .set(l.appending("general_type", "iteration_counter"), Double(iterations))
        }
        r.counter("petrel_prompt_tokens_total", help: "Prompt tokens processed").set(l, Double(s.promptTokens))
        r.counter("petrel_generation_tokens_total", help: "Tokens generated").set(l, Double(s.generatedTokens))
        r.counter("petrel_preemptions_total", help: "Requests preempted (KV blocks reclaimed, to be recomputed)")
            .set(l, Double(s.preemptions))
        r.counter("petrel_kv_cache_reuse_hits_total", help: "KV cache blocks found cached by prefix reuse")
            .set(l, Double(s.kvCacheReuseHits))
        r.counter("petrel_kv_cache_reuse_queries_total", help: "KV cache blocks looked up for prefix reuse")
            .set(l, Double(s.kvCacheReuseQueries))
        if !s.finishedRequests.isEmpty {
            let finished = r.counter("petrel_request_finished_total", help: "Finished requests by reason")
            for reason in s.finishedRequests.keys.sorted() {
                finished.set(l.appending("finished_reason", reason), Double(s.finishedRequests[reason]!))
            }
        }
        if let h = s.timeToFirstToken {
            r.histogram("petrel_time_to_first_token_seconds",
                        help: "Time from request arrival to its first generated token, in seconds", buckets: h.upperBounds)
                .set(l, h)
        }
        if let h = s.requestLatency {
            r.histogram("petrel_e2e_request_latency_seconds",
                        help: "Time from request arrival to its last token, in seconds", buckets: h.upperBounds)
                .set(l, h)
        }
        if let h = s.interTokenLatency {
            r.histogram("petrel_inter_token_latency_seconds",
                        help: "Time between consecutive generated tokens of a request, in seconds", buckets: h.upperBounds)
                .set(l, h)
        }
    }
}
