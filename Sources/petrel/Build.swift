// `petrel build`: TensorRT-LLM's trtllm-build, made portable: writes an engine folder
// (Models/EngineFolder.swift) — the checkpoint's matrices already quantized and laid out as the
// kernels read them, the config and the tokenizer — that generate, bench, serve, logits,
// perplexity and `repo init` load with --model DIR without redoing that work.
import ArgumentParser
import Dispatch
import Foundation
import Models

struct Build: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an engine folder: the checkpoint quantized (or converted) once, loaded with --model DIR.")

    @Option(help: "A GGUF file or a Hugging Face checkpoint folder (default: the default model).") var model: String?
    @Option(help: "The engine folder to write (created; must be empty or absent).") var output: String
    @OptionGroup var quantization: QuantizationOptions

    func run() throws {
        let path = try model ?? DefaultModel.resolve()
        let start = DispatchTime.now().uptimeNanoseconds
        let checkpoint = try LoadedCheckpoint.open(path)
        let q = try quantization.value()
        let bytes = try EngineFolder.build(checkpoint, quantization: q, to: output,
                                           progress: ProgressBar.layers(q == nil ? "writing" : "quantizing"))
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        print("engine: \(output) from \(path) (\(checkpoint.quantizationSummary)), quantization: \(q.map { "\($0)" } ?? "none"), "
              + "matrices \(describeBytes(bytes)), built in \(String(format: "%.1f", seconds)) s")
    }
}
