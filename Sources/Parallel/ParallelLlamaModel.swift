// ParallelLlamaModel: the Llama-family model cut over N × M ranks — N-way tensor parallel within
// each of M pipeline stages — each rank with its own backend, KV cache, thread and LlamaStage
// (Models' one layer loop). A CausalLM, so ModelRunner drives it exactly like LlamaModel.
import Checkpoints
import Compute
import Models
import Synchronization

/// The KV caches of every rank: rank (s, t) holds layers of stage s and the KV heads of tensor
/// rank t. `layout` is the whole model's, counting each rank's (replicated) KV heads.
public final class ParallelKVCache: KVCache {
    public let layout: KVCacheLayout
    /// Indexed by flat rank s·N + t.
    let caches: [KVCache]

    init(layout: KVCacheLayout, caches: [KVCache]) {
        self.layout = layout
        self.caches = caches
    }
}

/// One step of the pipeline schedule: stage `stage` began (it has the micro-batch's input) or
/// finished micro-batch `microBatch`.
public struct PipelineEvent: Sendable, Equatable {
    public enum Kind: Sendable { case start, end }
    public let stage: Int
    public let microBatch: Int
    public let kind: Kind
}

/// Told of each stage's schedule events, on the stage's first tensor rank's thread.
public typealias PipelineObserver = @Sendable (PipelineEvent) -> Void

public final class ParallelLlamaModel: CausalLM {
    public let config: TransformerConfig
    public let parallel: ParallelConfig
    public let weightBytes: Int
    /// Micro-batches a step's sequences are split into when there are several stages (at most
    /// one per sequence).
    public let microBatchCount: Int
    let observer: PipelineObserver?

    /// Rank (s, t)'s layers of stage s cut for tensor rank t, indexed by flat rank s·N + t.
    let stages: [LlamaStage]
    let threads: RankThreads
    /// Every rank's member of its tensor-parallel group (none with one tensor rank).
    let collectives: [Collective]
    /// A pipeline handoff a stage could not upload (takeFault); the stage goes on with its schedule.
    private let handoffFault = Mutex<DeviceFault?>(nil)

    /// Cuts `weights` for every rank (quantizing each share when `quantization` asks) and uploads each share to its own backend, made by
    /// `makeBackend(flatRank)` on that rank's thread. `makeCollectives` makes each stage's
    /// tensor-parallel group (shared memory by default). `microBatchCount` defaults to the number
    /// of stages; `observer` hears every stage's start and end of each micro-batch.
    public init(config c: TransformerConfig, weights: LlamaWeights, parallel p: ParallelConfig,
                quantization: WeightQuantization? = nil,
                makeBackend: @escaping @Sendable (Int) throws -> ComputeBackend,
                makeCollectives: CollectiveFactory = HostCollectiveGroup.make,
                microBatchCount: Int? = nil, observer: PipelineObserver? = nil) throws {
        try p.validate(for: c)
        // A row-parallel shard would take its per-token activation scales over its own columns
        // only: not the FP8 GEMM of one device. Refused rather than computed differently.
        if p.tensorParallelSize > 1 && (quantization == .fp8 || weights.layers.contains { $0.qkv.fp8 != nil || $0.down.fp8 != nil }) {
            throw BackendLimitation("fp8 (--quantization fp8 or an FP8 checkpoint) with tensor parallelism: FP8 matrices are not "
                + "sharded yet; use tensor_parallel_size 1")
        }
        config = c
        parallel = p
        self.microBatchCount = microBatchCount ?? p.pipelineParallelSize
        self.observer = observer
        threads = RankThreads(count: p.rankCount, name: "petrel-parallel")
        let n = p.tensorParallelSize, m = p.pipelineParallelSize
        // Backends first (each made on its rank's thread), then each stage's collectives over its
        // backends (with more than one tensor rank), then every rank's share of the weights.
        let backends = try threads.run { flat in try makeBackend(flat) }
        var collectives: [Collective] = []
        if n > 1 {
            for s in 0..<m { collectives += try makeCollectives(Array(backends[s * n ..< (s + 1) * n])) }
        }
        self.collectives = collectives
        stages = try threads.run { [collectives] flat in
            let (s, t) = (flat / n, flat % n)
            let weights = TensorShard(rank: t, size: n, config: c)
                .stageWeights(weights, config: c, layers: p.layers(ofStage: s, layerCount: c.layerCount),
                              isFirstStage: s == 0, isLastStage: s == m - 1)
            // Quantized after the cut: each rank's groups are its own columns' (row-parallel shards).
            return try LlamaStage(config: c, weights: weights, backend: backends[flat], quantization: quantization,
                                  collective: n > 1 ? collectives[flat] : nil)
        }
        weightBytes = stages.reduce(0) { $0 + $1.weightBytes }
    }

