// The LLM backend's sizing and bookkeeping: the KV cache on a device that reports its memory,
// the queue duration (arrival to first scheduling), and sharded (TP / PP) models served.
import CPUCompute
import Compute
import Foundation
import Parallel
import Runtime
@testable import Serving
import Synchronization
import TestFixtures
import Testing
import TritonProtos

/// A device that reports `free` bytes free and `bytesPerElement`-byte KV elements.
final class FakeDeviceMemory: DeviceMemoryReporting {
    let free: Int
    let kvCacheBytesPerElement: Int
    let queries = Mutex(0)
    init(free: Int, bytesPerElement: Int) {
        self.free = free
        kvCacheBytesPerElement = bytesPerElement
    }
    func freeMemoryBytes() throws -> Int {
        queries.withLock { $0 += 1 }
        return free
    }
}

@Suite struct LLMBackendTests {
    static let config = try! ModelBundle(path: Fixtures.tinyLlama, backend: CPUBackend()).model.config

    static func settings(_ extra: String, instances: Int = 2, maxBatchSize: Int = 256) throws -> LLMSettings {
        let text = """
        name: "tensorrt_llm"
        backend: "petrel"
        max_batch_size: \(maxBatchSize)
        instance_group [{ count: \(instances), kind: KIND_CPU }]
        parameters: { key: "gpt_model_path" value: { string_value: "\(Fixtures.tinyLlama)" } }
        \(extra)
        """
        let config = try decodeModelConfig(text: text, path: "config.pbtxt")
        return try LLMSettings(config: config, parameters: ModelParameters(config, source: ConfigSource(path: "config.pbtxt", text: text)),
                               directory: "/nonexistent", version: 1)
    }

    static func parameter(_ key: String, _ value: String) -> String {
        "parameters: { key: \"\(key)\" value: { string_value: \"\(value)\" } }"
    }

    @Test func deviceCacheIsTheFractionOfFreeMemoryAfterWeightsSplitAmongInstances() throws {
        let s = try Self.settings(Self.parameter("kv_cache_free_gpu_mem_fraction", "0.5"))
        let c = Self.config   // 2 layers, 2 KV heads of 16: fp16 blocks of 32 tokens are 2·2·2·16·32·2 = 8192 bytes
        let device = FakeDeviceMemory(free: 10 << 20, bytesPerElement: 2)
        let plan = try KVCachePlan(settings: s, config: c, hostBytesPerBlock: 16384, hostMemoryBytes: 1 << 30, device: device)
        #expect(device.queries.withLock { $0 } == 1)
        #expect(plan.bytesPerBlock == 8192)
        #expect(plan.budgetBytes == (10 << 20) / 2 / 2)          // fraction 0.5, 2 instances; the host budget is ignored
        #expect(plan.blocks == (10 << 20) / 2 / 2 / 8192)        // 320
        // The CPU path is unchanged: fraction × the host budget, at the model's own block size.
        let host = try KVCachePlan(settings: s, config: c, hostBytesPerBlock: 16384, hostMemoryBytes: 10 << 20, device: nil)
        #expect(host.bytesPerBlock == 16384 && host.blocks == (10 << 20) / 2 / 2 / 16384)
    }

