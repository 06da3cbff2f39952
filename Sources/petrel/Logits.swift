// `petrel logits`: a checkpoint's last-position logits for a prompt of token ids, and its greedy
// continuation, with no tokenizer involved. This is how the CUDA backend is compared with
// Hugging Face `transformers` on the GPU machine (scripts/hf_logits_check.py): both load the same
// safetensors folder, read the same ids, and their logits and greedy ids are compared there.
import ArgumentParser
import Compute
import Foundation
import Models

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Last-position logits and greedy continuation of a checkpoint for a prompt of token ids.")

    @Option(help: "A GGUF file or a Hugging Face checkpoint folder.") var model: String
    @Option(name: .customLong("prompt-ids"), help: "Prompt token ids, comma-separated.") var promptIDs: String
    @Option(name: .customLong("max-tokens"), help: "Greedy tokens to generate after the prompt.") var maxTokens = 16
    @Option(help: "Where to run: cpu or cuda.") var device: Device = .cpu
    @Option(help: GPUDType.help) var gpuDtype: GPUDType = .f16
    @OptionGroup var cuda: CUDAFlags
    @Option(help: "Write the prompt's last-position logits here (float32, little-endian, vocab values).") var output: String?
    @OptionGroup var quantization: QuantizationOptions

    func run() throws {
        let ids = try promptIDs.split(separator: ",").map { part -> Int32 in
            guard let v = Int32(part.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--prompt-ids: '\(part)' is not a token id")
            }
            return v
        }
        guard !ids.isEmpty else { throw ValidationError("--prompt-ids: no ids") }
        let backend = try device.makeBackend(exactQuantizedMath: true, gpuDtype: gpuDtype, cuda: cuda.options)
        let checkpoint = try LoadedCheckpoint.open(model)
        let llama = try LlamaModel(config: checkpoint.config, weights: checkpoint.weights, backend: backend,
                                   quantization: try quantization.value())
        let vocab = llama.config.vocabularySize
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw ValidationError("--prompt-ids: \(bad) is outside the vocabulary of \(vocab)")
        }
        let blockSize = 16
        let total = ids.count + maxTokens
        let blocks = (total + blockSize - 1) / blockSize
        let cache = try backend.makeKVCache(llama.kvCacheLayout(blockCount: blocks, blockSize: blockSize))
        let table = (0..<blocks).map(Int32.init)
        var tokens = ids, context = 0, generated: [Int32] = []
        for step in 0...maxTokens {
            let n = tokens.count
            let batch = ForwardBatch(tokens: tokens, positions: (0..<n).map { Int32(context + $0) },
                                     sequences: [AttentionSequence(tokenBegin: 0, tokenCount: n, contextBefore: context, blockTable: table)],
                                     logitRows: [n - 1])
            let logits = backend.download(llama.forward(batch, cache: cache))
            if step == 0, let output {
                let data = logits.withUnsafeBufferPointer { Data(buffer: $0) }
                try data.write(to: URL(fileURLWithPath: output))
            }
            context += n
            if step == maxTokens { break }
            let best = logits.indices.max { logits[$0] < logits[$1] }!
            generated.append(Int32(best))
            tokens = [Int32(best)]
        }
        print("{\"greedy_ids\": [\(generated.map(String.init).joined(separator: ", "))], \"vocab\": \(vocab)}")
    }
}
