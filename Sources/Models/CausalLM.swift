// CausalLM: what the Runtime needs of a model — one ragged forward pass over a paged KV cache,
// logits back on the host. LlamaModel (one backend) and Parallel's sharded model conform.
import Compute
import Checkpoints

public protocol CausalLM: AnyObject, Sendable {
    var config: TransformerConfig { get }
    /// Bytes of weights read by one decode step, over every device the model spans.
    var weightBytes: Int { get }
    /// The KV cache's shape. `bytesPerBlock` counts every device's share (a sharded model's
    /// layout is the sum of its ranks': replicated KV heads count once per rank).
    func kvCacheLayout(blockCount: Int, blockSize: Int) -> KVCacheLayout
    func makeKVCache(blockCount: Int, blockSize: Int) throws -> KVCache
    /// Runs the batch, writing its K/V into `cache` (made by this model's `makeKVCache`);
    /// returns logits on the host, row-major (batch.logitRows.count, vocabularySize).
    func logits(_ batch: ForwardBatch, cache: KVCache) -> [Float]
    /// Copies KV block `from` to `to` in every layer (copy-on-write when beams fork).
    func copyKVBlock(_ cache: KVCache, from: Int, to: Int)
    /// Where the logits can stay on the device (DeviceTokenSelection backends): runs the batch
    /// and returns each logit row's `count` best entries after `edits` (penalties, masks) and
    /// its log-sum-exp at its temperature instead of the logits; nil when this model cannot
    /// (then nothing has run).
    func topCandidates(_ batch: ForwardBatch, cache: KVCache, count: Int, temperatures: [Float], edits: [LogitEdit])
        -> TokenCandidates?
    /// Whether `topCandidates` can answer (so a caller need not prepare edits for nothing).
    var selectsTokensOnDevice: Bool { get }
    /// Runs `body` (a step: the forward pass and everything done with its logits) while no other
    /// caller uses the model, where the model needs that (one device stream, logits in buffers the
    /// next step reuses); otherwise runs it at once.
    func withExclusiveUse<T>(_ body: () throws -> T) rethrows -> T
    /// The first device failure since the last call, over every backend the model runs on
    /// (ComputeBackend.takeFault): a step's forward pass never traps; its caller takes this after
    /// the pass and fails the step.
    func takeFault() -> DeviceFault?
}

/// A step's best logits per row, found where the logits are (CausalLM.topCandidates).
public struct TokenCandidates {
    /// rows × count, largest first (ties: lower id first).
    public var ids: [Int32]
    public var values: [Float]
    /// Per row: log(sum(exp(logit / temperature))) over the edited row.
    public var logSumExp: [Float]
    /// The step's unedited logits (rows, vocab), copied to the host on demand, for rows whose
    /// sampling turns out to need the whole row. Valid until the model's next forward pass.
    public var allLogits: () -> [Float]

    public init(ids: [Int32], values: [Float], logSumExp: [Float], allLogits: @escaping () -> [Float]) {
        self.ids = ids
        self.values = values
        self.logSumExp = logSumExp
        self.allLogits = allLogits
    }
}

extension CausalLM {
    public func topCandidates(_ batch: ForwardBatch, cache: KVCache, count: Int, temperatures: [Float], edits: [LogitEdit])
        -> TokenCandidates? { nil }
    public var selectsTokensOnDevice: Bool { false }
    public func withExclusiveUse<T>(_ body: () throws -> T) rethrows -> T { try body() }
}

extension LlamaModel: CausalLM {
    public func makeKVCache(blockCount: Int, blockSize: Int) throws -> KVCache {
        try backend.makeKVCache(kvCacheLayout(blockCount: blockCount, blockSize: blockSize))
    }

    public func logits(_ batch: ForwardBatch, cache: KVCache) -> [Float] {
        backend.download(forward(batch, cache: cache))
    }

    public func takeFault() -> DeviceFault? { backend.takeFault() }

    public func copyKVBlock(_ cache: KVCache, from: Int, to: Int) {
        backend.copyKVBlock(cache, from: from, to: to)
    }

    public var selectsTokensOnDevice: Bool { backend is DeviceTokenSelection }

    public func topCandidates(_ batch: ForwardBatch, cache: KVCache, count: Int, temperatures: [Float], edits: [LogitEdit])
        -> TokenCandidates? {
        guard selectsTokensOnDevice else { return nil }
        return topCandidates(of: forward(batch, cache: cache), count: count, temperatures: temperatures, edits: edits)
    }

    /// topCandidates of logits this model computed (its forward pass, or a decode step run on
    /// buffers a runner keeps); nil when the backend does not select tokens.
    public func topCandidates(of logits: Tensor, count: Int, temperatures: [Float], edits: [LogitEdit]) -> TokenCandidates? {
        guard let selector = backend as? DeviceTokenSelection else { return nil }
        let picked = selector.topCandidates(logits, count: count, temperatures: temperatures, edits: edits)
        let backend = self.backend
        return TokenCandidates(ids: picked.ids, values: picked.values, logSumExp: picked.logSumExp,
                               allLogits: { backend.download(logits) })
    }
}
