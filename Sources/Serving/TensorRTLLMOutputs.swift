// The output tensors of TensorRT-LLM's inflight_batcher_llm models, built in one place for
// every response that carries them: the LLM backend's and the BLS model's, streamed chunks and
// final responses, one item or a batch. Beam width is 1; logits tensors are not produced.
import Engine

/// One batch item of a response, as TensorRT-LLM's output tensors report it.
struct GeneratedSequence {
    /// output_ids' row: the prompt (unless excluded) then the generated tokens; in a streamed
    /// chunk, the chunk's new tokens only (as TensorRT-LLM streams).
    var ids: [Int32]
    /// The generated tokens output_log_probs covers (a chunk's new tokens when streaming).
    var generatedCount: Int
    /// One per generated token; any other count (log probs not computed) reads as zeros.
    var logProbs: [Float]
    var cumulativeLogProb: Float
    /// Pads output_ids rows shorter than the batch's longest.
    var padID: Int32 = 0
    /// The item's index in the request's batch.
    var batchIndex: Int
}

extension GeneratedSequence {
    /// A streamed chunk of batch item `batchIndex`: the engine's new tokens.
    init(chunk out: RequestOutput, batchIndex: Int) {
        self.init(ids: out.newTokenIDs, generatedCount: out.newTokenIDs.count, logProbs: out.logProbs,
                  cumulativeLogProb: Float(out.cumulativeLogProb), batchIndex: batchIndex)
    }

    /// The final row of batch item `batchIndex`: `g`'s prompt (unless excluded), then `tokens`,
    /// padded with g's pad id (else its end id, else 0).
    init(_ g: Generation, tokens: [Int32], logProbs: [Float], cumulativeLogProb: Float, excludeInput: Bool, batchIndex: Int) {
        self.init(ids: (excludeInput ? [] : g.prompt) + tokens, generatedCount: tokens.count, logProbs: logProbs,
                  cumulativeLogProb: cumulativeLogProb, padID: g.stop.padID ?? g.stop.endID ?? 0, batchIndex: batchIndex)
    }
}

/// The tensors `names` asks for, in its order, for the batch `sequences`: shapes [batch, 1]
/// and [batch, 1, longest] (beam = 1), rows padded. Names that are not TensorRT-LLM outputs
/// are answered by `other` (nil: left out).
func tensorrtLLMOutputs(_ names: [String], _ sequences: [GeneratedSequence],
                        other: (String) -> InferTensor? = { _ in nil }) -> [InferTensor] {
    let b = sequences.count
    return names.compactMap { name in
        switch name {
        case "output_ids":
            let width = sequences.map(\.ids.count).max() ?? 0
            return .int32(name, [b, 1, width], sequences.flatMap { s in
                s.ids + Array(repeating: s.padID, count: width - s.ids.count)
            })
        case "sequence_length":
            return .int32(name, [b, 1], sequences.map { Int32($0.ids.count) })
        case "cum_log_probs":
            return .fp32(name, [b, 1], sequences.map(\.cumulativeLogProb))
        case "output_log_probs":
            let width = sequences.map(\.generatedCount).max() ?? 0
            return .fp32(name, [b, 1, width], sequences.flatMap { s in
                (s.logProbs.count == s.generatedCount ? s.logProbs : Array(repeating: 0, count: s.generatedCount))
                    + Array(repeating: 0, count: width - s.generatedCount)
            })
        case "batch_index":
            return .int32(name, [b, 1], sequences.map { Int32($0.batchIndex) })
        case "sequence_index":
            return .int32(name, [b, 1], Array(repeating: 0, count: b))
        default:
            return other(name)
        }
    }
}
