// ParallelLayout: how a model is cut over ranks. Tensor parallelism (Megatron): attention heads,
// FFN features and the vocabulary are divided among the N ranks of a group. Pipeline
// parallelism: the layers are cut into M contiguous stages. N × M ranks in all; rank
// (stage s, tensor rank t) has flat index s·N + t.
import Checkpoints

public struct ParallelConfig: Sendable, Equatable, CustomStringConvertible {
    public var tensorParallelSize: Int
    public var pipelineParallelSize: Int

    public init(tensorParallelSize: Int = 1, pipelineParallelSize: Int = 1) {
        self.tensorParallelSize = tensorParallelSize
        self.pipelineParallelSize = pipelineParallelSize
    }

    public var rankCount: Int { tensorParallelSize * pipelineParallelSize }
    public var description: String { "TP \(tensorParallelSize) × PP \(pipelineParallelSize)" }

    /// Throws, naming the model's figure, when the model cannot be cut this way.
    public func validate(for c: TransformerConfig) throws {
        let n = tensorParallelSize, m = pipelineParallelSize
        guard n >= 1, m >= 1 else { throw ParallelError("tensor and pipeline parallel sizes must be >= 1, got \(n) and \(m)") }
        guard c.headCount % n == 0 else {
            throw ParallelError("tensor parallel size \(n) must divide the model's \(c.headCount) attention heads")
        }
        guard c.kvHeadCount % n == 0 || n % c.kvHeadCount == 0 else {
            throw ParallelError("tensor parallel size \(n) and the model's \(c.kvHeadCount) KV heads must divide one another")
        }
        guard c.intermediateSize % n == 0 else {
            throw ParallelError("tensor parallel size \(n) must divide the model's FFN size \(c.intermediateSize)")
        }
        guard m <= c.layerCount else {
            throw ParallelError("pipeline parallel size \(m) exceeds the model's \(c.layerCount) layers")
        }
    }

    /// The layers of pipeline stage `s`: contiguous, sizes differing by at most one.
    public func layers(ofStage s: Int, layerCount: Int) -> Range<Int> {
        s * layerCount / pipelineParallelSize ..< (s + 1) * layerCount / pipelineParallelSize
    }
}

public struct ParallelError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What tensor rank `rank` of `size` holds of one layer and of the vocabulary.
public struct TensorShard: Sendable, Equatable {
    public let rank: Int
    public let size: Int
    /// Query heads of this rank.
    public let queryHeads: Range<Int>
    /// KV heads this rank's query heads read. With fewer KV heads than ranks each rank holds
    /// the one KV head its query heads share (so KV heads are replicated across ranks).
    public let kvHeads: Range<Int>
    /// FFN features (of the gate and of the up projection; the down projection's inputs).
    public let features: Range<Int>
    /// Vocabulary rows of this rank: the embedding's and the output head's.
    public let vocabulary: Range<Int>
    /// Every rank's vocabulary slice is padded to this many rows, so the logits' all-gather
    /// takes equal parts.
    public let paddedVocabulary: Int

    public init(rank: Int, size: Int, config c: TransformerConfig) {
        precondition(rank >= 0 && rank < size)
        self.rank = rank
        self.size = size
        let q = c.headCount / size
        queryHeads = rank * q ..< (rank + 1) * q
        if c.kvHeadCount >= size {
            let k = c.kvHeadCount / size
            kvHeads = rank * k ..< (rank + 1) * k
        } else {
            let group = c.headCount / c.kvHeadCount     // query heads per KV head
            let k = queryHeads.lowerBound / group
            kvHeads = k ..< k + 1
        }
        let f = c.intermediateSize / size
        features = rank * f ..< (rank + 1) * f
        paddedVocabulary = (c.vocabularySize + size - 1) / size
        vocabulary = min(rank * paddedVocabulary, c.vocabularySize) ..< min((rank + 1) * paddedVocabulary, c.vocabularySize)
    }
}
