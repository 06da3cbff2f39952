// DecodeStepGraphs: a runner's decode steps on a StepRecording backend (the CUDA backend's
// graphs). A recording holds the addresses of the buffers it ran on, so decode steps run on
// buffers kept here, the same for every step; the model only enqueues its layers on them
// (LlamaStage.enqueue). Prefill and mixed steps are not recorded: they run as the model's own
// forward pass.
import Compute
import Models
import Synchronization

public final class DecodeStepGraphs: Sendable {
    public let model: LlamaModel

    /// The buffers decode steps run on, sized for `capacity` rows (grown to the next power of two;
    /// each growth is a new `generation`, so recordings of the old buffers are never asked for again).
    private struct State {
        var buffers: LlamaActivations?
        var capacity = 0
        var generation = 0
    }
    private let step = Mutex(State())

    /// nil unless the model's backend records steps.
    public init?(model: LlamaModel) {
        guard model.backend is StepRecording else { return nil }
        self.model = model
    }

    /// Recordings hold this object's buffers: none may outlive them.
    deinit {
        if step.withLock({ $0.buffers != nil }), let recorder = model.backend as? StepRecording { recorder.clearStepRecordings() }
    }

    /// The logits (logitRows.count, vocab) of `batch` when it is a decode step (one new token per
    /// sequence, sequence i at row i) the backend takes: recorded, or replayed from its recording;
    /// nil when it is not (nothing has run). They stay valid until this object's next step. One
    /// step at a time per backend (callers hold the model's `withExclusiveUse`).
    public func forward(_ batch: ForwardBatch, cache: KVCache) -> Tensor? {
        let n = batch.tokens.count
        guard let recorder = model.backend as? StepRecording, n > 0, batch.positions.count == n, batch.sequences.count == n,
              batch.sequences.enumerated().allSatisfy({ $1.tokenBegin == $0 && $1.tokenCount == 1 }) else { return nil }
        let stage = model.stage
        return step.withLock { state -> Tensor? in
            let rows = batch.logitRows.count
            // The buffers are made only when the backend takes the step; growing them starts a new
            // generation. A recording holds the buffers' and the cache's addresses (this object and
            // the cache clear the recordings when they go), so (self, generation, cache) names them.
            let grows = n > state.capacity
            // Recordings of the buffers about to be replaced go first (clearing after beginStep
            // would also forget that this step warmed its shape up).
            if grows && state.buffers != nil { recorder.clearStepRecordings() }
            var hasher = Hasher()
            hasher.combine(ObjectIdentifier(self))
            hasher.combine(grows ? state.generation + 1 : state.generation)
            hasher.combine(ObjectIdentifier(cache))
            let owner = UInt64(UInt(bitPattern: hasher.finalize()))
            let action = recorder.beginStep(owner: owner, tokens: batch.tokens, positions: batch.positions, sequences: batch.sequences,
                                            layout: cache.layout, headCount: stage.headCount, kvHeadCount: stage.kvHeadCount,
                                            headDim: model.config.headDim, inverseFrequencies: stage.inverseFrequencies,
                                            rows: batch.logitRows)
            if action != .ineligible && grows {
                // (.replayed cannot happen here: nothing was recorded under the new generation.)
                var capacity = 1
                while capacity < n { capacity *= 2 }
                state.buffers = stage.makeActivations(tokens: capacity, rows: capacity)
                state.capacity = capacity
                state.generation += 1
            }
            switch action {
            case .replayed:
                return state.buffers!.prefix(tokens: n, rows: rows).logits!
            case .enqueue:
                let a = state.buffers!.prefix(tokens: n, rows: rows)
                repeat { stage.enqueue(batch, cache: cache, on: a) } while recorder.endStep()
                return a.logits!
            case .ineligible:
                return nil
            }
        }
    }

    /// Drops the decode buffers and their recordings (after a device fault: the buffers may have
    /// no memory, a recording may have stopped half way); the next decode step makes them anew.
    public func reset() {
        step.withLock { state in
            guard state.buffers != nil else { return }
            (model.backend as? StepRecording)?.clearStepRecordings()
            state.buffers = nil
            state.capacity = 0
        }
    }

    /// CausalLM.logits for a step `forward` takes; nil (nothing run) for any other.
    public func logits(_ batch: ForwardBatch, cache: KVCache) -> [Float]? {
        forward(batch, cache: cache).map { model.backend.download($0) }
    }

    /// CausalLM.topCandidates for a step `forward` takes; nil (nothing run) for any other, or
    /// when the backend does not select tokens.
    public func topCandidates(_ batch: ForwardBatch, cache: KVCache, count: Int, temperatures: [Float], edits: [LogitEdit])
        -> TokenCandidates? {
        guard model.selectsTokensOnDevice, let logits = forward(batch, cache: cache) else { return nil }
        return model.topCandidates(of: logits, count: count, temperatures: temperatures, edits: edits)
    }
}
