// DecodeStepGraphs (a runner's decode steps on a StepRecording backend, the CUDA backend's graphs),
// checked on the CPU: a recorder that behaves like CUDA graphs — it warms a shape up, records the
// ops of its second step with the tensors they were given, and replays that recording for later
// steps with the new step's inputs — must give the same logits, bit for bit, as the plain CPU backend.
import Checkpoints
import Compute
import CPUCompute
import Foundation
import Models
import Runtime
import TestFixtures
import Testing

/// The CPU backend plus graph-like recording. Between beginStep and endStep the embed, rope,
/// attention and row-gather ops read the step's inputs (as the CUDA kernels read the step's
/// upload), so a recording replays correctly for new inputs only if the model hands it the same
/// tensors every step. Unchecked: the test uses it from one thread at a time (ops run as they are
/// enqueued, on the caller's thread).
final class RecordingCPUBackend: ComputeBackend, StepRecording, @unchecked Sendable {
    struct Inputs {
        var tokens: [Int32], positions: [Int32], sequences: [AttentionSequence], rows: [Int]
    }
    struct Key: Hashable { var owner: UInt64, n: Int, rows: Int }

    let cpu = CPUBackend(exactQuantizedMath: true)
    var name: String { "cpu+recording" }
    private var current: Inputs?
    private var key: Key?
    private var recording: [() -> Void]?
    private var recordings: [Key: [() -> Void]] = [:]
    private var warmed: Set<Key> = []
    private(set) var recorded = 0, replayed = 0, cleared = 0

    /// Runs `op` now and, while recording, keeps it for replays.
    private func enqueue(_ op: @escaping () -> Void) {
        op()
        recording?.append(op)
    }

    func beginStep(owner: UInt64, tokens: [Int32], positions: [Int32], sequences: [AttentionSequence], layout: KVCacheLayout,
                   headCount: Int, kvHeadCount: Int, headDim: Int, inverseFrequencies: [Float], rows: [Int]) -> StepRecordingAction {
        current = Inputs(tokens: tokens, positions: positions, sequences: sequences, rows: rows)
        let k = Key(owner: owner, n: tokens.count, rows: rows.count)
        if let ops = recordings[k] {
            ops.forEach { $0() }
            replayed += 1
            current = nil
            return .replayed
        }
        key = k
        if warmed.contains(k) { recording = [] } else { warmed.insert(k) }
        return .enqueue
    }

    func endStep() -> Bool {
        if let ops = recording, let k = key {
            recordings[k] = ops
            recorded += 1
        }
        recording = nil
        key = nil
        current = nil
        return false
    }

    func clearStepRecordings() {
        recordings = [:]
        warmed = []
        cleared += 1
    }

    func upload(_ host: HostTensor) throws -> Tensor { try cpu.upload(host) }
    func makeActivation(_ shape: [Int]) -> Tensor { cpu.makeActivation(shape) }
    func makeKVCache(_ layout: KVCacheLayout) throws -> KVCache { try cpu.makeKVCache(layout) }
    func download(_ tensor: Tensor) -> [Float] { cpu.download(tensor) }
    func embed(_ ids: [Int32], table: Tensor, into out: Tensor) {
        enqueue { [unowned self] in cpu.embed(current?.tokens ?? ids, table: table, into: out) }
    }
    func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, into out: Tensor) {
        enqueue { [cpu] in cpu.rmsNorm(x, weight: weight, eps: eps, into: out) }
    }
    func matmul(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) {
        enqueue { [cpu] in cpu.matmul(x, weight: weight, bias: bias, into: out) }
    }
    func rope(_ x: Tensor, headCount: Int, headDim: Int, positions: [Int32], inverseFrequencies: [Float]) {
        enqueue { [unowned self] in
            cpu.rope(x, headCount: headCount, headDim: headDim, positions: current?.positions ?? positions,
                     inverseFrequencies: inverseFrequencies)
        }
    }
    func attention(qkv: Tensor, headCount: Int, kvHeadCount: Int, headDim: Int, cache: KVCache, layer: Int,
                   sequences: [AttentionSequence], scale: Float, into out: Tensor) {
        enqueue { [unowned self] in
            cpu.attention(qkv: qkv, headCount: headCount, kvHeadCount: kvHeadCount, headDim: headDim, cache: cache, layer: layer,
                          sequences: current?.sequences ?? sequences, scale: scale, into: out)
        }
    }
    func swiglu(_ gateUp: Tensor, into out: Tensor) { enqueue { [cpu] in cpu.swiglu(gateUp, into: out) } }
    func add(_ x: Tensor, into accumulator: Tensor) { enqueue { [cpu] in cpu.add(x, into: accumulator) } }
    func gatherRows(_ x: Tensor, rows: [Int], into out: Tensor) {
        enqueue { [unowned self] in cpu.gatherRows(x, rows: current?.rows ?? rows, into: out) }
    }
    func gatherColumns(_ x: Tensor, order: ColumnOrder, into out: Tensor) {
        enqueue { [cpu] in cpu.gatherColumns(x, order: order, into: out) }
    }
    func copyKVBlock(_ cache: KVCache, from: Int, to: Int) { cpu.copyKVBlock(cache, from: from, to: to) }
}

