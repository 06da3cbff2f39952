// The self-test's device faults: an allocation failure injected into the CUDA library
// (petrel_debug_fail_alloc_after, reachable only from here) must fail the request whose step it
// hits, with an error, and leave the engine serving: the next request gives the tokens it gave
// before the fault.
@_spi(SelfTest) import CUDACompute
import Compute
import Dispatch
import Engine
import Models
import Runtime

extension OpCheck {
    mutating func deviceFaults() throws {
        guard let cuda = dev as? CUDABackend else { return }
        let smol = BuiltinConfig.smollm2_135m.config
        let model = try LlamaModel(config: smol, randomWeightsOn: cuda, seed: 5)
        let runner = try ModelRunner(model: model, blockCount: 64, blockSize: 16)
        let engine = try Engine(config: SchedulerConfig(numBlocks: 64, blockSize: 16, maxBatchSize: 8, maxNumTokens: 2048,
                                                        maxSequenceLength: smol.maxPositions), executor: runner)
        let prompt = (0..<20).map { _ in Int32(rng.below(smol.vocabularySize)) }
        /// The request's tokens, or why it failed.
        func generate(_ id: String) -> Result<[Int32], Error> {
            let box = ResultBox()
            let done = DispatchSemaphore(value: 0)
            Task {
                do {
                    var tokens: [Int32] = []
                    let stream = try engine.submit(Request(id: id, prompt: prompt, stop: StopConditions(maxTokens: 8, ignoreEOS: true)))
                    for try await o in stream { tokens += o.newTokenIDs }
                    box.put(0, tokens, [])
                } catch { box.fail(error) }
                done.signal()
            }
            done.wait()
            return Result { try box.result()[0]!.0 }
        }
        let before = generate("before")
        cuda.failAllocation(after: 2)   // the prefill's third activation
        let faulty = generate("faulty")
        let after = generate("after")   // (dropping the engine stops its loop)

        var failedWithMessage = false
        if case .failure(let error) = faulty, case .requestFailed(_, let message)? = error as? EngineError {
            failedWithMessage = message.contains("injected")
        }
        record("device fault: injected allocation failure", "its request fails with the device's message",
               [failedWithMessage ? 0 : 1], [0], tolerance: 0)
        let same = (try? before.get()).map { $0.count == 8 && $0 == (try? after.get()) } ?? false
        record("device fault: the next request", "succeeds, the same 8 tokens as before the fault",
               [same && runner.lostContext == nil ? 0 : 1], [0], tolerance: 0)
    }
}
