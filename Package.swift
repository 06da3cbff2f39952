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
    ],
    targets: [
        .target(name: "Compute"),
        .target(name: "CPUKernels", cSettings: kernelFlags, linkerSettings: [.linkedLibrary("pthread")]),
        .target(name: "CPUCompute", dependencies: ["Compute", "CPUKernels"]),
        .target(name: "Checkpoints", dependencies: ["Compute"]),
        .target(name: "Tokenization", dependencies: ["Checkpoints"]),
        .target(name: "Models", dependencies: ["Compute", "Checkpoints"]),
        .target(name: "Engine"),
        // The CUDA backend: CPetrelCUDA is the C ABI header of kernels/cuda's libpetrel_cuda.so, which
        // CUDACompute loads at run time (dlopen), so nothing here links CUDA.
        .target(name: "CPetrelCUDA"),
        .target(name: "CUDACompute", dependencies: ["Compute", "CPetrelCUDA"]),
        .target(name: "Runtime", dependencies: ["Engine", "Compute", "CPUCompute", "Checkpoints", "Tokenization", "Models"]),
        // Triton / KServe v2 protocol messages, generated from protos/ by scripts/generate-protos.sh.
        .target(name: "TritonProtos", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .executableTarget(name: "petrel", dependencies: [
            "Runtime", "Engine", "CPUCompute", "CUDACompute", "Checkpoints", "Tokenization", "Models",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "ComputeTests", dependencies: ["Compute"]),
        .testTarget(name: "CUDAComputeTests", dependencies: ["CUDACompute", "Compute"]),
        .testTarget(name: "CPUComputeTests", dependencies: ["CPUCompute", "CPUKernels", "Compute"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "Compute"]),
        .testTarget(name: "TokenizationTests", dependencies: ["Tokenization", "Checkpoints"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "CPUCompute", "Checkpoints", "Compute"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "Engine", "Models", "CPUCompute", "Checkpoints", "Tokenization"]),
        .testTarget(name: "TritonProtosTests", dependencies: ["TritonProtos", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
    ],
    swiftLanguageModes: [.v5]
)
