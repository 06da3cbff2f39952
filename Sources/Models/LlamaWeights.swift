// LlamaWeights: the Llama-family weights under Swift names, as HostTensors ready to upload.
// Q, K, V are fused into one (q; k; v) matrix and gate, up into one (gate; up) matrix.
// Q and K rows are always in Hugging Face's rotate-half order here: the GGUF weight map
// undoes GGUF's interleaved permutation once, at load.
import Compute
import Checkpoints

public struct LlamaLayerWeights: Sendable {
    public var attentionNorm: HostTensor   // (hidden)
    public var qkv: HostTensor             // ((heads + 2 kvHeads) headDim, hidden)
    public var qkvBias: HostTensor?        // ((heads + 2 kvHeads) headDim)
    public var output: HostTensor          // (hidden, heads headDim)
    public var ffnNorm: HostTensor         // (hidden)
    public var gateUp: HostTensor          // (2 intermediate, hidden)
    public var down: HostTensor            // (hidden, intermediate)
    /// Input orders of matrices whose columns are not in their input's order (GPTQ act-order
    /// checkpoints, sorted by group at load): column j of the matrix multiplies input feature
    /// order[j], so the layer loop gathers its input's columns first. nil: the input's order.
    public var qkvInputOrder: [Int32]?     // (hidden)
    public var outputInputOrder: [Int32]?  // (heads headDim)
    public var gateUpInputOrder: [Int32]?  // (hidden)

    public init(attentionNorm: HostTensor, qkv: HostTensor, qkvBias: HostTensor?, output: HostTensor, ffnNorm: HostTensor,
                gateUp: HostTensor, down: HostTensor, qkvInputOrder: [Int32]? = nil, outputInputOrder: [Int32]? = nil,
                gateUpInputOrder: [Int32]? = nil) {
        self.attentionNorm = attentionNorm
        self.qkv = qkv
        self.qkvBias = qkvBias
        self.output = output
        self.ffnNorm = ffnNorm
        self.gateUp = gateUp
        self.down = down
        self.qkvInputOrder = qkvInputOrder
        self.outputInputOrder = outputInputOrder
        self.gateUpInputOrder = gateUpInputOrder
    }
}

public struct LlamaWeights: Sendable {
    public var embedding: HostTensor       // (vocab, hidden)
    public var layers: [LlamaLayerWeights]
    public var finalNorm: HostTensor       // (hidden)
    public var head: HostTensor            // (vocab, hidden); the embedding when tied
}

/// Fuses matrices by rows; mixed dtypes fall back to float32 so any file still loads.
func fuseRows(_ parts: [HostTensor]) -> HostTensor {
    if let fused = HostTensor.concatenatingRows(parts) { return fused }
    return HostTensor.concatenatingRows(parts.map { $0.toFloat32() })!
}

/// Row order that undoes llama.cpp's Q/K permutation for interleaved RoPE: GGUF row
/// h*hd + 2i + j holds Hugging Face row h*hd + j*(hd/2) + i.
func unpermuteOrder(heads: Int, headDim: Int) -> [Int] {
    let half = headDim / 2
    var order = [Int](repeating: 0, count: heads * headDim)
    for h in 0..<heads {
        for j in 0..<2 {
            for i in 0..<half { order[h * headDim + j * half + i] = h * headDim + 2 * i + j }
        }
    }
    return order
}

/// Checks a tensor's shape against the config, naming the file and tensor on mismatch.
func expect(_ t: HostTensor, _ shape: [Int], _ name: String, _ path: String) throws -> HostTensor {
    // 1-D tensors sometimes arrive as (1, n); compare element counts for those.
    if t.shape == shape || (shape.count == 1 && t.elementCount == shape[0]) { return t }
    throw CheckpointError(path, "tensor '\(name)' has shape \(t.shape), expected \(shape) from the model config")
}

/// A weight matrix as a backend computes with it: quantized to `quantization` when asked (from
/// floats; GGML blocks are dequantized first); otherwise a GGML block matrix whose type is not in
/// `nativeBlockTypes` becomes the weight-only matrix it converts to (GGMLBlocks.swift). `name`
/// (e.g. "qkv of layer 3") is for errors.
func prepareMatrix(_ m: HostTensor, quantization: WeightQuantization?, nativeBlockTypes: Set<DType>, name: String) throws -> HostTensor {
    do {
        if let q = quantization {
            if let f = m.weightOnly { throw QuantizationError("the checkpoint is already quantized (\(f)): leave out --quantization") }
            if let f = m.fp8 { throw QuantizationError("the checkpoint is already quantized (\(f)): leave out --quantization") }
            let float = m.dtype.isGGMLBlock ? m.toFloat32() : m
            guard let format = q.weightOnlyFormat else { return try float.quantizedFP8() }
            return try float.quantized(format)
        }
        if m.dtype.isGGMLBlock && !nativeBlockTypes.contains(m.dtype) { return try m.convertedToWeightOnly() }
        return m
    } catch let e as QuantizationError {
        throw QuantizationError("\(name) (\(m.dtype) \(m.shape)): \(e)")
    }
}
