// The Hugging Face weight map: safetensors names (model.layers.N.self_attn.q_proj.weight …)
// to LlamaWeights. The only file that knows these names.
import Compute
import Checkpoints

extension LlamaWeights {
    public init(huggingFace source: WeightSource, config c: TransformerConfig) throws {
        let path = source.path
        func get(_ name: String, _ shape: [Int]) throws -> HostTensor { try expect(source.tensor(name), shape, name, path) }
        func norm(_ name: String) throws -> HostTensor { try get(name, [c.hiddenSize]).toFloat32() }
        let qRows = c.headCount * c.headDim, kvRows = c.kvHeadCount * c.headDim
        var layers: [LlamaLayerWeights] = []
        for i in 0..<c.layerCount {
            let p = "model.layers.\(i)."
            let q = try get(p + "self_attn.q_proj.weight", [qRows, c.hiddenSize])
            let k = try get(p + "self_attn.k_proj.weight", [kvRows, c.hiddenSize])
            let v = try get(p + "self_attn.v_proj.weight", [kvRows, c.hiddenSize])
            var bias: HostTensor?
            if c.attentionBias {
                let qb = try get(p + "self_attn.q_proj.bias", [qRows]).floatValues()
                let kb = try get(p + "self_attn.k_proj.bias", [kvRows]).floatValues()
                let vb = try get(p + "self_attn.v_proj.bias", [kvRows]).floatValues()
                bias = .float32(qb + kb + vb, shape: [qRows + 2 * kvRows])
            }
            layers.append(LlamaLayerWeights(
                attentionNorm: try norm(p + "input_layernorm.weight"),
                qkv: fuseRows([q, k, v]),
                qkvBias: bias,
                output: try get(p + "self_attn.o_proj.weight", [c.hiddenSize, qRows]),
                ffnNorm: try norm(p + "post_attention_layernorm.weight"),
                gateUp: fuseRows([try get(p + "mlp.gate_proj.weight", [c.intermediateSize, c.hiddenSize]),
                                  try get(p + "mlp.up_proj.weight", [c.intermediateSize, c.hiddenSize])]),
                down: try get(p + "mlp.down_proj.weight", [c.hiddenSize, c.intermediateSize])))
        }
        let embedding = try get("model.embed_tokens.weight", [c.vocabularySize, c.hiddenSize])
        let head = c.tieEmbeddings || !source.has("lm_head.weight")
            ? embedding : try get("lm_head.weight", [c.vocabularySize, c.hiddenSize])
        self.init(embedding: embedding, layers: layers, finalNorm: try norm("model.norm.weight"), head: head)
    }
}