    @Test func deviceCacheIsCappedAndRefusesAnEmptyBudget() throws {
        let capped = try Self.settings(Self.parameter("max_tokens_in_paged_kv_cache", "1024"))
        let big = FakeDeviceMemory(free: 1 << 30, bytesPerElement: 2)
        #expect(try KVCachePlan(settings: capped, config: Self.config, hostBytesPerBlock: 16384, hostMemoryBytes: 0, device: big).blocks == 1024 / 2 / 32)
        // Never more than max_batch_size requests at full context (256 positions) need.
        let small = try Self.settings("", instances: 1, maxBatchSize: 2)
        #expect(try KVCachePlan(settings: small, config: Self.config, hostBytesPerBlock: 16384, hostMemoryBytes: 0, device: big).blocks == 2 * 256 / 32)
        let full = FakeDeviceMemory(free: 4096, bytesPerElement: 2)
        #expect(throws: ModelLoadError.self) {
            try KVCachePlan(settings: small, config: Self.config, hostBytesPerBlock: 16384, hostMemoryBytes: 0, device: full)
        }
    }

    @Test func parallelSizesComeFromTheConfigElseTheServer() throws {
        #expect(try Self.settings("").parallel == .init())
        let s = try Self.settings(Self.parameter("tensor_parallel_size", "2"))
        #expect(s.parallel == .init(tensorParallelSize: 2, pipelineParallelSize: 1))
        let text = """
        name: "tensorrt_llm"
        backend: "petrel"
        parameters: { key: "gpt_model_path" value: { string_value: "\(Fixtures.tinyLlama)" } }
        parameters: { key: "pipeline_parallel_size" value: { string_value: "2" } }
        """
        let config = try decodeModelConfig(text: text, path: "config.pbtxt")
        let d = try LLMSettings(config: config, parameters: ModelParameters(config, source: ConfigSource(path: "config.pbtxt", text: text)),
                                directory: "/nonexistent", version: 1, defaultParallel: .init(tensorParallelSize: 2, pipelineParallelSize: 4))
        #expect(d.parallel == .init(tensorParallelSize: 2, pipelineParallelSize: 2))
        #expect(throws: ModelLoadError.self) { try Self.settings(Self.parameter("tensor_parallel_size", "0")) }
    }

    @Test func weightOnlyPrecisionComesFromTheConfigElseTheServer() throws {
        #expect(try Self.settings("").quantization == nil)
        #expect(try Self.settings(Self.parameter("weight_only_precision", "int8")).quantization == .int8WeightOnly)
        #expect(try Self.settings(Self.parameter("weight_only_precision", "fp8")).quantization == .fp8)
        #expect(throws: (any Error).self) {
            try Self.settings(Self.parameter("weight_only_precision", "fp8") + Self.parameter("weight_only_group_size", "128"))
        }
        let int4 = try Self.settings(Self.parameter("weight_only_precision", "int4_wo") + Self.parameter("weight_only_group_size", "64")
                                     + Self.parameter("weight_only_zero_points", "true"))
        #expect(int4.quantization == .int4WeightOnly(groupSize: 64, zeroPoints: true))
        // The server's --quantization applies unless the model says otherwise ("none" turns it off).
        func withDefault(_ extra: String) throws -> LLMSettings {
            let text = """
            name: "tensorrt_llm"
            backend: "petrel"
            parameters: { key: "gpt_model_path" value: { string_value: "\(Fixtures.tinyLlama)" } }
            \(extra)
            """
            let config = try decodeModelConfig(text: text, path: "config.pbtxt")
            return try LLMSettings(config: config, parameters: ModelParameters(config, source: ConfigSource(path: "config.pbtxt", text: text)),
                                   directory: "/nonexistent", version: 1, defaultQuantization: .int8WeightOnly)
        }
        #expect(try withDefault("").quantization == .int8WeightOnly)
        #expect(try withDefault(Self.parameter("weight_only_precision", "none")).quantization == nil)
        // What cannot be honoured is refused, naming the parameter.
        for bad in [Self.parameter("weight_only_precision", "int3"),
                    Self.parameter("weight_only_precision", "int8") + Self.parameter("weight_only_group_size", "64"),
                    Self.parameter("weight_only_precision", "int4") + Self.parameter("weight_only_group_size", "32"),
                    Self.parameter("weight_only_group_size", "64")] {
            #expect {
                try Self.settings(bad)
            } throws: { error in
                "\(error)".contains("weight_only_")
            }
        }
    }

    /// With max_batch_size 1, a request sent while another generates waits in the engine's queue
    /// until that one ends: its queue duration covers at least the span we saw it waiting.
    @Test func queueDurationRunsFromArrivalToFirstScheduling() async throws {
        let server = try await startServer(try tinyRepository { $0.maxBatchSize = 1 })
        func llm() -> (ModelStatistics, LLMMetrics) {
            let m = server.metricsSnapshot().models.first { $0.name == "tensorrt_llm" }!
            return (m.statistics, m.llm!)
        }
        let long = try server.inferStream(ensembleRequest("first", maxTokens: 200, stream: true, extra: [int32("end_id", [-1])]))
        let first = Task { try await collect(long) }
        while llm().1.activeRequests == 0 { try await Task.sleep(nanoseconds: 1_000_000) }
        let second = Task { try await server.infer(ensembleRequest("second", maxTokens: 3, extra: [int32("end_id", [-1])])) }
        var seenFirst: UInt64?, seenLast: UInt64 = 0
        while true {
            let (_, m) = llm()
            let now = DispatchTime.now().uptimeNanoseconds
            if m.waitingRequests == 1 {
                if seenFirst == nil { seenFirst = now }
                seenLast = now
            } else if seenFirst != nil || m.finishedRequests.values.reduce(0, +) >= 1 {
                break
            }
            try await Task.sleep(nanoseconds: 200_000)
        }
        _ = try await first.value
        _ = try await second.value
        let (stats, _) = llm()
        #expect(stats.queue.count == 2)
        #expect(stats.queue.ns > 0)
        // The gauges are sampled at step boundaries, so the window we watched may overrun the
        // moment the request was scheduled by up to one step: require half of it.
        #expect(stats.queue.ns >= (seenLast - (seenFirst ?? seenLast)) / 2, "the second request waited about as long as we watched it wait")
        #expect(stats.queue.ns <= stats.success.ns, "a request's queue time is part of its duration")
        await server.shutdown(gracePeriod: 1)
    }

    /// A model cut over TP 2 (the server's flag) or PP 2 (its config.pbtxt) serves the same greedy text.
    @Test func shardedModelsServeTheSameGreedyText() async throws {
        let prompt = "The quick brown fox"
        func greedy(_ server: InferenceServer) async throws -> String? {
            try await server.infer(ensembleRequest(prompt, maxTokens: 16, extra: [int32("end_id", [-1])])).text("text_output")
        }
        let plain = try await startServer(try tinyRepository())
        let want = try #require(try await greedy(plain))
        await plain.shutdown(gracePeriod: 1)

        let tp = try await startServer(try tinyRepository()) { $0.tensorParallelSize = 2 }
        #expect(try await greedy(tp) == want)
        await tp.shutdown(gracePeriod: 1)

        let repo = try tinyRepository()
        let path = repo + "/tensorrt_llm/config.pbtxt"
        try (String(contentsOfFile: path, encoding: .utf8) + Self.parameter("pipeline_parallel_size", "2") + "\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let pp = try await startServer(repo)
        #expect(try await greedy(pp) == want)
        await pp.shutdown(gracePeriod: 1)

        let bad = try await startServer(try tinyRepository()) { $0.tensorParallelSize = 3 }   // 4 heads are not split 3 ways
        let state = bad.repositoryIndex(readyOnly: false).first { $0.name == "tensorrt_llm" }
        #expect(state?.state == "UNAVAILABLE")
        #expect(state?.reason.contains("tensor parallel size 3") == true, "\(state?.reason ?? "")")
        await bad.shutdown(gracePeriod: 1)
    }
}
