// `--quantization int8_wo|int4_wo|fp8 [--group-size 128|64] [--zero-points]` on generate, bench,
// serve, logits, perplexity and build: the checkpoint's float matrices quantized at load
// (TensorRT-LLM's weight-only modes and FP8 W8A8; WeightQuantization in Compute). Read once here,
// passed down as a value.
import ArgumentParser
import Compute

struct QuantizationOptions: ParsableArguments {
    @Option(help: "Quantize the checkpoint's matrices at load: int8_wo (INT8 per output channel, W8A16), int4_wo (INT4 groups, W4A16; default: symmetric groups of 128, each scale searched for the least weighted squared error) or fp8 (E4M3 weights per output channel and activations per token, W8A8; CPU only until the CUDA kernels exist). Pre-quantized checkpoints need none.")
    var quantization: String?
    @Option(name: .customLong("group-size"), help: "int4_wo: input columns per scale, 128 (default) or 64.")
    var groupSize: Int?
    @Flag(name: .customLong("zero-points"), help: "int4_wo: asymmetric groups with an integral zero point each (default: symmetric, zero 8).")
    var zeroPoints = false

    /// What was asked, or nil for no quantization at load.
    func value() throws -> WeightQuantization? {
        guard let quantization else {
            if groupSize != nil || zeroPoints { throw ValidationError("--group-size and --zero-points need --quantization int4_wo") }
            return nil
        }
        do {
            return try WeightQuantization(name: quantization, groupSize: groupSize, zeroPoints: zeroPoints)
        } catch let e as QuantizationError {
            throw ValidationError("--quantization: \(e)")
        }
    }

    func validate() throws { _ = try value() }
}
