// ServingMetrics: Serving's metrics snapshot as Telemetry sources, so the executable only
// has to hand the server over: `MetricsExporter(sources: [ServingMetrics(server), ProcessMetrics()])`.
import Serving
import Telemetry

/// Writes Triton's per-model families and, for LLM models, the TensorRT-LLM-style figures
/// from `source.metricsSnapshot()` at each scrape.
public struct ServingMetrics: MetricsSource {
    let source: any ServingMetricsSource

    public init(_ source: any ServingMetricsSource) { self.source = source }

    public func collect(into registry: MetricsRegistry) {
        for model in source.metricsSnapshot().models {
            TritonMetrics.record(Self.inferenceSample(model), into: registry)
            if let llm = model.llm {
                TritonMetrics.record(Self.llmSample(llm, model: model.name, version: model.version), into: registry)
            }
        }
    }

    static func inferenceSample(_ m: ModelMetricsSnapshot) -> ModelInferenceSample {
        let s = m.statistics
        var sample = ModelInferenceSample(model: m.name, version: m.version)
        sample.requestSuccess = s.success.count
        sample.requestFailure = s.fail.count
        sample.inferenceCount = s.inferenceCount
        sample.executionCount = s.executionCount
        sample.requestDurationUs = (s.success.ns + s.fail.ns) / 1000
        sample.queueDurationUs = s.queue.ns / 1000
        sample.computeInputDurationUs = s.computeInput.ns / 1000
        sample.computeInferDurationUs = s.computeInfer.ns / 1000
        sample.computeOutputDurationUs = s.computeOutput.ns / 1000
        sample.pendingRequests = m.pendingRequests
        sample.firstResponseMs = snapshot(m.firstResponseMilliseconds)
        return sample
    }

    static func llmSample(_ llm: LLMMetrics, model: String, version: String) -> LLMEngineSample {
        var s = LLMEngineSample(model: model, version: version)
        s.activeRequests = llm.activeRequests
        s.maxRequests = llm.maxRequests
        s.scheduledRequests = llm.scheduledRequests
        s.waitingRequests = llm.waitingRequests
        s.kvCacheBlocksMax = llm.kvBlocksTotal
        s.kvCacheBlocksFree = llm.kvBlocksFree
        s.kvCacheBlocksUsed = llm.kvBlocksUsed
        s.tokensPerKVCacheBlock = llm.kvTokensPerBlock
        s.iterations = UInt64(max(0, llm.iterationsTotal))
        s.promptTokens = llm.promptTokensTotal
        s.generatedTokens = llm.generatedTokensTotal
        s.timeToFirstToken = snapshot(llm.timeToFirstTokenSeconds)
        s.interTokenLatency = snapshot(llm.interTokenLatencySeconds)
        s.requestLatency = snapshot(llm.requestLatencySeconds)
        s.finishedRequests = llm.finishedRequests
        s.preemptions = UInt64(max(0, llm.preemptionsTotal))
        s.kvCacheReuseHits = UInt64(max(0, llm.kvReuseHits))
        s.kvCacheReuseQueries = UInt64(max(0, llm.kvReuseQueries))
        return s
    }

    static func snapshot(_ h: Serving.Histogram) -> HistogramSnapshot {
        HistogramSnapshot(upperBounds: h.upperBounds, cumulativeCounts: h.cumulativeCounts, count: h.count, sum: h.sum)
    }
}