    public func kvCacheLayout(blockCount: Int, blockSize: Int) -> KVCacheLayout {
        // Every layer lives on one stage; within it each tensor rank holds its KV heads.
        let perStage = stages.prefix(parallel.tensorParallelSize).reduce(0) { $0 + $1.kvHeadCount }
        return KVCacheLayout(layerCount: config.layerCount, blockCount: blockCount, blockSize: blockSize,
                             kvHeadCount: perStage, headDim: config.headDim)
    }

    public func makeKVCache(blockCount: Int, blockSize: Int) throws -> KVCache {
        let caches = try threads.run { [stages] flat in
            try stages[flat].backend.makeKVCache(stages[flat].kvCacheLayout(blockCount: blockCount, blockSize: blockSize))
        }
        return ParallelKVCache(layout: kvCacheLayout(blockCount: blockCount, blockSize: blockSize), caches: caches)
    }

    public func copyKVBlock(_ cache: KVCache, from: Int, to: Int) {
        let caches = (cache as! ParallelKVCache).caches
        _ = try? threads.run { [stages] flat in stages[flat].backend.copyKVBlock(caches[flat], from: from, to: to) }
    }

    public func logits(_ batch: ForwardBatch, cache: KVCache) -> [Float] {
        precondition(!batch.tokens.isEmpty && batch.positions.count == batch.tokens.count)
        let caches = (cache as! ParallelKVCache).caches
        let n = parallel.tensorParallelSize, m = parallel.pipelineParallelSize
        let micro = m > 1 ? MicroBatch.split(batch, into: microBatchCount) : [MicroBatch(whole: batch)]
        let vocab = config.vocabularySize
        let output = LogitRows(rows: batch.logitRows.count, vocabulary: vocab)
        // handoffs[s · N + t]: stage s - 1's tensor rank t to stage s's (all of a stage's tensor
        // ranks hold the same residual stream, so each hands to its counterpart).
        let handoffs = (0..<(n * m)).map { _ in Handoff<HostTensor>() }
        let stages = self.stages, observer = self.observer
        _ = try? threads.run { flat in
            let (s, t) = (flat / n, flat % n)
            let stage = stages[flat], b = stage.backend
            for (k, mb) in micro.enumerated() {
                let input = s == 0 ? nil : handoffs[flat].take()
                if t == 0 { observer?(PipelineEvent(stage: s, microBatch: k, kind: .start)) }
                let a = stage.makeActivations(tokens: mb.batch.tokens.count, rows: mb.batch.logitRows.count)
                if let input {
                    do {
                        b.gatherRows(try b.upload(input), rows: Array(0..<input.rowCount), into: a.x)
                    } catch {
                        self.handoffFault.withLock { if $0 == nil { $0 = DeviceFault("pipeline handoff: cannot upload to \(b.name): \(error)") } }
                    }
                }
                stage.enqueue(mb.batch, cache: caches[flat], on: a)
                if let logits = a.logits, t == 0 {
                    output.write(trimmed(b.download(logits), rows: logits.rowCount, width: logits.rowLength, to: vocab),
                                 at: mb.logitRowIndices)
                }
                let handoff = s == m - 1 ? nil : HostTensor.float32(b.download(a.x), shape: [a.x.rowCount, a.x.rowLength])
                if t == 0 { observer?(PipelineEvent(stage: s, microBatch: k, kind: .end)) }
                if let handoff { handoffs[flat + n].put(handoff) }
            }
        }
        return output.values
    }

