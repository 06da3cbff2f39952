// RankShard: one rank's part of the model on its own backend — the layers of its pipeline
// stage, cut for its tensor rank — and the Llama forward pass over that part, with the
// tensor-parallel group's collectives where the ranks' partial results meet.
import Checkpoints
import Compute
import Models

final class RankShard: Sendable {
    struct Layer {
        let attentionNorm: Tensor   // (hidden)
        let qkv: Tensor             // ((q + 2k) headDim, hidden)
        let qkvBias: Tensor?
        let output: Tensor          // (hidden, q headDim)
        let ffnNorm: Tensor         // (hidden)
        let gateUp: Tensor          // (2f, hidden)
        let down: Tensor            // (hidden, f)
    }

    let config: TransformerConfig
    let backend: ComputeBackend
    let shard: TensorShard
    /// The model's layers this rank's stage runs.
    let layerRange: Range<Int>
    let layers: [Layer]
    /// First stage only: (vocabulary slice + 1 zero row, hidden).
    let embedding: Tensor?
    /// Last stage only.
    let finalNorm: Tensor?          // (hidden)
    let head: Tensor?               // (paddedVocabulary, hidden)
    let inverseFrequencies: [Float]
    /// This rank's member of its stage's tensor-parallel group.
    let collective: Collective
    /// Bytes of this rank's matrices read by one decode step.
    let weightBytes: Int

    init(config c: TransformerConfig, weights: LlamaWeights, shard: TensorShard, layerRange: Range<Int>,
         isFirstStage: Bool, isLastStage: Bool, backend: ComputeBackend, collective: Collective) throws {
        config = c
        self.backend = backend
        self.collective = collective
        self.shard = shard
        self.layerRange = layerRange
        var bytes = 0
        layers = try layerRange.map { i in
            let w = ShardedLayerWeights(weights.layers[i], shard: shard, config: c)
            bytes += w.matrixBytes
            return Layer(attentionNorm: try backend.upload(w.attentionNorm), qkv: try backend.upload(w.qkv),
                         qkvBias: try w.qkvBias.map { try backend.upload($0) }, output: try backend.upload(w.output),
                         ffnNorm: try backend.upload(w.ffnNorm), gateUp: try backend.upload(w.gateUp), down: try backend.upload(w.down))
        }
        embedding = isFirstStage ? try backend.upload(shard.embeddingTable(weights.embedding)) : nil
        if isLastStage {
            let headRows = shard.headSlice(weights.head)
            finalNorm = try backend.upload(weights.finalNorm)
            head = try backend.upload(headRows)
            bytes += headRows.bytes.count
        } else {
            finalNorm = nil
            head = nil
        }
        weightBytes = bytes
        inverseFrequencies = c.ropeInverseFrequencies()
    }

    var queryHeadCount: Int { shard.queryHeads.count }
    var kvHeadCount: Int { shard.kvHeads.count }

    func kvCacheLayout(blockCount: Int, blockSize: Int) -> KVCacheLayout {
        KVCacheLayout(layerCount: layerRange.count, blockCount: blockCount, blockSize: blockSize,
                      kvHeadCount: kvHeadCount, headDim: config.headDim)
    }

    /// The residual stream (n, hidden) of `tokens`: each rank looks up its vocabulary slice
    /// (zeros elsewhere), then the group sums.
    func embed(_ tokens: [Int32]) -> Tensor {
        let x = backend.makeActivation([tokens.count, config.hiddenSize])
        backend.embed(shard.localTokenIDs(tokens), table: embedding!, into: x)
        collective.allReduceSum(x)
        return x
    }

    /// Runs this stage's layers on the residual stream x (n, hidden), in place.
    func runLayers(_ x: Tensor, positions: [Int32], sequences: [AttentionSequence], cache: KVCache) {
        let b = backend, c = config
        let n = x.rowCount
        let q = queryHeadCount, k = kvHeadCount, f = shard.features.count
        let h = b.makeActivation([n, c.hiddenSize])
        let qkv = b.makeActivation([n, (q + 2 * k) * c.headDim])
        let attn = b.makeActivation([n, q * c.headDim])
        let gateUp = b.makeActivation([n, 2 * f])
        let act = b.makeActivation([n, f])
        let scale = 1 / Float(c.headDim).squareRoot()
        let eps = Float(c.rmsNormEps)
        for (i, layer) in layers.enumerated() {
            b.rmsNorm(x, weight: layer.attentionNorm, eps: eps, into: h)
            b.matmul(h, weight: layer.qkv, bias: layer.qkvBias, into: qkv)
            b.rope(qkv, headCount: q + k, headDim: c.headDim, positions: positions, inverseFrequencies: inverseFrequencies)
            b.attention(qkv: qkv, headCount: q, kvHeadCount: k, headDim: c.headDim,
                        cache: cache, layer: i, sequences: sequences, scale: scale, into: attn)
            b.matmul(attn, weight: layer.output, bias: nil, into: h)
            collective.allReduceSum(h)
            b.add(h, into: x)
            b.rmsNorm(x, weight: layer.ffnNorm, eps: eps, into: h)
            b.matmul(h, weight: layer.gateUp, bias: nil, into: gateUp)
            b.swiglu(gateUp, into: act)
            b.matmul(act, weight: layer.down, bias: nil, into: h)
            collective.allReduceSum(h)
            b.add(h, into: x)
        }
    }

    /// Logits (rows.count, vocabularySize) on the host: each rank multiplies by its vocabulary
    /// slice of the head, then the group gathers the slices side by side.
    func logits(_ x: Tensor, rows: [Int]) -> [Float] {
        let b = backend, c = config
        let last = b.makeActivation([rows.count, c.hiddenSize])
        b.gatherRows(x, rows: rows, into: last)
        b.rmsNorm(last, weight: finalNorm!, eps: Float(c.rmsNormEps), into: last)
        let part = b.makeActivation([rows.count, shard.paddedVocabulary])
        b.matmul(last, weight: head!, bias: nil, into: part)
        guard shard.size > 1 else { return b.download(part) }
        let all = b.makeActivation([rows.count, shard.size * shard.paddedVocabulary])
        collective.allGather(part, into: all)
        let padded = b.download(all)
        let width = shard.size * shard.paddedVocabulary, vocab = c.vocabularySize
        if width == vocab { return padded }
        var out = [Float]()
        out.reserveCapacity(rows.count * vocab)
        for r in 0..<rows.count { out += padded[r * width ..< r * width + vocab] }
        return out
    }
}
