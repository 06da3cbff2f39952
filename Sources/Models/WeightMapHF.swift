// The Hugging Face weight map: safetensors names (model.layers.N.self_attn.q_proj.weight …)
// to LlamaWeights. The only file that knows these names; the tensors of pre-quantized
// projections (AWQ, GPTQ) are decoded in QuantizedCheckpoints.swift.
import Compute
import Checkpoints

extension LlamaWeights {
    public init(huggingFace source: WeightSource, config c: TransformerConfig) throws {
        let path = source.path
        func get(_ name: String, _ shape: [Int]) throws -> HostTensor { try expect(source.tensor(name), shape, name, path) }
        func norm(_ name: String) throws -> HostTensor { try get(name, [c.hiddenSize]).toFloat32() }
        func linear(_ name: String, _ rows: Int, _ columns: Int) throws -> CheckpointLinear {
            try CheckpointLinear.read(source, name, rows: rows, columns: columns, quantization: c.quantization)
        }
        let qRows = c.headCount * c.headDim, kvRows = c.kvHeadCount * c.headDim
        var layers: [LlamaLayerWeights] = []
        for i in 0..<c.layerCount {
            let p = "model.layers.\(i)."
            let (qkv, qkvOrder) = try CheckpointLinear.fuse([
                try linear(p + "self_attn.q_proj", qRows, c.hiddenSize),
                try linear(p + "self_attn.k_proj", kvRows, c.hiddenSize),
                try linear(p + "self_attn.v_proj", kvRows, c.hiddenSize)], path: path)
            var bias: HostTensor?
            if c.attentionBias {
                let qb = try get(p + "self_attn.q_proj.bias", [qRows]).floatValues()
                let kb = try get(p + "self_attn.k_proj.bias", [kvRows]).floatValues()
                let vb = try get(p + "self_attn.v_proj.bias", [kvRows]).floatValues()
                bias = .float32(qb + kb + vb, shape: [qRows + 2 * kvRows])
            }
            let (output, outputOrder) = try CheckpointLinear.fuse([try linear(p + "self_attn.o_proj", c.hiddenSize, qRows)], path: path)
            var gate = try linear(p + "mlp.gate_proj", c.intermediateSize, c.hiddenSize)
            var up = try linear(p + "mlp.up_proj", c.intermediateSize, c.hiddenSize)
            var downPart = try linear(p + "mlp.down_proj", c.hiddenSize, c.intermediateSize)
            if let order = downPart.inputOrder {
                // silu(gate)·up is elementwise: gate and up rows in down's input order feed down's
                // columns in that order, so an act-order down_proj costs nothing at run time.
                gate = gate.reorderingRows(order)
                up = up.reorderingRows(order)
                downPart = downPart.forgettingInputOrder()
            }
            let (gateUp, gateUpOrder) = try CheckpointLinear.fuse([gate, up], path: path)
            let (down, _) = try CheckpointLinear.fuse([downPart], path: path)
            layers.append(LlamaLayerWeights(
                attentionNorm: try norm(p + "input_layernorm.weight"),
                qkv: qkv,
                qkvBias: bias,
                output: output,
                ffnNorm: try norm(p + "post_attention_layernorm.weight"),
                gateUp: gateUp,
                down: down,
                qkvInputOrder: qkvOrder, outputInputOrder: outputOrder, gateUpInputOrder: gateUpOrder))
        }
        if source.has("lm_head.qweight") {
            throw CheckpointError(path, "tensor 'lm_head.qweight': a quantized lm_head is not supported")
        }
        let embedding = try get("model.embed_tokens.weight", [c.vocabularySize, c.hiddenSize])
        let head = c.tieEmbeddings || !source.has("lm_head.weight")
            ? embedding : try get("lm_head.weight", [c.vocabularySize, c.hiddenSize])
        self.init(embedding: embedding, layers: layers, finalNorm: try norm("model.norm.weight"), head: head)
    }
}
