// HTTPServer lifecycle (graceful shutdown finishes in-flight work; the grace period cancels
// what runs longer) and the metrics endpoint on its own port.
import Foundation
import HTTPFrontend
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Serving
import Telemetry
import Testing

@Suite struct ServerLifecycleTests {
    @Test func shutdownLetsInFlightRequestsFinish() async throws {
        let probe = FakeProbe()
        try await withServer(FakeService(probe: probe)) { server, port in
            let c = try RawHTTPConnection(port: port)
            defer { c.hangUp() }
            let body = Array(#"{"id": "late", "text_input": "x", "max_tokens": 8}"#.utf8)
            try await c.write(Array("POST /v2/models/gated/generate_stream HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
            let head = try await c.readHead()
            #expect(head.status == 200)
            var reader = SSEReader()
            var events = reader.feed(try #require(try await c.readChunk()))
            // Shut down mid-stream: the stream still completes.
            let shutdown = Task { await server.shutdown() }
            for _ in 1..<llmPieces.count { probe.release() }
            while let chunk = try await c.readChunk() { events += reader.feed(chunk) }
            #expect(events.count == llmPieces.count)
            await shutdown.value
        }
    }

    @Test func gracePeriodCancelsWhatRunsLonger() async throws {
        let probe = FakeProbe()
        var options = HTTPFrontendOptions()
        options.shutdownGracePeriod = .milliseconds(300)
        try await withServer(FakeService(probe: probe), options: options) { server, port in
            let c = try RawHTTPConnection(port: port)
            defer { c.hangUp() }
            let body = Array(#"{"id": "forever", "text_input": "x"}"#.utf8)
            try await c.write(Array("POST /v2/models/slow/generate HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
            #expect(await probe.wait { $0.started.contains("forever") })
            let start = ContinuousClock.now
            await server.shutdown()
            #expect(await probe.wait { $0.cancelled.contains("forever") }, "the in-flight request was not cancelled")
            #expect(ContinuousClock.now - start < .seconds(10))
        }
    }
}

@Suite struct MetricsEndpointTests {
    @Test func servesPrometheusText() async throws {
        let exporter = MetricsExporter(sources: [
            MetricsClosureSource { r in
                var s = ModelInferenceSample(model: "ensemble", version: "1")
                s.requestSuccess = 5
                TritonMetrics.record(s, into: r)
            },
            ProcessMetrics(),
        ])
        let app = makeMetricsApplication(logger: quietLogger) { exporter.render() }
        try await app.test(.live) { client in
            let r = try await client.execute(uri: "/metrics", method: .get)
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            let body = text(r.body)
            #expect(body.contains("# TYPE nv_inference_request_success counter\n"))
            #expect(body.contains("nv_inference_request_success{model=\"ensemble\",version=\"1\"} 5\n"))
            #expect(body.contains("# TYPE process_resident_memory_bytes gauge\n"))
            // Every line is a comment or `name{labels} value`.
            for line in body.split(separator: "\n") where !line.hasPrefix("#") {
                let value = try #require(line.split(separator: " ").last)
                #expect(Double(value) != nil, "\(line)")
            }
            #expect(try await client.execute(uri: "/metrics/extra", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/metrics", method: .post).status == .methodNotAllowed)
        }
    }

    /// Serving's snapshot, mapped onto Triton's and TensorRT-LLM's families.
    @Test func servingSnapshotBecomesTritonFamilies() throws {
        var stats = ModelStatistics(name: "tensorrt_llm", version: "1")
        stats.success.count = 4
        stats.success.ns = 3_000_000
        stats.fail.count = 1
        stats.fail.ns = 1_000_000
        stats.inferenceCount = 5
        stats.executionCount = 3
        stats.queue.ns = 2_500
        var first = Serving.Histogram(upperBounds: Serving.Histogram.firstResponseMillisecondsBounds)
        first.observe(120)
        first.observe(50)
        var llm = LLMMetrics()
        llm.activeRequests = 2
        llm.maxRequests = 8
        llm.waitingRequests = 1
        llm.kvBlocksTotal = 100
        llm.kvBlocksUsed = 30
        llm.kvBlocksFree = 70
        llm.kvTokensPerBlock = 16
        llm.promptTokensTotal = 40
        llm.generatedTokensTotal = 60
        llm.timeToFirstTokenSeconds.observe(0.2)
        llm.finishedRequests = ["stop": 4]
        let snapshot = ServingMetricsSnapshot(models: [
            ModelMetricsSnapshot(name: "tensorrt_llm", version: "1", statistics: stats, pendingRequests: 1, inflightRequests: 3,
                                 firstResponseMilliseconds: first, llm: llm),
        ])
        let text = MetricsExporter(sources: [ServingMetrics(FixedSnapshot(snapshot: snapshot))]).render()
        let labels = #"{model="tensorrt_llm",version="1"}"#
        for line in [
            "nv_inference_request_success\(labels) 4", "nv_inference_request_failure\(labels) 1",
            "nv_inference_count\(labels) 5", "nv_inference_exec_count\(labels) 3",
            "nv_inference_request_duration_us\(labels) 4000", "nv_inference_queue_duration_us\(labels) 2",
            "nv_inference_pending_request_count\(labels) 1",
            #"nv_inference_first_response_histogram_ms_bucket{model="tensorrt_llm",version="1",le="100"} 1"#,
            #"nv_inference_first_response_histogram_ms_bucket{model="tensorrt_llm",version="1",le="500"} 2"#,
            #"nv_trt_llm_request_metrics{model="tensorrt_llm",version="1",request_type="active"} 2"#,
            #"nv_trt_llm_kv_cache_block_metrics{model="tensorrt_llm",version="1",kv_cache_block_type="used"} 30"#,
            #"nv_trt_llm_kv_cache_block_metrics{model="tensorrt_llm",version="1",kv_cache_block_type="tokens_per"} 16"#,
            "petrel_prompt_tokens_total\(labels) 40", "petrel_generation_tokens_total\(labels) 60",
            #"petrel_time_to_first_token_seconds_bucket{model="tensorrt_llm",version="1",le="0.25"} 1"#,
            #"petrel_request_finished_total{model="tensorrt_llm",version="1",finished_reason="stop"} 4"#,
        ] {
            #expect(text.contains(line + "\n"), "missing: \(line)")
        }
    }

    @Test func httpServerCanServeMetricsToo() async throws {
        let server = HTTPServer(service: FakeService(), options: HTTPFrontendOptions(host: "127.0.0.1", port: 0),
                                metrics: (MetricsEndpointOptions(host: "127.0.0.1", port: 0), { "up 1\n" }),
                                logger: quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let ports = await server.boundPorts()
            let c = try RawHTTPConnection(port: try #require(ports["metrics"]))
            let (head, body) = try await c.request("GET", "/metrics")
            #expect(head.status == 200)
            #expect(String(decoding: body, as: UTF8.self) == "up 1\n")
            let h = try RawHTTPConnection(port: try #require(ports["http"]))
            #expect(try await h.request("GET", "/v2/health/live").0.status == 200)
            c.hangUp()
            h.hangUp()
            await server.shutdown()
            try await group.waitForAll()
        }
    }
}

struct FixedSnapshot: ServingMetricsSource {
    let snapshot: ServingMetricsSnapshot
    func metricsSnapshot() -> ServingMetricsSnapshot { snapshot }
}
