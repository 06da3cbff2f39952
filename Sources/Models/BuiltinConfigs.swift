// Built-in model shapes for measuring without a checkpoint (`petrel bench --dummy-weights`),
// with the published hyperparameters of each model.
import Checkpoints
import Compute

public enum BuiltinConfig: String, CaseIterable, Sendable {
    case tiny, smollm2_135m = "smollm2-135m", llama2_7b = "llama-2-7b", llama3_8b = "llama-3-8b"

    public var config: TransformerConfig {
        switch self {
        case .tiny:
            return TransformerConfig(vocabularySize: 512, hiddenSize: 64, intermediateSize: 128, layerCount: 2,
                                     headCount: 4, kvHeadCount: 2, maxPositions: 2048)
        case .smollm2_135m:
            return TransformerConfig(vocabularySize: 49152, hiddenSize: 576, intermediateSize: 1536, layerCount: 30,
                                     headCount: 9, kvHeadCount: 3, ropeTheta: 100000, rmsNormEps: 1e-5,
                                     maxPositions: 8192, tieEmbeddings: true, bosTokenID: 1, eosTokenIDs: [2])
        case .llama2_7b:
            return TransformerConfig(vocabularySize: 32000, hiddenSize: 4096, intermediateSize: 11008, layerCount: 32,
                                     headCount: 32, kvHeadCount: 32, ropeTheta: 10000, rmsNormEps: 1e-5, maxPositions: 4096)
        case .llama3_8b:
            return TransformerConfig(vocabularySize: 128256, hiddenSize: 4096, intermediateSize: 14336, layerCount: 32,
                                     headCount: 32, kvHeadCount: 8, ropeTheta: 500000, rmsNormEps: 1e-5,
                                     maxPositions: 8192, bosTokenID: 128000, eosTokenIDs: [128001, 128009])
        }
    }
}

extension LlamaWeights {
    /// Random weights of the given shape: matrices of `dtype` (F32, F16, BF16, Q8_0, Q4_0 or
    /// Q4_1) with values of about ±0.05 and unit norms, for speed measurements only.
    public static func random(config c: TransformerConfig, dtype: DType, seed: UInt64 = 1) -> LlamaWeights {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func matrix(_ rows: Int, _ cols: Int) -> HostTensor {
            let bytes = dtype.byteCount(elements: rows * cols)!
            let buffer = OwnedBuffer(byteCount: bytes)
            let words = buffer.mutableBytes.bindMemory(to: UInt64.self)
            for i in 0..<(bytes / 8) {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                words[i] = state
            }
            let raw = buffer.mutableBytes
            // Make every scale / float a small finite number.
            let scale: UInt16 = 0x1E66   // fp16 ≈ 0.0062
            switch dtype {
            case .f32:
                let f = raw.bindMemory(to: Float.self)
                for i in 0..<(rows * cols) { f[i] = Float(Int32(truncatingIfNeeded: f[i].bitPattern) % 1000) * 5e-5 }
            case .f16, .bf16:
                let h = raw.bindMemory(to: UInt16.self)
                for i in 0..<(rows * cols) {
                    let v = Float(Int16(truncatingIfNeeded: h[i]) % 1000) * 5e-5
                    h[i] = dtype == .bf16 ? UInt16(v.bitPattern >> 16) : fp16Bits(v)
                }
            case .q8_0, .q4_0, .q4_1:
                let blocks = rows * cols / 32
                for b in 0..<blocks {
                    raw.storeBytes(of: scale, toByteOffset: b * dtype.blockBytes, as: UInt16.self)
                    if dtype == .q4_1 { raw.storeBytes(of: UInt16(0x9E66), toByteOffset: b * dtype.blockBytes + 2, as: UInt16.self) }
                }
            case .q5_0, .q5_1, .q4_K, .q5_K, .q6_K, .w8, .w4, .e4m3:
                preconditionFailure("random weights of \(dtype): make F16 ones and quantize them")
            }
            return HostTensor(dtype: dtype, shape: [rows, cols], bytes: UnsafeRawBufferPointer(raw), owner: buffer)
        }
        let ones = HostTensor.float32([Float](repeating: 1, count: c.hiddenSize), shape: [c.hiddenSize])
        let qkvRows = (c.headCount + 2 * c.kvHeadCount) * c.headDim
        let layers = (0..<c.layerCount).map { _ in
            LlamaLayerWeights(attentionNorm: ones, qkv: matrix(qkvRows, c.hiddenSize),
                              qkvBias: c.attentionBias ? .float32([Float](repeating: 0, count: qkvRows), shape: [qkvRows]) : nil,
                              output: matrix(c.hiddenSize, c.headCount * c.headDim), ffnNorm: ones,
                              gateUp: matrix(2 * c.intermediateSize, c.hiddenSize), down: matrix(c.hiddenSize, c.intermediateSize))
        }
        let embedding = matrix(c.vocabularySize, c.hiddenSize)
        return LlamaWeights(embedding: embedding, layers: layers, finalNorm: ones,
                            head: c.tieEmbeddings ? embedding : matrix(c.vocabularySize, c.hiddenSize))
    }
}

/// Float → IEEE half bits (round to nearest; small normal values only, enough for test data).
func fp16Bits(_ f: Float) -> UInt16 {
    let b = f.bitPattern
    let sign = UInt16((b >> 16) & 0x8000)
    let exp = Int((b >> 23) & 0xFF) - 127 + 15
    if f == 0 || exp <= 0 { return sign }
    if exp >= 31 { return sign | 0x7C00 }
    return sign | UInt16(exp << 10) | UInt16((b & 0x7F_FFFF) >> 13)
}
