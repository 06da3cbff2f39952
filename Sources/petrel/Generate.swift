// `petrel generate`: load a model, stream a continuation to stdout, a summary to stderr.
import ArgumentParser
import CPUCompute
import Checkpoints
import Foundation
import Models
import Engine
import Runtime
import Tokenization

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a prompt and stream it to stdout.")

    @Option(help: "A GGUF file or a Hugging Face checkpoint folder (default: SmolLM2-135M-Instruct Q4_1).")
    var model: String?
    @Option(help: "Raw prompt text.") var prompt: String?
    @Option(help: "A user message, wrapped in the model's chat template.") var chat: String?
    @Option(name: .customLong("prompt-ids"), help: "Prompt as comma-separated token ids (for debugging).") var promptIDs: String?
    @Option(name: .customLong("max-tokens")) var maxTokens = 64
    @Option var temperature: Float = 0
    @Option(name: .customLong("top-k")) var topK = 0
    @Option(name: .customLong("top-p")) var topP: Float = 1
    @Option var seed: UInt64?
    @Option(help: "Where to run: cpu or cuda (libpetrel_cuda.so from PETREL_CUDA_LIB or next to petrel).") var device: Device = .cpu
    @Option(help: GPUDType.help) var gpuDtype: GPUDType = .f16
    @OptionGroup var cuda: CUDAFlags
    @Flag(name: .customLong("host-sampling"), help: "Bring every step's logits to the host and pick tokens there, also where the device could.")
    var hostSampling = false
    @Option(help: "CPU threads (default: PETREL_THREADS, else all online CPUs).") var threads = 0
    @Flag(help: "Keep activations in float32 against quantized weights (slower reference math).") var exact = false
    @Flag(help: "Print token ids instead of text.") var ids = false
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past end-of-sequence tokens (for benchmarks).") var ignoreEOS = false
    @OptionGroup var parallel: ParallelOptions
    @OptionGroup var quantization: QuantizationOptions

    func validate() throws {
        if maxTokens < 0 { throw ValidationError("--max-tokens must be >= 0") }
        let given = [prompt != nil, chat != nil, promptIDs != nil].filter { $0 }.count
        if given > 1 { throw ValidationError("give only one of --prompt, --chat, --prompt-ids") }
        try SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed).validate()
        try parallel.check(device)
    }

    func run() async throws {
        let path = try model ?? DefaultModel.resolve()
        let backend = try device.makeBackend(threads: threads, exactQuantizedMath: exact, gpuDtype: gpuDtype, cuda: cuda.options)
        let quantization = try self.quantization.value()
        let bundle = try ModelBundle(path: path) {
            try parallel.makeModel(config: $0.config, weights: $0.weights, backend: backend, device: device, threads: threads, exact: exact,
                                   quantization: quantization)
        }
        let tokenizer = bundle.tokenizer
        let promptIDs: [Int32]
        if let list = self.promptIDs {
            promptIDs = try list.split(separator: ",").map {
                guard let v = Int32($0.trimmingCharacters(in: .whitespaces)), v >= 0, Int(v) < bundle.model.config.vocabularySize else {
                    throw ValidationError("--prompt-ids: '\($0)' is not a token id of this model")
                }
                return v
            }
        } else if let chat {
            let rendered = try tokenizer.applyChatTemplate([ChatMessage(role: "user", content: chat)], addGenerationPrompt: true)
            if let note = rendered.note { FileHandle.standardError.write("note: \(note)\n".data(using: .utf8)!) }
            promptIDs = tokenizer.encode(rendered.text, addSpecialTokens: false)
        } else {
            promptIDs = tokenizer.encode(prompt ?? "", addSpecialTokens: true)
        }
        if promptIDs.isEmpty { throw ValidationError("the prompt is empty: give --prompt, --chat or --prompt-ids") }
        let params = SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed)
        var detokenizer = tokenizer.makeDetokenizer(skipSpecialTokens: true)
        let stopIDs = ignoreEOS ? [] : bundle.stopIDs
        // One request on the Engine, as `petrel serve` runs it; a stop id ends it unprinted.
        let stats = try await ModelRunner.generate(bundle.model, prompt: promptIDs, parameters: params, maxTokens: maxTokens,
                                                   stopIDs: stopIDs, deviceSampling: !hostSampling) { newIDs in
            for id in newIDs {
                if ids { print(id, terminator: " ") } else { print(detokenizer.append(id), terminator: "") }
            }
            fflush(nil)
        }
        print(ids ? "" : detokenizer.finish())
        FileHandle.standardError.write("""
            prompt tokens: \(stats.promptTokens), generated tokens: \(stats.generatedTokens), \
            prefill: \(String(format: "%.1f", stats.prefillTokensPerSecond)) tok/s, \
            decode: \(String(format: "%.1f", stats.decodeTokensPerSecond)) tok/s\n
            """.data(using: .utf8)!)
    }
}