@Suite struct StepRecordingTests {
    /// Decode steps of 3, 5 and then 9 sequences (the last outgrows the step buffers) after one
    /// ragged prefill: the recording backend's logits equal the plain CPU backend's at every step,
    /// shapes were recorded and replayed, and outgrowing the buffers dropped the recordings. The
    /// prefill is not a decode step: the step graphs leave it to the model's own forward pass. The
    /// GPTQ act-order fixture's steps gather columns (gatherColumns) inside the recordings.
    @Test(arguments: ["tiny-llama", "quantized/gptq-4bit-actorder"])
    func replayedDecodeStepsEqualPlainSteps(fixture: String) throws {
        let ckpt = try LoadedCheckpoint.open(Fixtures.path(fixture))
        #expect(fixture == "tiny-llama" || ckpt.weights.layers.allSatisfy { $0.qkvInputOrder != nil })
        let recorder = RecordingCPUBackend()
        let recorded = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: recorder)
        let graphs = try #require(DecodeStepGraphs(model: recorded))
        let plain = try LlamaModel(config: ckpt.config, weights: ckpt.weights, backend: CPUBackend(exactQuantizedMath: true))
        let vocab = ckpt.config.vocabularySize, blockSize = 4, perSequence = 12, count = 9
        let layout = recorded.kvCacheLayout(blockCount: perSequence * count, blockSize: blockSize)
        let caches = (try recorder.makeKVCache(layout), try plain.backend.makeKVCache(layout))
        func table(_ i: Int, covering tokens: Int) -> [Int32] {
            (0..<((tokens + blockSize - 1) / blockSize)).map { Int32(($0 * count + i * 5) % (perSequence * count)) }
        }
        var contexts = (0..<count).map { 2 + 3 * $0 }
        var tokens: [Int32] = [], positions: [Int32] = [], sequences: [AttentionSequence] = [], rows: [Int] = []
        for (i, c) in contexts.enumerated() {
            sequences.append(AttentionSequence(tokenBegin: tokens.count, tokenCount: c, contextBefore: 0, blockTable: table(i, covering: c)))
            tokens += (0..<c).map { Int32(5 + (i * 31 + $0 * 7) % (vocab - 5)) }
            positions += (0..<c).map(Int32.init)
            rows.append(tokens.count - 1)
        }
        let prefill = ForwardBatch(tokens: tokens, positions: positions, sequences: sequences, logitRows: rows)
        #expect(graphs.forward(prefill, cache: caches.0) == nil)
        let first = recorder.download(recorded.forward(prefill, cache: caches.0))
        #expect(first == plain.backend.download(plain.forward(prefill, cache: caches.1)))
        var next = (0..<count).map { i -> Int32 in
            let r = first[(i * vocab)..<((i + 1) * vocab)]
            return Int32(r.indices.max { r[$0] < r[$1] }! - i * vocab)
        }
        for step in 0..<16 {
            let active = step < 6 ? [0, 2, 4] : step < 12 ? [0, 1, 2, 3, 4] : Array(0..<count)
            let batch = ForwardBatch(
                tokens: active.map { next[$0] }, positions: active.map { Int32(contexts[$0]) },
                sequences: active.enumerated().map { j, i in
                    AttentionSequence(tokenBegin: j, tokenCount: 1, contextBefore: contexts[i], blockTable: table(i, covering: contexts[i] + 1))
                },
                logitRows: Array(active.indices))
            let a = recorder.download(try #require(graphs.forward(batch, cache: caches.0)))
            let b = plain.backend.download(plain.forward(batch, cache: caches.1))
            #expect(a == b, "step \(step)")
            for (j, i) in active.enumerated() {
                let r = a[(j * vocab)..<((j + 1) * vocab)]
                next[i] = Int32(r.indices.max { r[$0] < r[$1] }! - j * vocab)
                contexts[i] += 1
            }
        }
        #expect(recorder.recorded == 3)
        #expect(recorder.replayed == 16 - 6)
        #expect(recorder.cleared >= 1)   // 9 rows outgrew the 8-row buffers
    }
}
