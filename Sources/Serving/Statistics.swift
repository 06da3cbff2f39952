// Per model-version statistics, as Triton keeps them (GET /v2/models/{m}/stats) and as the
// Prometheus families nv_inference_* read them.
import Dispatch
import Foundation
import Synchronization

final class StatisticsRecorder: Sendable {
    private struct State {
        var stats: ModelStatistics
        var firstResponse = Histogram(upperBounds: Histogram.firstResponseMillisecondsBounds)
        var pending = 0
        var inflight = 0
    }

    private let state: Mutex<State>

    init(name: String, version: String) {
        state = Mutex(State(stats: ModelStatistics(name: name, version: version)))
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    func requestStarted() { state.withLock { $0.inflight += 1 } }

    /// `arrival`: DispatchTime nanoseconds when the request reached this model.
    func requestFinished(success: Bool, arrival: UInt64) {
        let ns = Self.now() &- arrival
        let epochMs = UInt64(Date().timeIntervalSince1970 * 1000)
        state.withLock { s in
            s.inflight -= 1
            if success {
                s.stats.success.count += 1
                s.stats.success.ns += ns
            } else {
                s.stats.fail.count += 1
                s.stats.fail.ns += ns
            }
            s.stats.lastInference = epochMs
        }
    }

    func firstResponse(arrival: UInt64) {
        let ms = Double(Self.now() &- arrival) / 1e6
        state.withLock { $0.firstResponse.observe(ms) }
    }

    func pending(_ delta: Int) { state.withLock { $0.pending += delta } }

    /// One execution of the model over `requestCount` requests holding `inferences` batch
    /// elements. Every request of the batch is charged the whole execution's durations, as Triton does.
    func execution(requestCount: Int, inferences: Int, queueNs: [UInt64] = [], inputNs: UInt64, inferNs: UInt64, outputNs: UInt64) {
        state.withLock { s in
            s.stats.executionCount += 1
            s.stats.inferenceCount += UInt64(inferences)
            for q in queueNs {
                s.stats.queue.count += 1
                s.stats.queue.ns += q
            }
            let n = UInt64(requestCount)
            s.stats.computeInput.count += n
            s.stats.computeInput.ns += inputNs * n
            s.stats.computeInfer.count += n
            s.stats.computeInfer.ns += inferNs * n
            s.stats.computeOutput.count += n
            s.stats.computeOutput.ns += outputNs * n
        }
    }

    /// One request's wait before it first ran (models that schedule requests themselves: the LLM backend).
    func queued(nanoseconds: UInt64) {
        state.withLock { s in
            s.stats.queue.count += 1
            s.stats.queue.ns += nanoseconds
        }
    }

    var statistics: ModelStatistics { state.withLock { $0.stats } }
    var inflight: Int { state.withLock { $0.inflight } }

    func snapshot(llm: LLMMetrics?, enginePending: Int) -> ModelMetricsSnapshot {
        state.withLock { s in
            ModelMetricsSnapshot(name: s.stats.name, version: s.stats.version, statistics: s.stats,
                                 pendingRequests: s.pending + enginePending, inflightRequests: s.inflight,
                                 firstResponseMilliseconds: s.firstResponse, llm: llm)
        }
    }
}
