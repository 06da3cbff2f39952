// Telemetry: exact text exposition, escaping, histogram semantics, the Triton / TensorRT-LLM
// families from fake samples, and /proc parsing; every rendering is re-read by a strict parser.
import Testing
@testable import Telemetry
import Synchronization

@Suite struct RegistryTests {
    @Test func rendersCountersGaugesAndHistogramsExactly() throws {
        let r = MetricsRegistry()
        let requests = r.counter("requests", help: "Requests served")
        requests.inc(["model": "a", "version": "1"])
        requests.inc(["model": "a", "version": "1"], by: 2)
        requests.inc(["model": "b", "version": "1"])
        r.gauge("queue_depth", help: "Waiting requests").set(7)
        let latency = r.histogram("latency_ms", help: "Latency", buckets: [1, 2.5, 10])
        for v in [0.5, 1, 2, 3, 50] { latency.observe(["model": "a"], v) }

        #expect(r.render() == """
            # HELP requests Requests served
            # TYPE requests counter
            requests{model="a",version="1"} 3
            requests{model="b",version="1"} 1
            # HELP queue_depth Waiting requests
            # TYPE queue_depth gauge
            queue_depth 7
            # HELP latency_ms Latency
            # TYPE latency_ms histogram
            latency_ms_bucket{model="a",le="1"} 2
            latency_ms_bucket{model="a",le="2.5"} 3
            latency_ms_bucket{model="a",le="10"} 4
            latency_ms_bucket{model="a",le="+Inf"} 5
            latency_ms_sum{model="a"} 56.5
            latency_ms_count{model="a"} 5

            """)
        let parsed = try parseExposition(r.render())
        #expect(parsed["latency_ms"]?.samples.count == 6)
    }

    @Test func escapesLabelValuesAndHelp() throws {
        let r = MetricsRegistry()
        r.gauge("g", help: "line one\nback\\slash").set(["model": "we\"ird\\name\nx"], 1.5)
        let text = r.render()
        #expect(text.contains(#"# HELP g line one\nback\\slash"#))
        #expect(text.contains(#"g{model="we\"ird\\name\nx"} 1.5"#))
        let parsed = try parseExposition(text)
        #expect(parsed["g"]?.help == "line one\nback\\slash")
        #expect(parsed["g"]?.samples.first?.labels["model"] == "we\"ird\\name\nx")
        #expect(parsed["g"]?.samples.first?.value == 1.5)
    }

    @Test func formatsSpecialAndLargeValues() {
        #expect(formatValue(42) == "42")
        #expect(formatValue(-3) == "-3")
        #expect(formatValue(0.25) == "0.25")
        #expect(formatValue(.infinity) == "+Inf")
        #expect(formatValue(-.infinity) == "-Inf")
        #expect(formatValue(.nan) == "NaN")
        #expect(formatValue(1e20) == "1e+20")
        #expect(formatValue(1.5e-7) == "1.5e-07")
    }

    @Test func sameNameIsTheSameFamilyAndEmptyFamiliesAreHidden() throws {
        let r = MetricsRegistry()
        r.counter("c", help: "first").inc()
        r.counter("c", help: "second").inc()
        _ = r.gauge("unused", help: "never set")
        #expect(r.render() == "# HELP c first\n# TYPE c counter\nc 2\n")
        #expect(MetricsRegistry().render() == "")
    }

    @Test func histogramBucketsAreUpperInclusive() {
        var h = HistogramSnapshot(upperBounds: [1, 2])
        for v in [1.0, 2.0, 2.0000001, -5] { h.observe(v) }
        #expect(h.bucketCounts == [2, 1, 1])
        #expect(h.count == 4)
    }

    @Test func snapshotsFromCumulativeCounts() {
        let h = HistogramSnapshot(upperBounds: [1, 2, 5], cumulativeCounts: [2, 2, 7], count: 9, sum: 30)
        #expect(h.bucketCounts == [2, 0, 5, 2])
        #expect(h.count == 9)
    }

    @Test func snapshotsReplaceSeries() throws {
        let r = MetricsRegistry()
        let h = r.histogram("h", help: "h", buckets: [10, 20])
        h.observe(["m": "x"], 5)
        h.set(["m": "x"], HistogramSnapshot(upperBounds: [10, 20], bucketCounts: [1, 2, 3], sum: 99))
        let parsed = try parseExposition(r.render())
        let samples = parsed["h"]!.samples
        #expect(samples.map(\.value) == [1, 3, 6, 99, 6])
    }

    @Test func exporterScrapesAFreshRegistryEachTime() throws {
        let calls = Counting()
        let exporter = MetricsExporter(sources: [
            MetricsClosureSource { r in
                calls.bump()
                if calls.value == 1 { r.gauge("loaded", help: "x").set(["model": "gone"], 1) }
                r.counter("scrapes", help: "scrapes").set(Double(calls.value))
            },
        ])
        let first = try parseExposition(exporter.render())
        let second = try parseExposition(exporter.render())
        #expect(first["loaded"] != nil)
        #expect(second["loaded"] == nil)
        #expect(second["scrapes"]?.samples.first?.value == 2)
    }
}

/// A thread-safe call counter for closure sources.
final class Counting: Sendable {
    private let n = Atomic(0)
    var value: Int { n.load(ordering: .relaxed) }
    func bump() { n.wrappingAdd(1, ordering: .relaxed) }
}

@Suite struct TritonFamilyTests {
    @Test func modelInferenceSampleUsesTritonNamesAndLabels() throws {
        var s = ModelInferenceSample(model: "ensemble", version: "1")
        s.requestSuccess = 10
        s.requestFailure = 2
        s.inferenceCount = 10
        s.executionCount = 8
        s.requestDurationUs = 123_456
        s.queueDurationUs = 1_000
        s.computeInputDurationUs = 10
        s.computeInferDurationUs = 100_000
        s.computeOutputDurationUs = 20
        s.pendingRequests = 3
        var first = HistogramSnapshot(upperBounds: [100, 500, 2000, 5000])
        for ms in [50.0, 120, 700, 9000] { first.observe(ms) }
        s.firstResponseMs = first
        let r = MetricsRegistry()
        TritonMetrics.record(s, into: r)
        let p = try parseExposition(r.render())

        let expected: [String: Double] = [
            "nv_inference_request_success": 10, "nv_inference_request_failure": 2, "nv_inference_count": 10,
            "nv_inference_exec_count": 8, "nv_inference_request_duration_us": 123_456,
            "nv_inference_queue_duration_us": 1_000, "nv_inference_compute_input_duration_us": 10,
            "nv_inference_compute_infer_duration_us": 100_000, "nv_inference_compute_output_duration_us": 20,
        ]
        for (name, value) in expected {
            #expect(p[name]?.type == "counter", "\(name)")
            #expect(p[name]?.samples == [Sample(name: name, labels: ["model": "ensemble", "version": "1"], value: value)])
        }
        #expect(p["nv_inference_pending_request_count"]?.type == "gauge")
        #expect(p["nv_inference_pending_request_count"]?.samples.first?.value == 3)
        let h = try #require(p["nv_inference_first_response_histogram_ms"])
        #expect(h.type == "histogram")
        #expect(h.samples.filter { $0.name.hasSuffix("_bucket") }.map { $0.labels["le"]! } == ["100", "500", "2000", "5000", "+Inf"])
        #expect(h.samples.filter { $0.name.hasSuffix("_bucket") }.map(\.value) == [1, 2, 3, 3, 4])
    }

    @Test func llmSampleUsesTensorRTLLMFamilies() throws {
        var s = LLMEngineSample(model: "tensorrt_llm", version: "1")
        s.activeRequests = 4
        s.maxRequests = 64
        s.scheduledRequests = 4
        s.contextRequests = 1
        s.waitingRequests = 2
        s.kvCacheBlocksMax = 1000
        s.kvCacheBlocksFree = 900
        s.kvCacheBlocksUsed = 100
        s.tokensPerKVCacheBlock = 32
        s.iterations = 77
        s.promptTokens = 500
        s.generatedTokens = 1234
        var ttft = HistogramSnapshot(upperBounds: [0.001, 0.01, 0.1, 1, 10])
        ttft.observe(0.03)
        s.timeToFirstToken = ttft
        var itl = HistogramSnapshot(upperBounds: [0.005, 0.05, 0.5])
        itl.observe(0.02)
        itl.observe(0.04)
        s.interTokenLatency = itl
        s.requestLatency = HistogramSnapshot(upperBounds: [1, 10], cumulativeCounts: [1, 3], count: 4, sum: 25)
        s.finishedRequests = ["stop": 9, "length": 3]
        s.preemptions = 5
        s.kvCacheReuseHits = 6
        s.kvCacheReuseQueries = 10
        let r = MetricsRegistry()
        TritonMetrics.record(s, into: r)
        let p = try parseExposition(r.render())

        func value(_ family: String, _ extra: [String: String]) -> Double? {
            let labels = ["model": "tensorrt_llm", "version": "1"].merging(extra) { $1 }
            return p[family]?.samples.first { $0.labels == labels }?.value
        }
        #expect(value("nv_trt_llm_request_metrics", ["request_type": "active"]) == 4)
        #expect(value("nv_trt_llm_request_metrics", ["request_type": "max"]) == 64)
        #expect(value("nv_trt_llm_request_metrics", ["request_type": "scheduled"]) == 4)
        #expect(value("nv_trt_llm_request_metrics", ["request_type": "context"]) == 1)
        #expect(value("nv_trt_llm_request_metrics", ["request_type": "waiting"]) == 2)
        #expect(value("nv_trt_llm_kv_cache_block_metrics", ["kv_cache_block_type": "max"]) == 1000)
        #expect(value("nv_trt_llm_kv_cache_block_metrics", ["kv_cache_block_type": "free"]) == 900)
        #expect(value("nv_trt_llm_kv_cache_block_metrics", ["kv_cache_block_type": "used"]) == 100)
        #expect(value("nv_trt_llm_kv_cache_block_metrics", ["kv_cache_block_type": "tokens_per"]) == 32)
        #expect(value("nv_trt_llm_general_metrics", ["general_type": "iteration_counter"]) == 77)
        #expect(value("petrel_prompt_tokens_total", [:]) == 500)
        #expect(value("petrel_generation_tokens_total", [:]) == 1234)
        #expect(p["petrel_time_to_first_token_seconds"]?.samples.last?.value == 1)
        #expect(p["petrel_inter_token_latency_seconds"]?.samples.last?.value == 2)
        #expect(p["petrel_prompt_tokens_total"]?.type == "counter")
        #expect(value("petrel_request_finished_total", ["finished_reason": "stop"]) == 9)
        #expect(value("petrel_request_finished_total", ["finished_reason": "length"]) == 3)
        #expect(value("petrel_preemptions_total", [:]) == 5)
        #expect(value("petrel_kv_cache_reuse_hits_total", [:]) == 6)
        #expect(value("petrel_kv_cache_reuse_queries_total", [:]) == 10)
        #expect(p["petrel_e2e_request_latency_seconds"]?.samples.map(\.value) == [1, 3, 4, 25, 4])
        // Without a context count there is no `context` series.
        var plain = LLMEngineSample(model: "m", version: "1")
        plain.activeRequests = 1
        let r2 = MetricsRegistry()
        TritonMetrics.record(plain, into: r2)
        let types = try parseExposition(r2.render())["nv_trt_llm_request_metrics"]?.samples.map { $0.labels["request_type"]! }
        #expect(types == ["active", "max", "scheduled", "waiting"])
    }
}

@Suite struct ProcTests {
    @Test func parsesSelfStatWithAWeirdCommandName() {
        // comm may contain spaces and ')' — the last ')' ends it.
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 3 0 250 75 0 0 20 0 9 0 123456 1000000 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        #expect(parseProcSelfStat(text) == ProcSelfStat(userTicks: 250, systemTicks: 75, startTicks: 123456))
        #expect(parseProcSelfStat("garbage") == nil)
    }

    @Test func parsesStatmStatAndMeminfo() {
        #expect(parseProcSelfStatm("5000 1200 300 10 0 900 0\n") == ProcSelfStatm(sizePages: 5000, residentPages: 1200))
        let stat = """
            cpu  100 0 50 800 50 0 0 0 0 0
            cpu0 50 0 25 400 25 0 0 0 0 0
            intr 1 2 3
            btime 1700000000

            """
        let parsed = parseProcStat(stat)
        #expect(parsed?.cpu == CPUTimes(busy: 150, total: 1000))
        #expect(parsed?.bootTime == 1_700_000_000)
        let later = CPUTimes(busy: 250, total: 1200)
        #expect(later.utilization(since: parsed?.cpu) == 0.5)
        #expect(CPUTimes(busy: 150, total: 1000).utilization(since: nil) == 0.15)
        let meminfo = "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:   4000000 kB\n"
        #expect(parseMeminfo(meminfo) == Meminfo(totalBytes: 16_000_000 * 1024, availableBytes: 4_000_000 * 1024))
    }

    #if os(Linux)
    @Test func processMetricsReadThisProcess() throws {
        let source = ProcessMetrics()
        let r = MetricsRegistry()
        source.collect(into: r)
        source.collect(into: r)  // a second scrape measures utilization between the two
        let p = try parseExposition(r.render())
        #expect((p["process_resident_memory_bytes"]?.samples.first?.value ?? 0) > 1_000_000)
        #expect((p["process_virtual_memory_bytes"]?.samples.first?.value ?? 0) > 1_000_000)
        #expect((p["process_cpu_seconds_total"]?.samples.first?.value ?? -1) >= 0)
        #expect((p["process_start_time_seconds"]?.samples.first?.value ?? 0) > 1_500_000_000)
        let utilization = try #require(p["nv_cpu_utilization"]?.samples.first?.value)
        #expect(utilization >= 0 && utilization <= 1)
        #expect((p["nv_cpu_memory_total_bytes"]?.samples.first?.value ?? 0) > 0)
        #expect((p["nv_cpu_memory_used_bytes"]?.samples.first?.value ?? 0) > 0)
    }
    #endif
}

@Suite struct TextTableTests {
    @Test func columnsAreAsWideAsTheirWidestCell() {
        let t = textTable(["Model", "Version", "Status"], [["ensemble", "1", "READY"], ["tensorrt_llm", "1", "UNAVAILABLE: no GPU"], ["x"]])
        #expect(t == """
            +--------------+---------+---------------------+
            | Model        | Version | Status              |
            +--------------+---------+---------------------+
            | ensemble     | 1       | READY               |
            | tensorrt_llm | 1       | UNAVAILABLE: no GPU |
            | x            |         |                     |
            +--------------+---------+---------------------+
            """)
    }
}
