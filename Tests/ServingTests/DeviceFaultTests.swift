// Device faults through the whole server, on the CPU: a backend that fails a chosen matmul, as a
// GPU's does when a kernel or an allocation fails. The step's requests end with a 500, the
// process and the other requests go on; a lost context makes the model unready until it is
// loaded again.
import CPUCompute
import Compute
import Foundation
import Serving
import Synchronization
import Testing

@Suite struct DeviceFaultTests {
    static let prompt = [1, 67, 200, 31, 400, 12]

    static func request(_ model: String = "tensorrt_llm") -> InferRequest {
        InferRequest(modelName: model, inputs: [
            int32("input_ids", prompt), int32("input_lengths", [prompt.count]),
            int32("request_output_len", [8]), int32("end_id", [-1]),
        ])
    }

    static func startFaultyServer(_ plan: FaultPlan, mode: ServerOptions.ModelControlMode = .none) async throws -> InferenceServer {
        try await startServer(try tinyRepository(), mode: mode, startup: mode == .explicit ? ["*"] : []) {
            $0.backendFactory = { FaultyBackend(plan: plan) }
        }
    }

    @Test func aFaultFailsItsStepAndTheNextRequestSucceeds() async throws {
        let plan = FaultPlan()
        let server = try await Self.startFaultyServer(plan)
        let before = try await server.infer(Self.request())
        #expect(before.ints("output_ids")?.count == 8)

        plan.arm(afterMatmuls: 3)   // inside the next step's forward pass
        let e = await servingError { _ = try await server.infer(Self.request()) }
        #expect(e?.status == .internalError, "\(String(describing: e))")
        #expect(e?.message.contains("device fault: injected matmul failure") == true, "\(String(describing: e))")
        #expect(plan.fired == 1)

        #expect(server.isModelReady("tensorrt_llm", version: ""))
        #expect(server.isReady())
        let after = try await server.infer(Self.request())
        #expect(after.ints("output_ids") == before.ints("output_ids"))
        await server.shutdown(gracePeriod: 1)
    }

    @Test func aLostContextMakesTheModelUnavailableUntilItIsLoaded() async throws {
        let plan = FaultPlan()
        let server = try await Self.startFaultyServer(plan, mode: .explicit)
        let before = try await server.infer(Self.request())

        plan.arm(afterMatmuls: 1, contextLost: true)
        let e = await servingError { _ = try await server.infer(Self.request()) }
        #expect(e?.status == .internalError, "\(String(describing: e))")
        #expect(e?.message.contains("the device context is lost") == true, "\(String(describing: e))")

        // The model and the ensemble over it are unready; the server too (strict readiness).
        #expect(!server.isModelReady("tensorrt_llm", version: ""))
        #expect(!server.isModelReady("ensemble", version: ""))
        #expect(!server.isReady())
        let row = server.repositoryIndex(readyOnly: false).first { $0.name == "tensorrt_llm" }
        #expect(row?.state == "UNAVAILABLE")
        #expect(row?.reason.contains("injected matmul failure") == true, "\(String(describing: row))")
        let refused = await servingError { _ = try await server.infer(Self.request()) }
        #expect(refused?.status == .unavailable, "\(String(describing: refused))")
        #expect(refused?.message.contains("is not ready") == true, "\(String(describing: refused))")

        // Other models keep serving.
        let tokens = try await server.infer(InferRequest(modelName: "preprocessing", inputs: [
            text("QUERY", "hello"), int32("REQUEST_OUTPUT_LEN", [4]),
        ]))
        #expect(tokens.ints("INPUT_ID")?.isEmpty == false)

        // Loading it again (a fresh backend) brings it back.
        try await server.loadModel("tensorrt_llm", config: nil)
        #expect(server.isModelReady("tensorrt_llm", version: ""))
        #expect(server.isModelReady("ensemble", version: ""))
        #expect(server.isReady())
        #expect(server.repositoryIndex(readyOnly: false).first { $0.name == "tensorrt_llm" }?.state == "READY")
        let after = try await server.infer(Self.request())
        #expect(after.ints("output_ids") == before.ints("output_ids"))
        await server.shutdown(gracePeriod: 1)
    }
}

