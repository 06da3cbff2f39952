// WeightSharding: one rank's share of the unsharded LlamaWeights, cut on the host at load.
// Column-parallel (output features = weight rows): QKV per head, gate and up per feature.
// Row-parallel (input features = weight columns): the output and down projections, whose
// partial products the ranks then sum. Vocabulary-parallel: embedding and head rows.
import Checkpoints
import Compute
import Models

extension TensorShard {
    /// The weights of pipeline stage `layers` for this tensor rank: its layers cut, the
    /// embedding on the first stage, the final norm and head on the last.
    func stageWeights(_ w: LlamaWeights, config c: TransformerConfig, layers: Range<Int>,
                      isFirstStage: Bool, isLastStage: Bool) -> LlamaStageWeights {
        LlamaStageWeights(layerRange: layers, layers: layers.map { layerWeights(w.layers[$0], config: c) },
                          headCount: queryHeads.count, kvHeadCount: kvHeads.count, featureCount: features.count,
                          vocabulary: vocabulary, embedding: isFirstStage ? embeddingTable(w.embedding) : nil,
                          finalNorm: isLastStage ? w.finalNorm : nil, head: isLastStage ? headSlice(w.head) : nil)
    }

    /// This rank's share of one layer (q = its query heads, k = its KV heads, f = its FFN features):
    /// QKV rows of its heads, gate and up rows of its features, the output and down columns they feed.
    func layerWeights(_ w: LlamaLayerWeights, config c: TransformerConfig) -> LlamaLayerWeights {
        let hd = c.headDim
        let qRows = queryHeads.lowerBound * hd ..< queryHeads.upperBound * hd
        let kRows = (c.headCount + kvHeads.lowerBound) * hd ..< (c.headCount + kvHeads.upperBound) * hd
        let vRows = (c.headCount + c.kvHeadCount + kvHeads.lowerBound) * hd ..< (c.headCount + c.kvHeadCount + kvHeads.upperBound) * hd
        let f = features
        // The inputs of qkv and gateUp are whole on every rank, so their input orders stay; down's
        // columns follow gate/up's rows, cut alike. The output projection is cut by its columns
        // (heads): with an input order they are not in head order, so it is put back (float32).
        let output = w.outputInputOrder.map { w.output.unpermutingColumns($0) } ?? w.output
        return LlamaLayerWeights(
            attentionNorm: w.attentionNorm,
            qkv: joinRows([w.qkv.rows(qRows), w.qkv.rows(kRows), w.qkv.rows(vRows)]),   // ((q + 2k) headDim, hidden)
            qkvBias: w.qkvBias.map { bias in
                let all = bias.floatValues()
                return .float32(Array(all[qRows] + all[kRows] + all[vRows]), shape: [qRows.count + kRows.count + vRows.count])
            },
            output: output.columns(qRows),                                                // (hidden, q headDim)
            ffnNorm: w.ffnNorm,
            gateUp: joinRows([w.gateUp.rows(f), w.gateUp.rows(c.intermediateSize + f.lowerBound ..< c.intermediateSize + f.upperBound)]),
            down: w.down.columns(f),                                                      // (hidden, f)
            qkvInputOrder: w.qkvInputOrder, gateUpInputOrder: w.gateUpInputOrder)
    }

    /// This rank's embedding rows and, when they are a slice, one zero row after them: tokens
    /// outside the slice look up the zero row, so the ranks' lookups sum to the full embedding.
    func embeddingTable(_ embedding: HostTensor) -> HostTensor {
        if vocabulary.count == embedding.rowCount { return embedding }
        return joinRows([embedding.rows(vocabulary), .zeros(embedding.dtype, rows: 1, rowLength: embedding.rowLength)])
    }

    /// This rank's head rows, padded with zero rows to `paddedVocabulary`.
    func headSlice(_ head: HostTensor) -> HostTensor {
        let pad = paddedVocabulary - vocabulary.count
        if pad == 0 { return head.rows(vocabulary) }
        return joinRows([head.rows(vocabulary), .zeros(head.dtype, rows: pad, rowLength: head.rowLength)])
    }
}

/// Matrices joined by rows; mixed dtypes go to float32 first.
func joinRows(_ parts: [HostTensor]) -> HostTensor {
    if let joined = HostTensor.concatenatingRows(parts) { return joined }
    return HostTensor.concatenatingRows(parts.map { $0.toFloat32() })!
}

