// Triton's dynamic batcher and instance groups, on the identity backend and on a custom one.
import Dispatch
import Foundation
import Serving
import Testing
import Synchronization

/// Records how many executions overlap.
final class ConcurrencyProbe: CustomBackend, Sendable {
    private let state = Mutex<(running: Int, peak: Int, batchSizes: [Int])>((0, 0, []))
    var peak: Int { state.withLock { $0.peak } }
    var batchSizes: [Int] { state.withLock { $0.batchSizes } }
    let delay: useconds_t

    init(delayMs: Int) { delay = useconds_t(delayMs * 1000) }

    func execute(_ batch: [InferRequest], instance: Int) -> [Result<[InferTensor], ServingError>] {
        state.withLock { s in
            s.running += 1
            s.peak = max(s.peak, s.running)
            s.batchSizes.append(batch.count)
        }
        usleep(delay)
        state.withLock { $0.running -= 1 }
        return batch.map { r in .success(r.inputs.map { var t = $0; t.name = "OUTPUT0"; return t }) }
    }
}

@Suite struct BatcherTests {
    func concurrently(_ server: InferenceServer, _ requests: [InferRequest]) async -> [Result<InferResponse, ServingError>] {
        await withTaskGroup(of: (Int, Result<InferResponse, ServingError>).self) { group in
            for (i, r) in requests.enumerated() {
                group.addTask {
                    do { return (i, .success(try await server.infer(r))) } catch let e as ServingError { return (i, .failure(e)) } catch {
                        return (i, .failure(ServingError(.internalError, "\(error)")))
                    }
                }
            }
            var out = Array(repeating: Result<InferResponse, ServingError>.failure(ServingError(.internalError, "missing")), count: requests.count)
            for await (i, r) in group { out[i] = r }
            return out
        }
    }

    @Test func concurrentRequestsShareExecutions() async throws {
        let repo = try temporaryDirectory()
        try writeModel(repo, "batched", identityConfig("batched", maxBatchSize: 16,
                                                     extra: "dynamic_batching { max_queue_delay_microseconds: 200000 }"))
        let server = try await startServer(repo)
        let requests = (0..<12).map { identityRequest("batched", [$0, $0 * 10]) }
        let results = await concurrently(server, requests)
        for (i, r) in results.enumerated() {
            #expect(try r.get().ints("OUTPUT0") == [Int64(i), Int64(i * 10)])
        }
        let stats = try server.modelStatistics("batched", version: "1")[0]
        #expect(stats.inferenceCount == 12)
        #expect(stats.executionCount < 12, "executions: \(stats.executionCount)")
        #expect(stats.success.count == 12)
        #expect(stats.queue.count == 12)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func preferredBatchSizeGoesWithoutWaiting() async throws {
        let repo = try temporaryDirectory()
        let probe = ConcurrencyProbe(delayMs: 0)
        try writeModel(repo, "probe", """
            name: "probe"
            backend: "probe"
            max_batch_size: 8
            dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 30000000 }
            input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ -1 ] } ]
            output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ -1 ] } ]
            """)
        let server = try await startServer(repo) { $0.customBackends["probe"] = { _ in probe } }
        let start = DispatchTime.now().uptimeNanoseconds
        let results = await concurrently(server, (0..<4).map { identityRequest("probe", [$0]) })
        #expect(results.allSatisfy { (try? $0.get()) != nil })
        #expect(DispatchTime.now().uptimeNanoseconds - start < 15_000_000_000, "a full preferred batch must not wait for the 30 s delay")
        #expect(probe.batchSizes == [4])
        await server.shutdown(gracePeriod: 1)
    }

    @Test func instanceGroupCountExecutesInParallel() async throws {
        let repo = try temporaryDirectory()
        let probe = ConcurrencyProbe(delayMs: 1000)
        try writeModel(repo, "probe", """
            name: "probe"
            backend: "probe"
            max_batch_size: 0
            input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ -1 ] } ]
            output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ -1 ] } ]
            instance_group [ { count: 3 kind: KIND_CPU } ]
            """)
        let server = try await startServer(repo) { $0.customBackends["probe"] = { _ in probe } }
        let requests = (0..<6).map { InferRequest(modelName: "probe", inputs: [InferTensor(name: "INPUT0", datatype: .int32, shape: [1], data: .ints([Int64($0)]))]) }
        let results = await concurrently(server, requests)
        for (i, r) in results.enumerated() { #expect(try r.get().ints("OUTPUT0") == [Int64(i)]) }
        #expect(probe.peak == 3)
        #expect(probe.batchSizes.allSatisfy { $0 == 1 }, "max_batch_size 0: one request per execution")
        #expect(try server.modelStatistics("probe", version: "")[0].executionCount == 6)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func aFullQueueRejectsWith503() async throws {
        let repo = try temporaryDirectory()
        try writeModel(repo, "slow", identityConfig("slow", maxBatchSize: 1, extra: "dynamic_batching { default_queue_policy { max_queue_size: 2 } }", delayMs: 1500))
        let server = try await startServer(repo)
        let results = await concurrently(server, (0..<6).map { identityRequest("slow", [$0]) })
        let rejected = results.filter { if case .failure(let e) = $0 { return e.status == .unavailable } else { return false } }
        let served = results.filter { if case .success = $0 { return true } else { return false } }
        #expect(served.count == 3, "one executing, two queued")
        #expect(rejected.count == 3)
        #expect(server.isModelReady("slow", version: ""))
        await server.shutdown(gracePeriod: 1)
    }

    @Test func queueTimeoutsRejectOrDelay() async throws {
        let repo = try temporaryDirectory()
        try writeModel(repo, "reject", identityConfig("reject", maxBatchSize: 1, extra: """
            dynamic_batching { default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 200000 allow_timeout_override: true } }
            """, delayMs: 1500))
        try writeModel(repo, "delay", identityConfig("delay", maxBatchSize: 1, extra: """
            dynamic_batching { default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 100000 } }
            """, delayMs: 200))
        let server = try await startServer(repo)
        let rejectResults = await concurrently(server, (0..<2).map { identityRequest("reject", [$0]) })
        let failures = rejectResults.compactMap { if case .failure(let e) = $0 { return e } else { return nil } }
        #expect(failures.count == 1)
        #expect(failures.first?.status == .unavailable)
        #expect(failures.first?.message.contains("timeout") == true)
        let delayResults = await concurrently(server, (0..<3).map { identityRequest("delay", [$0]) })
        #expect(delayResults.allSatisfy { (try? $0.get()) != nil }, "DELAY serves late requests anyway")
        await server.shutdown(gracePeriod: 1)
    }
}
