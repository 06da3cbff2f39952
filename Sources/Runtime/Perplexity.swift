// Perplexity of a model over a token stream, measured as llama.cpp's `llama-perplexity` does, so
// that the figures compare: the tokens are cut into non-overlapping chunks of `context` (the
// remainder dropped); each chunk is one forward pass from an empty KV cache, its first token
// replaced by BOS where the tokenizer adds BOS; only the second half of a chunk is scored (rows
// context/2 ..< context-1 predict the tokens after them), so every scored token has at least
// context/2 tokens before it. Log-softmax in Float64 on the host. What `petrel perplexity` runs.
import Compute
import Dispatch
import Foundation
import Models

public enum PerplexityError: Error, CustomStringConvertible, Equatable {
    case contextTooSmall(Int)
    case contextTooLarge(context: Int, maxPositions: Int)
    case tooFewTokens(count: Int, context: Int)
    case tokenOutOfRange(id: Int32, vocabularySize: Int)

    public var description: String {
        switch self {
        case .contextTooSmall(let c): return "a context of \(c) tokens is too small to score (at least 4)"
        case .contextTooLarge(let c, let m): return "a context of \(c) tokens exceeds the model's context of \(m)"
        case .tooFewTokens(let n, let c): return "\(n) tokens are fewer than one chunk of \(c)"
        case .tokenOutOfRange(let id, let v): return "token id \(id) is outside the vocabulary of \(v)"
        }
    }
}

/// Running sums of per-token negative log-likelihoods (natural log) and what they estimate.
public struct NLLAccumulator: Sendable, Equatable {
    public private(set) var count = 0
    public private(set) var sum = 0.0
    public private(set) var sumOfSquares = 0.0

    public init() {}

    public mutating func add(_ nll: Double) {
        count += 1
        sum += nll
        sumOfSquares += nll * nll
    }

    public var meanNLL: Double { count > 0 ? sum / Double(count) : 0 }
    public var perplexity: Double { exp(meanNLL) }

    /// llama.cpp's `±`: the standard error of the mean NLL, sqrt((E[x²] − E[x]²) / (count − 1)),
    /// carried through exp to first order (× perplexity); nil below two tokens.
    public var perplexityError: Double? {
        guard count > 1 else { return nil }
        let mean = meanNLL
        let variance = max(sumOfSquares / Double(count) - mean * mean, 0)
        return (variance / Double(count - 1)).squareRoot() * perplexity
    }
}

/// One evaluated chunk: its own sums and the running estimate over chunks 1...index.
public struct PerplexityChunk: Sendable {
    /// 1-based.
    public var index: Int
    public var chunkCount: Int
    public var chunk: NLLAccumulator
    public var running: NLLAccumulator
    /// The forward pass and the scoring of this chunk.
    public var seconds: Double
}

public struct PerplexityReport: Sendable {
    public var context: Int
    public var chunks: Int
    public var total: NLLAccumulator
    /// Tokens run through the model: chunks × context.
    public var evaluatedTokens: Int
    /// Forward passes and scoring, every chunk.
    public var seconds: Double
    public var tokensPerSecond: Double { seconds > 0 ? Double(evaluatedTokens) / seconds : 0 }
}

public enum Perplexity {
    /// The rows of a chunk whose logits are scored: row r predicts token r + 1.
    public static func scoredRows(context: Int) -> Range<Int> { context / 2 ..< context - 1 }

    /// How many chunks `tokenCount` tokens give (the remainder dropped), at most `maxChunks`.
    public static func chunkCount(tokenCount: Int, context: Int, maxChunks: Int? = nil) -> Int {
        let whole = tokenCount / context
        return maxChunks.map { min($0, whole) } ?? whole
    }

    /// −log softmax(row)[target], in Float64.
    public static func negativeLogLikelihood(_ row: UnsafeBufferPointer<Float>, target: Int) -> Double {
        var top = -Double.infinity
        for x in row { top = max(top, Double(x)) }
        var sum = 0.0
        for x in row { sum += exp(Double(x) - top) }
        return log(sum) + top - Double(row[target])
    }

    /// Evaluates `tokens` chunk by chunk (module comment); `bosID`: the token each chunk starts
    /// with instead of its own (nil: chunks start as the text goes). `progress` gets each chunk.
    public static func evaluate(_ model: any CausalLM, tokens: [Int32], context: Int, maxChunks: Int? = nil,
                                bosID: Int32? = nil, blockSize: Int = 16,
                                progress: (PerplexityChunk) -> Void = { _ in }) throws -> PerplexityReport {
        guard context >= 4 else { throw PerplexityError.contextTooSmall(context) }
        guard context <= model.config.maxPositions else {
            throw PerplexityError.contextTooLarge(context: context, maxPositions: model.config.maxPositions)
        }
        let chunks = chunkCount(tokenCount: tokens.count, context: context, maxChunks: maxChunks)
        guard tokens.count >= context else { throw PerplexityError.tooFewTokens(count: tokens.count, context: context) }
        let vocab = model.config.vocabularySize
        if let bad = tokens[..<(chunks * context)].first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw PerplexityError.tokenOutOfRange(id: bad, vocabularySize: vocab)
        }
        let blocks = (context + blockSize - 1) / blockSize
        // One cache for every chunk: each starts at position 0 and overwrites the blocks.
        let cache = try model.makeKVCache(blockCount: blocks, blockSize: blockSize)
        let sequence = AttentionSequence(tokenBegin: 0, tokenCount: context, contextBefore: 0, blockTable: (0..<blocks).map(Int32.init))
        let rows = scoredRows(context: context)
        var total = NLLAccumulator(), seconds = 0.0
        for c in 0..<chunks {
            let start = DispatchTime.now().uptimeNanoseconds
            var ids = Array(tokens[c * context ..< (c + 1) * context])
            if let bosID { ids[0] = bosID }
            let batch = ForwardBatch(tokens: ids, positions: (0..<context).map(Int32.init), sequences: [sequence],
                                     logitRows: Array(rows))
            let logits = model.logits(batch, cache: cache)
            var chunk = NLLAccumulator()
            logits.withUnsafeBufferPointer { all in
                for (i, row) in rows.enumerated() {
                    let nll = negativeLogLikelihood(UnsafeBufferPointer(rebasing: all[i * vocab ..< (i + 1) * vocab]),
                                                    target: Int(ids[row + 1]))
                    chunk.add(nll)
                    total.add(nll)
                }
            }
            let took = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            seconds += took
            progress(PerplexityChunk(index: c + 1, chunkCount: chunks, chunk: chunk, running: total, seconds: took))
        }
        return PerplexityReport(context: context, chunks: chunks, total: total, evaluatedTokens: chunks * context, seconds: seconds)
    }
}