/// When the backends of a test fail: the matmul after `afterMatmuls` more, once.
final class FaultPlan: Sendable {
    private struct State {
        var countdown: Int?
        var contextLost = false
        var fired = 0
    }
    private let state = Mutex(State())

    func arm(afterMatmuls count: Int, contextLost: Bool = false) {
        state.withLock { $0 = State(countdown: count, contextLost: contextLost, fired: $0.fired) }
    }

    var fired: Int { state.withLock { $0.fired } }

    /// The fault of this matmul, if it is the one.
    func matmul() -> DeviceFault? {
        state.withLock { s in
            guard let n = s.countdown else { return nil }
            guard n == 0 else { s.countdown = n - 1; return nil }
            s.countdown = nil
            s.fired += 1
            return DeviceFault("injected matmul failure", contextLost: s.contextLost)
        }
    }
}

/// The CPU backend with the failures a FaultPlan asks for, kept as a device backend keeps them
/// (ComputeBackend.takeFault): the ops go on (harmless here), the fault waits to be taken; a lost
/// context's is never forgotten.
final class FaultyBackend: ComputeBackend, Sendable {
    let cpu = CPUBackend()
    let plan: FaultPlan
    private let fault = Mutex<DeviceFault?>(nil)

    init(plan: FaultPlan) { self.plan = plan }

    var name: String { "cpu+faults" }
    var nativeBlockTypes: Set<DType> { cpu.nativeBlockTypes }

    func takeFault() -> DeviceFault? {
        fault.withLock { f in
            defer { if f?.contextLost != true { f = nil } }
            return f
        }
    }

    func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) {
        if let f = plan.matmul() { fault.withLock { if $0 == nil { $0 = f } } }
        cpu.matmul(x, weight: weight, bias: bias, into: out)
    }

    func upload(_ host: HostTensor) throws -> Tensor { try cpu.upload(host) }
    func makeActivation(_ shape: [Int]) -> Tensor { cpu.makeActivation(shape) }
    func makeKVCache(_ layout: KVCacheLayout) throws -> KVCache { try cpu.makeKVCache(layout) }
    func download(_ tensor: Tensor) -> [Float] { cpu.download(tensor) }
    func embed(_ ids: [Int32], table: Tensor, into out: Tensor) { cpu.embed(ids, table: table, into: out) }
    func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into out: Tensor) { cpu.rmsNorm(x, weight: weight, eps: eps, into: out) }
    func rope(_ x: Tensor, headCount: Int, headDim: Int, positions: [Int32], inverseFrequencies: [Float]) {
        cpu.rope(x, headCount: headCount, headDim: headDim, positions: positions, inverseFrequencies: inverseFrequencies)
    }
    func attention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, cache: KVCache, layer: Int,
                   sequences: [AttentionSequence], scale: Float, into out: Tensor) {
        cpu.attention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: headDim, cache: cache, layer: layer,
                      sequences: sequences, scale: scale, into: out)
    }
    func swiglu(_ gateUp: Tensor, into out: Tensor) { cpu.swiglu(gateUp, into: out) }
    func add(_ x: Tensor, into accumulator: Tensor) { cpu.add(x, into: accumulator) }
    func gatherRows(_ x: Tensor, rows: [Int], into out: Tensor) { cpu.gatherRows(x, rows: rows, into: out) }
    func gatherColumns(_ x: Tensor, order: ColumnOrder, into out: Tensor) { cpu.gatherColumns(x, order: order, into: out) }
    func copyKVBlock(_ cache: KVCache, from: Int, to: Int) { cpu.copyKVBlock(cache, from: from, to: to) }
}
