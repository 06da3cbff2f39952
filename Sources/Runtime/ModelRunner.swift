// ModelRunner: the Engine's Executor for a CausalLM (LlamaModel, or a sharded model). Turns a
// SchedulerOutput into one ragged ForwardBatch over the paged KV cache, runs it on its own thread
// (never on Swift's cooperative pool), decode steps through DecodeStepGraphs where the backend
// records them (CUDA graphs), and samples each sequence that needs it with its request's Sampler.
// A device fault during a step (CausalLM.takeFault) is thrown before anything is sampled: the
// engine fails that step's requests and goes on.
import Compute
import Dispatch
import Foundation
import Engine
import Models
import Synchronization

public final class ModelRunner: Executor, Sendable {
    public let model: any CausalLM
    public let cache: KVCache
    public let blockSize: Int
    /// This runner's decode steps on buffers it keeps, when the model is a LlamaModel on a
    /// StepRecording backend (the recordings hold the buffers' and the cache's addresses).
    private let stepGraphs: DecodeStepGraphs?
    private let queue = DispatchQueue(label: "petrel.model-runner")
    /// Whether rows that need only their best few logits are sampled from the device's top-k
    /// (DeviceTokenSelection backends); off, every step downloads the logits.
    public let deviceSampling: Bool
    /// Per-request sampler state (the seeded RNG); steps run one at a time.
    private let samplers = Mutex<[String: Sampler]>([:])
    private let lost = Mutex<DeviceFault?>(nil)

    /// The fault that lost the model's device context, once one has: every later step fails, and
    /// the model must be loaded anew (the serving layer marks it unready).
    public var lostContext: DeviceFault? { lost.withLock { $0 } }

    public init(model: any CausalLM, blockCount: Int, blockSize: Int, deviceSampling: Bool = true) throws {
        self.model = model
        self.blockSize = blockSize
        self.deviceSampling = deviceSampling
        self.cache = try model.makeKVCache(blockCount: blockCount, blockSize: blockSize)
        stepGraphs = (model as? LlamaModel).flatMap(DecodeStepGraphs.init(model:))
    }

