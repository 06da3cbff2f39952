// A backend that rotates a step with one table is refused a length-dependent RoPE at load.
import Checkpoints
import Compute
import Models
import TestFixtures
import Testing

@Test func lengthDependentRopeIsRefusedWhereTheBackendCannotRotatePerSequence() throws {
    let weights = try LoadedCheckpoint.open(Fixtures.path("tiny-llama")).weights
    for kind in ["dynamic", "longrope"] {
        let config = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("rope-scaling/\(kind)/config.json"))
        let backend = SelectingCPUBackend()   // rotatesPerSequence: the protocol's default, false
        let e = #expect(throws: BackendLimitation.self) { try LlamaModel(config: config, weights: weights, backend: backend) }
        #expect(e?.description.contains("\"\(kind)\"") == true && e?.description.contains(backend.name) == true,
                "\(e?.description ?? "")")
    }
    let yarn = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("rope-scaling/yarn/config.json"))
    _ = try LlamaModel(config: yarn, weights: weights, backend: SelectingCPUBackend())
}

/// A backend whose attention has no sliding window (the protocol's default) is refused such a model.
@Test func slidingWindowsAreRefusedWhereTheBackendCannotAttendWithinThem() throws {
    let weights = try LoadedCheckpoint.open(Fixtures.path("tiny-llama")).weights
    let config = try TransformerConfig(huggingFaceConfigAt: Fixtures.path("sliding-window/mistral/config.json"))
    let backend = SelectingCPUBackend()
    let e = #expect(throws: BackendLimitation.self) { try LlamaModel(config: config, weights: weights, backend: backend) }
    #expect(e?.description.contains("sliding window of 6") == true && e?.description.contains(backend.name) == true,
            "\(e?.description ?? "")")
}
