// The environment variables petrel reads, all of them, read once (README.md lists them). Nothing
// below the executable reads the environment: what these say travels down as arguments.
import Foundation

struct Environment: Sendable {
    /// PETREL_CUDA_LIB: the libpetrel_cuda.so --device cuda loads (nil: the one next to petrel).
    let cudaLibrary: String?
    /// PETREL_THREADS: CPU threads where --threads is not given (nil: all online CPUs).
    let threads: Int?
    /// PETREL_CACHE, else $HOME/.cache/petrel: where scripts/fetch-model.sh puts the default model.
    let cacheDirectory: String
    /// PETREL_MODEL_REPOSITORY: `petrel serve`'s model repositories where --model-repository is not
    /// given, separated by ':' (a container's or a Kubernetes pod's way to say it).
    let modelRepositories: [String]
    /// PETREL_DEVICE: `petrel serve`'s device (cpu or cuda) where --device is not given.
    let device: String?

    init(_ variables: [String: String]) {
        func value(_ name: String) -> String? { variables[name].flatMap { $0.isEmpty ? nil : $0 } }
        cudaLibrary = value("PETREL_CUDA_LIB")
        threads = value("PETREL_THREADS").flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil }
        cacheDirectory = value("PETREL_CACHE") ?? (value("HOME") ?? "/root") + "/.cache/petrel"
        modelRepositories = (value("PETREL_MODEL_REPOSITORY") ?? "").split(separator: ":").map(String.init)
        device = value("PETREL_DEVICE")
    }

    /// This process's, read on first use.
    static let current = Environment(ProcessInfo.processInfo.environment)
}