extension HostTensor {
    /// Rows `r` of a matrix, borrowing the same bytes (no copy; kept alive by the same owner).
    func rows(_ r: Range<Int>) -> HostTensor {
        precondition(r.lowerBound >= 0 && r.upperBound <= rowCount)
        let rb = rowBytes
        return HostTensor(dtype: dtype, shape: [r.count, rowLength],
                          bytes: UnsafeRawBufferPointer(rebasing: bytes[r.lowerBound * rb ..< r.upperBound * rb]), owner: owner,
                          weightOnly: weightOnly, fp8: fp8)
    }

    /// Columns `r` of a matrix, copied. A quantized matrix cut inside one of its 32-element
    /// blocks is converted to float32 first (every block must stay whole).
    func columns(_ r: Range<Int>) -> HostTensor {
        precondition(r.lowerBound >= 0 && r.upperBound <= rowLength)
        if r == 0..<rowLength { return self }
        if let format = weightOnly { return weightOnlyColumns(r, format) }
        precondition(fp8 == nil, "FP8 matrices are not cut by columns (ParallelLlamaModel refuses them)")
        let bs = dtype.blockSize
        guard r.lowerBound % bs == 0 && r.upperBound % bs == 0 else { return toFloat32().columns(r) }
        let rb = rowBytes, begin = r.lowerBound / bs * dtype.blockBytes, width = r.count / bs * dtype.blockBytes
        let buffer = OwnedBuffer(byteCount: rowCount * width)
        for row in 0..<rowCount {
            (buffer.mutableBytes.baseAddress! + row * width).copyMemory(from: bytes.baseAddress! + row * rb + begin, byteCount: width)
        }
        return HostTensor(dtype: dtype, shape: [rowCount, r.count], bytes: UnsafeRawBufferPointer(buffer.mutableBytes), owner: buffer)
    }

    /// Columns of a weight-only matrix: whole groups (and chunks) are cut out with their scales;
    /// a cut inside a group (or a per-channel format) repacks the dequantized columns' codes.
    private func weightOnlyColumns(_ r: Range<Int>, _ f: WeightOnlyFormat) -> HostTensor {
        let columns = rowLength, groups = f.groupCount(columns: columns)
        let aligned = f.groupSize > 0 && r.lowerBound % f.groupSize == 0 && (r.upperBound % f.groupSize == 0 || r.upperBound == columns)
        guard aligned, f.problem(columns: r.count) == nil else { return toFloat32().columns(r) }
        let g0 = r.lowerBound / f.groupSize, g1 = f.groupCount(columns: r.upperBound)
        var codes: [UInt8] = [], scales: [Float] = [], zeros: [Float] = []
        codes.reserveCapacity(rowCount * r.count)
        for row in 0..<rowCount {
            let w = WeightOnlyRow(self, row: row)
            for k in r { codes.append(w.code(k)) }
            for g in g0..<g1 { scales.append(w.scale(group: g)); zeros.append(w.zero(group: g)) }
        }
        precondition(g1 <= groups)
        return f.pack(rows: rowCount, columns: r.count, codes: codes, scales: scales, zeros: f.hasZeros ? zeros : nil)
    }

    /// A matrix whose column j holds input order[j], as float32 with its columns in input order.
    func unpermutingColumns(_ order: [Int32]) -> HostTensor {
        precondition(order.count == rowLength)
        let v = floatValues(), n = rowLength
        var out = [Float](repeating: 0, count: v.count)
        for r in 0..<rowCount {
            for (j, i) in order.enumerated() { out[r * n + Int(i)] = v[r * n + j] }
        }
        return .float32(out, shape: [rowCount, n])
    }

    /// A matrix of zeros (all-zero bytes are 0 in every DType: a quantized block's scale is 0).
    static func zeros(_ dtype: DType, rows: Int, rowLength: Int) -> HostTensor {
        let count = rows * (dtype.byteCount(elements: rowLength) ?? 0)
        let buffer = OwnedBuffer(byteCount: count)
        buffer.mutableBytes.initializeMemory(as: UInt8.self, repeating: 0)
        return HostTensor(dtype: dtype, shape: [rows, rowLength], bytes: UnsafeRawBufferPointer(rebasing: buffer.mutableBytes[0..<count]), owner: buffer)
    }
}
