// swift-tools-version:6.2
// Petrel: an LLM inference server (Triton + TensorRT-LLM compatible) in one Swift package.
import PackageDescription

// Hot CPU kernels are C with AVX2/FMA (x86-64) and plain C elsewhere; they are compiled
// optimised even in debug so the test suite runs at useful speed.
let kernelFlags: [CSetting] = [
    .unsafeFlags(["-O3", "-ffp-contract=fast", "-fno-math-errno"]),
    .unsafeFlags(["-mavx2", "-mfma", "-mf16c"], .when(platforms: [.linux])),
]

let package = Package(
    name: "Petrel",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "petrel", targets: ["petrel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0", traits: []),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .target(name: "Compute"),
        // dev/: kernel benchmarks built by hand (llm.c style), not part of the library.
        .target(name: "CPUKernels", exclude: ["dev"], cSettings: kernelFlags, linkerSettings: [.linkedLibrary("pthread")]),
        .target(name: "CPUCompute", dependencies: ["Compute", "CPUKernels"]),
        .target(name: "Checkpoints", dependencies: ["Compute"]),
        // The one JSON parser and writer (KServe bodies, tokenizer files); no dependencies.
        .target(name: "JSONCore"),
        .target(name: "Tokenization", dependencies: ["Checkpoints", "JSONCore"]),
        .target(name: "Models", dependencies: ["Compute", "Checkpoints"]),
        .target(name: "Engine"),
        // The CUDA backend: CPetrelCUDA is the C ABI header of kernels/cuda's libpetrel_cuda.so, which
        // CUDACompute loads at run time (dlopen), so nothing here links CUDA.
        .target(name: "CPetrelCUDA"),
        .target(name: "CUDACompute", dependencies: ["Compute", "CPetrelCUDA"]),
        // Tensor and pipeline parallelism: the model cut over ranks, each with its own backend; Collective
        // (shared-memory ranks in one process now, NCCL later).
        .target(name: "Parallel", dependencies: ["Compute", "Checkpoints", "Models"]),
        .target(name: "Runtime", dependencies: ["Engine", "Compute", "Checkpoints", "Tokenization", "Models", "JSONCore"]),
        // Triton / KServe v2 protocol messages, generated from protos/ by scripts/generate-protos.sh.
        .target(name: "TritonProtos", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // Triton's core: model repository, lifecycle, schedulers, built-in backends (see docs/ARCHITECTURE.md).
        .target(name: "Serving", dependencies: ["TritonProtos", "Telemetry", "Runtime", "Engine", "Models", "Tokenization", "Checkpoints", "Compute", "Parallel",
                                                .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // Prometheus text exposition (registry, Triton / TensorRT-LLM families, /proc figures); no dependencies.
        .target(name: "Telemetry"),
        // Triton's HTTP endpoint (KServe v2 + generate extension, 8000) and the /metrics endpoint (8002, Serving's
        // figures through Telemetry), on Hummingbird.
        .target(name: "HTTPFrontend", dependencies: [
            "Serving", "TritonProtos", "Telemetry", "JSONCore",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        // Triton's gRPC endpoint (inference.GRPCInferenceService + grpc.health.v1.Health on 8001);
        // Generated/ holds the service stubs written by scripts/generate-protos.sh.
        .target(name: "GRPCFrontend", dependencies: [
            "Serving", "TritonProtos", "Telemetry",
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        .executableTarget(name: "petrel", dependencies: [
            "Runtime", "Engine", "CPUCompute", "CUDACompute", "Checkpoints", "Tokenization", "Models",
            "Serving", "HTTPFrontend", "GRPCFrontend", "Telemetry", "Parallel",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Fixture paths and loaders shared by the test targets.
        .target(name: "TestFixtures", path: "Sources/TestFixtures"),
        .testTarget(name: "CUDAComputeTests", dependencies: ["CUDACompute", "Compute"]),
        .testTarget(name: "CPUComputeTests", dependencies: ["TestFixtures", "CPUCompute", "CPUKernels", "Compute"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["TestFixtures", "Checkpoints", "Compute"]),
        .testTarget(name: "JSONCoreTests", dependencies: ["JSONCore"]),
        .testTarget(name: "TokenizationTests", dependencies: ["TestFixtures", "Tokenization", "Checkpoints", "Compute"]),
        .testTarget(name: "ModelsTests", dependencies: ["TestFixtures", "Models", "CPUCompute", "Checkpoints", "Compute"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine"]),
        .testTarget(name: "ParallelTests", dependencies: ["TestFixtures", "Parallel", "Runtime", "Engine", "Models", "CPUCompute", "Checkpoints", "Compute"]),
        .testTarget(name: "RuntimeTests", dependencies: ["TestFixtures", "Runtime", "Engine", "Models", "CPUCompute", "Checkpoints", "Tokenization", "JSONCore"]),
        .testTarget(name: "GRPCFrontendTests", dependencies: [
            "GRPCFrontend", "Serving", "TritonProtos", "Compute", "Telemetry",
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
        ]),
        .testTarget(name: "TritonProtosTests", dependencies: ["TritonProtos", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .testTarget(name: "ServingTests", dependencies: ["TestFixtures", "Serving", "CPUCompute", "Compute", "Parallel", "Runtime", "Engine", "Tokenization", "TritonProtos"]),
        .testTarget(name: "TelemetryTests", dependencies: ["Telemetry"]),
        .testTarget(name: "HTTPFrontendTests", dependencies: [
            "HTTPFrontend", "Serving", "TritonProtos", "Telemetry", "Compute", "JSONCore",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
