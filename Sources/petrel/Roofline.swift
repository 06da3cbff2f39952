// Roofline: the fastest a static bench point could run on a device, from its measured copy
// bandwidth and matrix rate (prefill: FLOPs over the matrix rate, at least one read of the
// weights; each decode step: the larger of weight + KV-cache bytes over bandwidth and its FLOPs
// over the matrix rate).
import Checkpoints

struct Roofline {
    let config: TransformerConfig
    /// Bytes of weights one forward pass reads (every matrix once).
    let weightBytes: Int
    /// Bytes per second.
    let bandwidth: Double
    /// FLOP per second.
    let flopRate: Double
    /// Bytes per cached K or V element (fp16 on the GPU).
    var kvElementBytes = 2

    /// Multiply-add pairs of one token through the layers' matrices.
    var layerParameters: Double {
        let c = config
        let qkvRows = (c.headCount + 2 * c.kvHeadCount) * c.headDim
        return Double(c.layerCount * (qkvRows * c.hiddenSize + c.hiddenSize * c.headCount * c.headDim + 3 * c.intermediateSize * c.hiddenSize))
    }

    var headParameters: Double { Double(config.vocabularySize * config.hiddenSize) }

    /// Attention FLOPs (QK and PV) of `pairs` query-key pairs in every layer.
    func attentionFLOPs(pairs: Double) -> Double {
        4 * Double(config.headDim * config.headCount * config.layerCount) * pairs
    }

    /// Seconds for `batch` sequences: a prefill of `input` tokens, then `output - 1` decode steps
    /// (the first output token comes from the prefill).
    func staticLatency(batch: Int, input: Int, output: Int) -> Double {
        let b = Double(batch), s = Double(input)
        let prefillFLOPs = 2 * layerParameters * b * s + 2 * headParameters * b + attentionFLOPs(pairs: b * s * (s + 1) / 2)
        var total = max(prefillFLOPs / flopRate, Double(weightBytes) / bandwidth)
        let kvPerToken = Double(2 * config.layerCount * config.kvHeadCount * config.headDim * kvElementBytes)
        for step in 1..<max(output, 1) {
            let context = Double(input + step)
            let bytes = Double(weightBytes) + b * context * kvPerToken
            let flops = b * (2 * layerParameters + 2 * headParameters) + attentionFLOPs(pairs: b * context)
            total += max(bytes / bandwidth, flops / flopRate)
        }
        return total
    }
}
