// The plain data that crosses the engine's seams: the scheduler's configuration, what one step
// runs (SchedulerOutput, to the runner), what it produced (StepOutput, from the runner), and
// what each request's stream receives (RequestOutput).

public struct SchedulerConfig: Equatable, Sendable {
    /// TensorRT-LLM's batch_scheduler_policy.
    public enum Policy: String, Equatable, Sendable {
        /// Admit while the prompt's blocks fit; when a decode finds no free block, preempt the
        /// most recently admitted request by recompute.
        case maxUtilization = "max_utilization"
        /// Admit only when the prompt and all of maxTokens fit in blocks no one else has
        /// reserved; nothing is ever preempted.
        case guaranteedNoEvict = "guaranteed_no_evict"
    }

    /// Running requests at most (a beam-search request counts once).
    public var maxBatchSize: Int
    /// Tokens fed per step at most, prefill chunks and decodes together (a decoding request
    /// with B beams takes B).
    public var maxNumTokens: Int
    /// Split prompts across steps to fit maxNumTokens. Off: a prompt is prefilled in one step,
    /// so longer prompts are rejected. Recomputing a preempted request is always chunked.
    public var enableChunkedContext: Bool
    public var policy: Policy
    /// Tokens per KV block.
    public var blockSize: Int
    /// KV blocks in the cache (see KVCacheSizing).
    public var numBlocks: Int
    public var enableKVCacheReuse: Bool
    /// Largest beamWidth a request may ask for (the runner's max_beam_width).
    public var maxBeamWidth: Int
    /// Prompt + generated tokens at most (the model's context, max_seq_len); nil: unlimited.
    /// A request reaching it finishes with `.length`.
    public var maxSequenceLength: Int?

    public init(numBlocks: Int, blockSize: Int = 32, maxBatchSize: Int = 64, maxNumTokens: Int = 8192,
                enableChunkedContext: Bool = false, policy: Policy = .guaranteedNoEvict,
                enableKVCacheReuse: Bool = false, maxBeamWidth: Int = 1, maxSequenceLength: Int? = nil) {
        self.numBlocks = numBlocks
        self.blockSize = blockSize
        self.maxBatchSize = maxBatchSize
        self.maxNumTokens = maxNumTokens
        self.enableChunkedContext = enableChunkedContext
        self.policy = policy
        self.enableKVCacheReuse = enableKVCacheReuse
        self.maxBeamWidth = maxBeamWidth
        self.maxSequenceLength = maxSequenceLength
    }

    public func validate() throws {
        func bad(_ field: String, _ message: String) -> EngineError { .invalidParameter(field: field, message: message) }
        guard numBlocks >= 1 else { throw bad("num_blocks", "must be >= 1, got \(numBlocks)") }
        guard blockSize >= 1 else { throw bad("tokens_per_block", "must be >= 1, got \(blockSize)") }
        guard maxBatchSize >= 1 else { throw bad("max_batch_size", "must be >= 1, got \(maxBatchSize)") }
        guard maxNumTokens >= 1 else { throw bad("max_num_tokens", "must be >= 1, got \(maxNumTokens)") }
        guard maxBeamWidth >= 1 else { throw bad("max_beam_width", "must be >= 1, got \(maxBeamWidth)") }
        if let maxSequenceLength, maxSequenceLength < 2 { throw bad("max_seq_len", "must be >= 2, got \(maxSequenceLength)") }
    }
}

/// One sequence to run this step: a prefill chunk, a recompute chunk, or one decode token.
/// Positions are `contextBefore ..< contextBefore + tokens.count`; position p's KV lives in
/// block `blockTable[p / blockSize]`, slot `p % blockSize`.
public struct ScheduledSequence: Equatable, Sendable {
    public var requestID: String
    /// 0 for sampling; the beam's index (into this request's beams) for beam search.
    public var beamIndex: Int
    /// The tokens to feed: a chunk of the prompt (or of prompt + generated, when recomputing),
    /// or the last generated token.
    public var tokens: [Int32]
    /// Tokens of this sequence already in the KV cache.
    public var contextBefore: Int
    /// Covers at least contextBefore + tokens.count tokens.
    public var blockTable: [Int32]
    /// Sample a token from the last position's logits. False for a non-final chunk.
    public var needsSample: Bool
    public var parameters: SamplingParameters
    /// Prompt + generated tokens so far, `tokens` included (for penalties).
    public var history: [Int32]
    /// Tokens generated so far (the sample, if any, is number generatedCount + 1).
    public var generatedCount: Int
    /// Token sequences the sampler must not complete (TRT-LLM bad_words).
    public var badWords: [[Int32]]
    /// Tokens the sampler must not pick this step: end id and stop ids before minTokens.
    public var suppressedTokenIDs: Set<Int32>
}

