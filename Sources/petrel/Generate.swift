// `petrel generate`: load a model, stream a continuation to stdout, a summary to stderr.
import ArgumentParser
import CPUCompute
import Checkpoints
import Foundation
import Models
import Runtime

struct Generate: ParsableCommand {
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
    @Option(help: "CPU threads (default: all online CPUs).") var threads = 0
    @Flag(help: "Keep activations in float32 against quantized weights (slower reference math).") var exact = false
    @Flag(help: "Print token ids instead of text.") var ids = false

    func validate() throws {
        if maxTokens < 0 { throw ValidationError("--max-tokens must be >= 0") }
        let given = [prompt != nil, chat != nil, promptIDs != nil].filter { $0 }.count
        if given > 1 { throw ValidationError("give only one of --prompt, --chat, --prompt-ids") }
        try SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed).validate()
    }

    func run() throws {
        let path = try model ?? DefaultModel.resolve()
        let backend = CPUBackend(exactQuantizedMath: exact, threads: threads)
        let checkpoint = try LoadedCheckpoint.open(path)
        let llama = try LlamaModel(config: checkpoint.config, weights: checkpoint.weights, backend: backend)
        let promptIDs: [Int32]
        if let list = self.promptIDs {
            promptIDs = try list.split(separator: ",").map {
                guard let v = Int32($0.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--prompt-ids: '\($0)' is not an integer") }
                return v
            }
        } else {
            throw ValidationError("text prompts need the tokenizer (not wired yet)")
        }
        let params = SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed)
        let stop = Set(checkpoint.config.eosTokenIDs.map(Int32.init))
        let generator = Generator(model: llama)
        var out: [Int32] = []
        let (stats, _) = try generator.generate(prompt: promptIDs, parameters: params, maxTokens: maxTokens, stopIDs: stop) { id in
            out.append(id)
            print(id, terminator: " ")
            fflush(stdout)
            return true
        }
        print()
        FileHandle.standardError.write("""
            prompt tokens: \(stats.promptTokens), generated tokens: \(stats.generatedTokens), \
            prefill: \(String(format: "%.1f", stats.prefillTokensPerSecond)) tok/s, \
            decode: \(String(format: "%.1f", stats.decodeTokensPerSecond)) tok/s\n
            """.data(using: .utf8)!)
    }
}
