// Generator: runs one sequence through a model — prefill, then decode token by token — with
// its own small paged KV cache. The single-request path behind `petrel generate`; the
// Engine (in-flight batching) drives the same model through the same ForwardBatch.
import Compute
import Engine
import Models
import Foundation

public struct GenerationStats: Sendable {
    public var promptTokens = 0
    public var generatedTokens = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode rate over the tokens after the first (the first comes from the prefill).
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(max(generatedTokens - 1, 0)) / decodeSeconds : 0 }
}

/// A request the model cannot run (too long for its context, …), with the reason.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public final class Generator {
    public let model: any CausalLM
    public let blockSize: Int
    /// Longest prefill chunk run in one forward pass.
    public var prefillChunk = 512

    public init(model: any CausalLM, blockSize: Int = 32) {
        self.model = model
        self.blockSize = blockSize
    }

    /// Generates up to maxTokens after the prompt. `onToken` is called with each new id and
    /// returns false to stop early. Stops at any id in stopIDs (which is reported, then ends).
    @discardableResult
    public func generate(prompt: [Int32], parameters: SamplingParameters, maxTokens: Int, stopIDs: Set<Int32>,
                         onToken: (Int32) -> Bool) throws -> (GenerationStats, FinishReason) {
        precondition(!prompt.isEmpty, "the prompt must have at least one token")
        let total = prompt.count + maxTokens
        guard total <= model.config.maxPositions else {
            throw RuntimeError("prompt (\(prompt.count) tokens) plus max_tokens (\(maxTokens)) exceeds the model's context of \(model.config.maxPositions)")
        }
        let blocks = (total + blockSize - 1) / blockSize
        let cache = try model.makeKVCache(blockCount: blocks, blockSize: blockSize)
        let table = (0..<blocks).map(Int32.init)
        var sampler = Sampler(parameters)
        var stats = GenerationStats(promptTokens: prompt.count)
        var context = 0
        var next: Int32 = 0

        let t0 = DispatchTime.now().uptimeNanoseconds
        while context < prompt.count {
            let chunk = Array(prompt[context..<min(context + prefillChunk, prompt.count)])
            let batch = ForwardBatch(tokens: chunk, positions: (0..<chunk.count).map { Int32(context + $0) },
                                     sequences: [AttentionSequence(tokenBegin: 0, tokenCount: chunk.count, contextBefore: context, blockTable: table)],
                                     logitRows: [chunk.count - 1])
            let logits = model.logits(batch, cache: cache)
            context += chunk.count
            if context == prompt.count { next = sampleRow(logits, &sampler) }
        }
        let t1 = DispatchTime.now().uptimeNanoseconds
        stats.prefillSeconds = Double(t1 - t0) / 1e9
        var reason = FinishReason.length
        while maxTokens > 0 {
            stats.generatedTokens += 1
            if stopIDs.contains(next) { reason = .stop; _ = onToken(next); break }
            if !onToken(next) { reason = .stop; break }
            if stats.generatedTokens >= maxTokens { break }
            let batch = ForwardBatch(tokens: [next], positions: [Int32(context)],
                                     sequences: [AttentionSequence(tokenBegin: 0, tokenCount: 1, contextBefore: context, blockTable: table)],
                                     logitRows: [0])
            let logits = model.logits(batch, cache: cache)
            context += 1
            next = sampleRow(logits, &sampler)
        }
        stats.decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
        return (stats, reason)
    }

    private func sampleRow(_ logits: [Float], _ sampler: inout Sampler) -> Int32 {
        logits.withUnsafeBufferPointer { sampler.sample($0) }
    }
}
