// The GGUF weight map: llama.cpp names (blk.N.attn_q.weight …) to LlamaWeights. GGUF keeps
// llama / mistral Q and K rows permuted for interleaved RoPE; this map restores the
// rotate-half order (qwen2 files are not permuted). The only file that knows these names.
import Compute
import Checkpoints

extension LlamaWeights {
    public init(gguf source: GGUFFile, config c: TransformerConfig) throws {
        let path = source.path
        func get(_ name: String, _ shape: [Int]) throws -> HostTensor { try expect(source.tensor(name), shape, name, path) }
        func norm(_ name: String) throws -> HostTensor { try get(name, [c.hiddenSize]).toFloat32() }
        let permuted = c.architecture != .qwen2
        let qRows = c.headCount * c.headDim, kvRows = c.kvHeadCount * c.headDim
        let qOrder = unpermuteOrder(heads: c.headCount, headDim: c.headDim)
        let kOrder = unpermuteOrder(heads: c.kvHeadCount, headDim: c.headDim)
        var layers: [LlamaLayerWeights] = []
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            var q = try get(p + "attn_q.weight", [qRows, c.hiddenSize])
            var k = try get(p + "attn_k.weight", [kvRows, c.hiddenSize])
            let v = try get(p + "attn_v.weight", [kvRows, c.hiddenSize])
            if permuted {
                q = q.reorderingRows(qOrder)
                k = k.reorderingRows(kOrder)
            }
            var bias: HostTensor?
            if c.attentionBias {
                var qb = try get(p + "attn_q.bias", [qRows]).floatValues()
                var kb = try get(p + "attn_k.bias", [kvRows]).floatValues()
                if permuted { qb = qOrder.map { qb[$0] }; kb = kOrder.map { kb[$0] } }
                let vb = try get(p + "attn_v.bias", [kvRows]).floatValues()
                bias = .float32(qb + kb + vb, shape: [qRows + 2 * kvRows])
            }
            layers.append(LlamaLayerWeights(
                attentionNorm: try norm(p + "attn_norm.weight"),
                qkv: fuseRows([q, k, v]),
                qkvBias: bias,
                output: try get(p + "attn_output.weight", [c.hiddenSize, qRows]),
                ffnNorm: try norm(p + "ffn_norm.weight"),
                gateUp: fuseRows([try get(p + "ffn_gate.weight", [c.intermediateSize, c.hiddenSize]),
                                  try get(p + "ffn_up.weight", [c.intermediateSize, c.hiddenSize])]),
                down: try get(p + "ffn_down.weight", [c.hiddenSize, c.intermediateSize])))
        }
        let embedding = try get("token_embd.weight", [c.vocabularySize, c.hiddenSize])
        let head = source.tensorInfo("output.weight") == nil ? embedding : try get("output.weight", [c.vocabularySize, c.hiddenSize])
        self.init(embedding: embedding, layers: layers, finalNorm: try norm("output_norm.weight"), head: head)
    }
}