/// What changed between the previous step and this one, and what this one runs.
public struct StepStats: Equatable, Sendable {
    public var prefillTokenCount = 0
    public var decodeTokenCount = 0
    /// Requests preempted while planning this step.
    public var preemptedCount = 0
    /// Requests admitted this step.
    public var admittedCount = 0
    public var waitingCount = 0
    public var runningCount = 0
    public var kvBlocksUsed = 0
    public var kvBlocksFree = 0
    public var tokenCount: Int { prefillTokenCount + decodeTokenCount }
    public init() {}
}

/// The runner's whole input for one step.
public struct SchedulerOutput: Equatable, Sendable {
    /// Grouped by request (a request's beams are adjacent, in beam order).
    public var sequences: [ScheduledSequence]
    /// Block copies to perform, in order, before the forward pass (copy-on-write of shared
    /// partially-filled blocks when beams fork).
    public var blockCopies: [BlockCopy]
    /// Requests that finished (any reason) since the previous step: drop their state (RNGs, ...).
    public var finishedRequestIDs: [String]
    public var stats: StepStats

    public init(sequences: [ScheduledSequence] = [], blockCopies: [BlockCopy] = [], finishedRequestIDs: [String] = [], stats: StepStats = StepStats()) {
        self.sequences = sequences
        self.blockCopies = blockCopies
        self.finishedRequestIDs = finishedRequestIDs
        self.stats = stats
    }

    /// Nothing for the runner to do.
    public var isEmpty: Bool { sequences.isEmpty && blockCopies.isEmpty && finishedRequestIDs.isEmpty }
}

public struct TokenLogProb: Equatable, Sendable {
    public var token: Int32
    public var logProb: Float
    public init(_ token: Int32, _ logProb: Float) { self.token = token; self.logProb = logProb }
}

/// The runner's result for one sequence with needsSample.
public struct Sample: Equatable, Sendable {
    public var token: Int32
    /// log softmax of the (processed) logits at `token`.
    public var logProb: Float
    /// The parameters.topLogProbs most likely tokens, most likely first; else empty.
    public var topLogProbs: [TokenLogProb]
    /// Beam search only (parameters.beamWidth > 1): the 2 × beamWidth most likely tokens with
    /// their log probabilities, most likely first. `token` / `logProb` are then ignored.
    public var candidates: [TokenLogProb]

    public init(token: Int32, logProb: Float = 0, topLogProbs: [TokenLogProb] = [], candidates: [TokenLogProb] = []) {
        self.token = token
        self.logProb = logProb
        self.topLogProbs = topLogProbs
        self.candidates = candidates
    }
}

/// The runner's whole output for one step.
public struct StepOutput: Equatable, Sendable {
    /// One entry per `SchedulerOutput.sequences` entry, in order: a sample where needsSample,
    /// nil elsewhere.
    public var samples: [Sample?]
    public init(samples: [Sample?]) { self.samples = samples }
}

/// What a request's stream receives after a step: the new output tokens (possibly none while
/// tokens are held back for a stop sequence), and on the last output the finish reason.
/// Beam search sends a single output when it finishes: the best beam, whole.
public struct RequestOutput: Equatable, Sendable {
    public var requestID: String
    public var newTokenIDs: [Int32]
    /// One per new token when parameters.returnLogProbs; else empty.
    public var logProbs: [Float]
    /// One list per new token when parameters.topLogProbs > 0; else empty.
    public var topLogProbs: [[TokenLogProb]]
    /// Sum of the log probabilities of every generated token so far, stop tokens included.
    public var cumulativeLogProb: Double
    public var finishReason: FinishReason?

    public init(requestID: String, newTokenIDs: [Int32] = [], logProbs: [Float] = [], topLogProbs: [[TokenLogProb]] = [],
                cumulativeLogProb: Double = 0, finishReason: FinishReason? = nil) {
        self.requestID = requestID
        self.newTokenIDs = newTokenIDs
        self.logProbs = logProbs
        self.topLogProbs = topLogProbs
        self.cumulativeLogProb = cumulativeLogProb
        self.finishReason = finishReason
    }
}

/// Counters for metrics (Prometheus gauges and counters a layer above).
public struct SchedulerMetrics: Equatable, Sendable {
    /// Requests in the waiting queue, preempted ones included.
    public var waitingCount = 0
    public var runningCount = 0
    /// Requests in the waiting queue that were preempted.
    public var preemptedCount = 0
    public var preemptionsTotal = 0
    public var kvBlocksUsed = 0
    public var kvBlocksFree = 0
    public var kvBlocksTotal = 0
    public var kvBlocksCached = 0
    public var reuseHits = 0
    public var reuseQueries = 0
    public var stepsTotal = 0
    /// Tokens fed in the last step, and over all steps.
    public var lastStepTokenCount = 0
    public var tokensTotal = 0
    public var generatedTokensTotal = 0
    public var finishedTotal = 0
    public init() {}
}
