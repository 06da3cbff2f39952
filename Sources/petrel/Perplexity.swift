// `petrel perplexity`: a model's perplexity over a text file, measured as llama.cpp's
// llama-perplexity measures it (Runtime's Perplexity), so the two can be compared.
import ArgumentParser
import Foundation
import Runtime

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "A model's perplexity over a text file, measured as llama.cpp's llama-perplexity does.",
        discussion: """
            The whole file is tokenized once, with BOS first only where the model's tokenizer adds BOS \
            (special tokens written in the text become those tokens), and cut into non-overlapping chunks \
            of --context tokens; the remainder is dropped. Each chunk is one forward pass from an empty KV \
            cache, its first token replaced by BOS where the tokenizer adds BOS. Only the second half of a \
            chunk is scored: the tokens at positions context/2+1 ... context-1, each predicted from all the \
            tokens before it in the chunk (log-softmax in Float64). One line per chunk gives the running \
            perplexity over the chunks so far; the last line is PPL = exp(mean NLL) ± the standard error of \
            the mean NLL carried through exp (llama.cpp's figure).
            """)

    @Option(help: "A GGUF file or a Hugging Face checkpoint folder (default: SmolLM2-135M-Instruct Q4_1).")
    var model: String?
    @Option(help: "The text to score (UTF-8); scripts/fetch-perplexity-text.sh fetches the yardstick.") var text: String
    @Option(help: "Tokens per chunk (at least 16).") var context = 512
    @Option(name: .customLong("max-chunks"), help: "Score at most this many chunks (default: all).") var maxChunks: Int?
    @Option(help: "Where to run: cpu or cuda (libpetrel_cuda.so from PETREL_CUDA_LIB or next to petrel).") var device: Device = .cpu
    @Option(help: GPUDType.help) var gpuDtype: GPUDType = .f16
    @OptionGroup var cuda: CUDAFlags
    @Option(help: "CPU threads (default: PETREL_THREADS, else all online CPUs).") var threads = 0
    @Flag(help: "Keep activations in float32 against quantized weights (slower reference math).") var exact = false
    @OptionGroup var quantization: QuantizationOptions

    func validate() throws {
        if context < 16 { throw ValidationError("--context must be at least 16") }
        if let maxChunks, maxChunks < 1 { throw ValidationError("--max-chunks must be at least 1") }
    }

    /// The model and its tokenizer, as `generate` loads them.
    func loadModel() throws -> ModelBundle {
        let backend = try device.makeBackend(threads: threads, exactQuantizedMath: exact, gpuDtype: gpuDtype, cuda: cuda.options)
        return try ModelBundle(path: try model ?? DefaultModel.resolve(), backend: backend, quantization: try quantization.value())
    }

    func run() throws {
        guard FileManager.default.fileExists(atPath: text) else { throw ValidationError("--text: no file at \(text)") }
        guard let data = FileManager.default.contents(atPath: text), let body = String(data: data, encoding: .utf8) else {
            throw ValidationError("--text: \(text) cannot be read as UTF-8 text")
        }
        let bundle = try loadModel()
        let tokenizer = bundle.tokenizer
        let bos = tokenizer.addBOS ? tokenizer.bosID : nil
        let tokens = (bos.map { [$0] } ?? []) + tokenizer.encode(body, addSpecialTokens: false)
        guard tokens.count >= context else {
            throw ValidationError("--text: \(text) tokenizes to \(tokens.count) tokens, fewer than one chunk of --context \(context)")
        }
        let whole = tokens.count / context, rows = Perplexity.scoredRows(context: context).count
        log("""
            \(bundle.checkpoint.path): \(text) is \(tokens.count) tokens (BOS first: \(bos.map(String.init) ?? "no")), \
            \(whole) chunks of \(context)\(maxChunks.map { $0 < whole ? ", the first \($0) scored" : "" } ?? ""); \(rows) tokens scored a chunk
            """)
        let report = try Perplexity.evaluate(bundle.model, tokens: tokens, context: context, maxChunks: maxChunks,
                                                     bosID: bos) { chunk in
            print("[\(chunk.index)] \(String(format: "%.4f", chunk.running.perplexity))")
            fflush(nil)
        }
        let total = report.total
        print("PPL = \(String(format: "%.4f", total.perplexity)) ± \(String(format: "%.5f", total.perplexityError ?? .nan))")
        print("""
            \(total.count) tokens scored in \(report.chunks) chunks of \(context); \(report.evaluatedTokens) tokens \
            evaluated in \(String(format: "%.1f", report.seconds)) s (\(String(format: "%.1f", report.tokensPerSecond)) tok/s)
            """)
    }
}