    /// Every rank's backend fault (each taken on its rank's thread), its collective's and the
    /// handoffs': a lost context first.
    public func takeFault() -> DeviceFault? {
        let stages = self.stages
        var faults = ((try? threads.run { flat in stages[flat].backend.takeFault() }) ?? []).compactMap { $0 }
        faults += collectives.compactMap { $0.takeFault() }
        if let f = handoffFault.withLock({ f in defer { f = nil }; return f }) { faults.append(f) }
        return faults.first(where: \.contextLost) ?? faults.first
    }
}

/// Rows of `width` logits cut to their first `vocabulary` (the gathered slices' padding dropped).
private func trimmed(_ padded: [Float], rows: Int, width: Int, to vocabulary: Int) -> [Float] {
    if width == vocabulary { return padded }
    var out = [Float]()
    out.reserveCapacity(rows * vocabulary)
    for r in 0..<rows { out += padded[r * width ..< r * width + vocabulary] }
    return out
}

/// A contiguous run of a batch's sequences, renumbered to start at token 0.
struct MicroBatch {
    let batch: ForwardBatch
    /// For each of this micro-batch's logit rows, its index in the whole batch's logitRows.
    let logitRowIndices: [Int]

    init(whole batch: ForwardBatch) {
        self.batch = batch
        logitRowIndices = Array(batch.logitRows.indices)
    }

    init(_ batch: ForwardBatch, sequences range: Range<Int>) {
        let seqs = batch.sequences[range]
        let begin = seqs.first!.tokenBegin, end = seqs.last!.tokenBegin + seqs.last!.tokenCount
        let picked = batch.logitRows.indices.filter { batch.logitRows[$0] >= begin && batch.logitRows[$0] < end }
        self.batch = ForwardBatch(tokens: Array(batch.tokens[begin..<end]), positions: Array(batch.positions[begin..<end]),
                                  sequences: seqs.map {
                                      var s = $0
                                      s.tokenBegin -= begin
                                      return s
                                  },
                                  logitRows: picked.map { batch.logitRows[$0] - begin })
        logitRowIndices = picked
    }

    /// Splits the batch by sequence into at most `count` micro-batches of about equal token
    /// counts. A batch whose sequences do not tile its tokens in order stays whole.
    static func split(_ batch: ForwardBatch, into count: Int) -> [MicroBatch] {
        let seqs = batch.sequences
        var next = 0
        for s in seqs {
            guard s.tokenBegin == next else { return [MicroBatch(whole: batch)] }
            next += s.tokenCount
        }
        guard next == batch.tokens.count, count > 1, seqs.count > 1 else { return [MicroBatch(whole: batch)] }
        let parts = min(count, seqs.count), total = Double(batch.tokens.count)
        var result: [MicroBatch] = []
        var first = 0, before = 0   // before: tokens of the sequences ahead of i
        for i in seqs.indices {
            let cutsLeft = parts - result.count - 1
            if i > first && cutsLeft > 0 {
                // Cut before sequence i when that lands nearer the next equal share, or when
                // every remaining sequence must start a micro-batch of its own.
                let target = total * Double(result.count + 1) / Double(parts)
                let nearer = abs(Double(before) - target) <= abs(Double(before + seqs[i].tokenCount) - target)
                if nearer || seqs.count - i == cutsLeft {
                    result.append(MicroBatch(batch, sequences: first..<i))
                    first = i
                }
            }
            before += seqs[i].tokenCount
        }
        result.append(MicroBatch(batch, sequences: first..<seqs.count))
        return result
    }
}

/// The whole batch's logits, written by the last stage micro-batch by micro-batch.
private final class LogitRows: Sendable {
    private let rows: Mutex<[Float]>
    let vocabulary: Int

    init(rows count: Int, vocabulary: Int) {
        rows = Mutex([Float](repeating: 0, count: count * vocabulary))
        self.vocabulary = vocabulary
    }

    var values: [Float] { rows.withLock { $0 } }

    func write(_ part: [Float], at indices: [Int]) {
        let v = vocabulary
        rows.withLock { rows in
            for (i, j) in indices.enumerated() {
                rows.replaceSubrange(j * v ..< (j + 1) * v, with: part[i * v ..< (i + 1) * v])
            }
        }
    }
}
