// The petrel command: the composition root. Subcommands wire concrete types together.
import ArgumentParser

@main
struct Petrel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "petrel",
        abstract: "An LLM inference server compatible with Triton + TensorRT-LLM clients.",
        version: "0.1.0",
        subcommands: [Generate.self, Bench.self, Build.self, SelfTest.self, Logits.self, PerplexityCommand.self, Serve.self, Repo.self])
}