    public func execute(_ output: SchedulerOutput) async throws -> StepOutput {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try self.run(output) })
            }
        }
    }

    /// Runs one step synchronously (on the caller's thread). Model instances share their model:
    /// a step holds it for its forward pass and the use of its logits (CausalLM.withExclusiveUse).
    public func run(_ output: SchedulerOutput) throws -> StepOutput {
        try model.withExclusiveUse { try runStep(output) }
    }

    private func runStep(_ output: SchedulerOutput) throws -> StepOutput {
        samplers.withLock { s in for id in output.finishedRequestIDs { s.removeValue(forKey: id) } }
        for copy in output.blockCopies { model.copyKVBlock(cache, from: Int(copy.from), to: Int(copy.to)) }
        guard !output.sequences.isEmpty else { return StepOutput(samples: []) }

        let vocab = model.config.vocabularySize
        var tokens: [Int32] = [], positions: [Int32] = []
        var sequences: [AttentionSequence] = [], logitRows: [Int] = []
        for s in output.sequences {
            if let bad = s.tokens.first(where: { $0 < 0 || Int($0) >= vocab }) {
                throw ExecutorError(requestIDs: [s.requestID], message: "token id \(bad) is outside the model's vocabulary of \(vocab)")
            }
            if s.contextBefore + s.tokens.count > model.config.maxPositions {
                throw ExecutorError(requestIDs: [s.requestID], message: "sequence of \(s.contextBefore + s.tokens.count) tokens exceeds the model's context of \(model.config.maxPositions)")
            }
            sequences.append(AttentionSequence(tokenBegin: tokens.count, tokenCount: s.tokens.count,
                                               contextBefore: s.contextBefore, blockTable: s.blockTable))
            positions += (0..<s.tokens.count).map { Int32(s.contextBefore + $0) }
            tokens += s.tokens
            if s.needsSample { logitRows.append(tokens.count - 1) }
        }
        let batch = ForwardBatch(tokens: tokens, positions: positions, sequences: sequences, logitRows: logitRows)
        let sampledSequences = output.sequences.filter(\.needsSample)
        let deviceCounts = sampledSequences.map { Sampler.deviceSamplingCount($0.parameters, vocab: vocab) }
        var logits: [Float]
        var results = [Sample?](repeating: nil, count: sampledSequences.count)
        var hostRows = Array(sampledSequences.indices)
        // Each row's sampler (its request's, or a new one), looked up once for the step.
        var rowSamplers = samplers.withLock { s in sampledSequences.map { s[$0.requestID] ?? Sampler($0.parameters) } }
        if deviceSampling, model.selectsTokensOnDevice, !sampledSequences.isEmpty, deviceCounts.allSatisfy({ $0 != nil }) {
            // Every row needs only its best few logits (after its penalties and masks, applied
            // where the logits are): the device finds them and each row's log-sum-exp, and only
            // those cross to the host. A top-p row whose nucleus reaches past them takes the
            // full-row path below with the step's logits, copied once.
            let k = deviceCounts.map { $0! }.max()!
            var edits: [LogitEdit] = []
            for (row, s) in sampledSequences.enumerated() {
                edits += rowSamplers[row].logitEdits(Self.context(s), row: Int32(row), vocab: vocab)
            }
            let temperatures = sampledSequences.map { $0.parameters.temperature > 0 ? $0.parameters.temperature : 1 }
            if let picks = stepGraphs?.topCandidates(batch, cache: cache, count: k, temperatures: temperatures, edits: edits)
                ?? model.topCandidates(batch, cache: cache, count: k, temperatures: temperatures, edits: edits) {
                try throwFault()
                hostRows = []
                for row in sampledSequences.indices {
                    if let sample = rowSamplers[row].sample(candidateIDs: picks.ids[(row * k)..<((row + 1) * k)],
                                                            values: picks.values[(row * k)..<((row + 1) * k)],
                                                            logSumExp: picks.logSumExp[row]) {
                        results[row] = sample
                    } else {
                        hostRows.append(row)
                    }
                }
                logits = hostRows.isEmpty ? [] : picks.allLogits()
            } else {
                logits = stepGraphs?.logits(batch, cache: cache) ?? model.logits(batch, cache: cache)
            }
        } else {
            logits = stepGraphs?.logits(batch, cache: cache) ?? model.logits(batch, cache: cache)
        }
        try throwFault()

        // Rows left to the host sample independently (each has its own sampler and RNG), so
        // large batches spread over the CPU's cores; results keep the batch order.
        let sampled = hostRows.map { sampledSequences[$0] }
        var drawn = hostRows.map { rowSamplers[$0] }
        var hostResults = [Sample?](repeating: nil, count: sampled.count)
        let rowsOfLogits = hostRows
        drawn.withUnsafeMutableBufferPointer { statesBuffer in
            hostResults.withUnsafeMutableBufferPointer { outBuffer in
                // Each row touches only its own slots of the two buffers, so the rows may run at once.
                nonisolated(unsafe) let states = statesBuffer, out = outBuffer
                let work: @Sendable (Int) -> Void = { [logits] i in
                    let s = sampled[i], row = rowsOfLogits[i]
                    var values = Array(logits[row * vocab..<(row + 1) * vocab])
                    out[i] = states[i].sample(&values, Self.context(s))
                }
                if sampled.count >= 4 { DispatchQueue.concurrentPerform(iterations: sampled.count, execute: work) }
                else { for i in 0..<sampled.count { work(i) } }
            }
        }
        for (i, row) in hostRows.enumerated() {
            results[row] = hostResults[i]
            rowSamplers[row] = drawn[i]
        }
        samplers.withLock { state in for (s, sampler) in zip(sampledSequences, rowSamplers) { state[s.requestID] = sampler } }
        var samples: [Sample?] = []
        samples.reserveCapacity(output.sequences.count)
        var row = 0
        for s in output.sequences {
            guard s.needsSample else { samples.append(nil); continue }
            samples.append(results[row])
            row += 1
        }
        return StepOutput(samples: samples)
    }

    /// Throws the fault the model's backends hold after the step's device work, if any, with the
    /// decode buffers dropped (they may be what failed). Sampler states are not yet written back,
    /// so the step leaves no trace.
    private func throwFault() throws {
        guard let fault = model.takeFault() else { return }
        stepGraphs?.reset()
        if fault.contextLost { lost.withLock { $0 = $0 ?? fault } }
        throw fault
    }

    static func context(_ s: ScheduledSequence) -> SamplingContext {
        SamplingContext(history: s.history, generatedCount: s.generatedCount, badWords: s.badWords, suppressed: s.suppressedTokenIDs)
    }
}
