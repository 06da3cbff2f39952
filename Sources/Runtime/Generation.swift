// One request alone on an Engine of its own (a ModelRunner and a KV cache sized for it): the
// path `petrel serve` takes, for one sequence. What `petrel generate` runs.
import Dispatch
import Engine
import Models

/// What one request generated, and how fast.
public struct GenerationStats: Sendable {
    public var promptTokens = 0
    /// Tokens sampled, a stop id included (the engine samples it, then leaves it out of the output).
    public var generatedTokens = 0
    public var finishReason = FinishReason.length
    /// From submission to the first output: the prompt's prefill and the first sample.
    public var prefillSeconds = 0.0
    /// From the first output to the last.
    public var decodeSeconds = 0.0
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode rate over the tokens after the first (the first comes from the prefill).
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(max(generatedTokens - 1, 0)) / decodeSeconds : 0 }
}

extension ModelRunner {
    /// Generates up to `maxTokens` after `prompt` with `model`, as one request on a new Engine
    /// (prefill chunks of up to 512 tokens, then one token a step). `onTokens` gets each output's
    /// new ids as they come; a sampled id in `stopIDs` ends the request (finish reason .stop) and
    /// is not among them. Throws EngineError.requestTooLarge when prompt and maxTokens exceed the
    /// model's context; maxTokens 0 runs nothing. `deviceSampling`: the runner's.
    public static func generate(_ model: any CausalLM, prompt: [Int32], parameters: SamplingParameters = .greedy,
                                maxTokens: Int, stopIDs: Set<Int32> = [], blockSize: Int = 32, deviceSampling: Bool = true,
                                onTokens: ([Int32]) -> Void = { _ in }) async throws -> GenerationStats {
        precondition(!prompt.isEmpty && maxTokens >= 0, "the prompt must have at least one token")
        var stats = GenerationStats(promptTokens: prompt.count)
        let total = prompt.count + maxTokens, context = model.config.maxPositions
        guard total <= context else {
            throw EngineError.requestTooLarge("prompt (\(prompt.count) tokens) plus max_tokens (\(maxTokens)) exceeds the model's context of \(context)")
        }
        guard maxTokens > 0 else { return stats }
        let blocks = (total + blockSize - 1) / blockSize
        let runner = try ModelRunner(model: model, blockCount: blocks, blockSize: blockSize, deviceSampling: deviceSampling)
        let engine = try Engine(config: SchedulerConfig(numBlocks: blocks, blockSize: blockSize, maxBatchSize: 1, maxNumTokens: 512,
                                                        enableChunkedContext: true, policy: .guaranteedNoEvict,
                                                        maxSequenceLength: context),
                                executor: runner)
        let start = DispatchTime.now().uptimeNanoseconds
        var firstOutput: UInt64?
        do {
            let request = Request(prompt: prompt, parameters: parameters, stop: StopConditions(maxTokens: maxTokens, stopTokenIDs: stopIDs))
            for try await output in try engine.submit(request) {
                if firstOutput == nil { firstOutput = DispatchTime.now().uptimeNanoseconds }
                stats.generatedTokens += output.newTokenIDs.count
                if !output.newTokenIDs.isEmpty { onTokens(output.newTokenIDs) }
                if let reason = output.finishReason {
                    stats.finishReason = reason
                    if reason == .stop { stats.generatedTokens += 1 }
                }
            }
        } catch {
            await engine.shutdown()
            throw error
        }
        let end = DispatchTime.now().uptimeNanoseconds
        await engine.shutdown()
        stats.prefillSeconds = Double((firstOutput ?? end) - start) / 1e9
        stats.decodeSeconds = Double(end - (firstOutput ?? end)) / 1e9
        return stats
    }
}
