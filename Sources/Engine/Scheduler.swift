// Scheduler: in-flight (continuous) batching over the block manager. `schedule()` plans one
// step, `update()` applies its samples (Scheduler+Update.swift). Token ids, block ids and
// request states only.

/// Contracts:
/// - Call `schedule()`, run the step, then `update(output, result)` (or `fail(output, ...)`)
///   with that same output, before the next `schedule()`. `add` and `cancel` may come at any
///   time; `update` skips requests that finished in between.
/// - Each step: decodes first (oldest admitted first), then prefill chunks of admitted
///   requests, then admissions from the waiting queue (priority, then arrival; strictly FIFO:
///   the queue's head blocks the rest, so nothing starves behind smaller requests). At most
///   `maxNumTokens` tokens are fed and `maxBatchSize` requests run.
/// - A request's blocks are allocated for its whole prompt when it is admitted; decodes add a
///   slot per step. Under `.maxUtilization` a decode that finds no free block preempts the most
///   recently admitted running request (possibly itself) by recompute; under
///   `.guaranteedNoEvict` admission reserves the request's worst case, so that never happens.
/// - A preempted sampling request keeps its generated tokens and recomputes prompt + generated
///   (chunked under the budget), then continues: its stream sees no gap or repeat. A preempted
///   beam-search request restarts from its prompt: its output is sent only when it finishes.
public struct Scheduler: Sendable {
    public let config: SchedulerConfig
    public internal(set) var blockManager: BlockManager
    /// The waiting queue, next to admit first.
    public private(set) var waitingIDs: [String] = []
    /// Running requests in admission order, oldest first.
    public private(set) var runningIDs: [String] = []

    var entries: [String: Entry] = [:]
    var finishedSinceLastStep: [String] = []
    var reservedBlocks = 0
    var nextOrder = 0
    var totals = SchedulerMetrics()

    public init(config: SchedulerConfig) throws {
        try config.validate()
        self.config = config
        blockManager = BlockManager(blockSize: config.blockSize, numBlocks: config.numBlocks, enableReuse: config.enableKVCacheReuse)
    }

    public var hasUnfinishedRequests: Bool { !entries.isEmpty }
    public func status(of id: String) -> RequestStatus? { entries[id]?.lifecycle.status }

    public var metrics: SchedulerMetrics {
        var m = totals
        m.waitingCount = waitingIDs.count
        m.runningCount = runningIDs.count
        m.preemptedCount = waitingIDs.filter { entries[$0]?.lifecycle.status == .preempted }.count
        m.kvBlocksUsed = blockManager.numUsedBlocks
        m.kvBlocksFree = blockManager.numFreeBlocks
        m.kvBlocksTotal = blockManager.numBlocks
        m.kvBlocksCached = blockManager.numCachedBlocks
        m.reuseHits = blockManager.reuseHits
        m.reuseQueries = blockManager.reuseQueries
        return m
    }

    // MARK: requests in and out

    /// Validates the request against its own fields and this engine's limits, then queues it.
    /// Throws `EngineError` (invalidParameter, requestTooLarge, duplicateRequestID).
    public mutating func add(_ request: Request) throws {
        try request.parameters.validate()
        try request.stop.validate()
        let promptCount = request.promptTokenIDs.count
        guard entries[request.id] == nil else { throw EngineError.duplicateRequestID(request.id) }
        guard promptCount > 0 else { throw EngineError.invalidParameter(field: "input_ids", message: "must not be empty") }
        guard request.parameters.beamWidth <= config.maxBeamWidth else {
            throw EngineError.requestTooLarge("beam_width \(request.parameters.beamWidth) exceeds max_beam_width \(config.maxBeamWidth)")
        }
        if let limit = config.maxSequenceLength, promptCount >= limit {
            throw EngineError.requestTooLarge("the prompt has \(promptCount) tokens; max_seq_len is \(limit)")
        }
        if !config.enableChunkedContext && promptCount > config.maxNumTokens {
            throw EngineError.requestTooLarge("the prompt has \(promptCount) tokens, more than max_num_tokens (\(config.maxNumTokens)); enable chunked context to split it")
        }
        let bound = worstCaseBlocks(request)
        guard bound <= config.numBlocks else {
            throw EngineError.requestTooLarge("the prompt and max_tokens need up to \(bound) KV blocks; the cache has \(config.numBlocks)")
        }
        entries[request.id] = Entry(request: request, order: nextOrder)
        nextOrder += 1
        enqueue(request.id)
    }

    /// Finishes a request now, in any state, and frees its blocks at once (cached full blocks
    /// stay reusable). A layer above that matched a stop string passes `.stop`. Returns the
    /// final output (no new tokens), or nil for an unknown or already finished id.
    public mutating func cancel(_ id: String, reason: FinishReason = .cancelled) -> RequestOutput? {
        guard let entry = entries[id] else { return nil }
        finish(id, reason)
        return RequestOutput(requestID: id, cumulativeLogProb: entry.beams[0].cumulativeLogProb, finishReason: reason)
    }

    /// Takes back a request that `add` accepted and no step has scheduled yet, as if it had
    /// never been added (Engine.submit's all-or-nothing batches). Returns whether it was there.
    @discardableResult
    public mutating func withdraw(_ id: String) -> Bool {
        guard let entry = entries[id], entry.reservedBlocks == 0, waitingIDs.contains(id),
              !runningIDs.contains(id) else { return false }
        entries[id] = nil
        waitingIDs.removeAll { $0 == id }
        return true
    }

    /// Fails the step's requests named in `requestIDs` (all of the step's requests when nil or
    /// when it names none of them) with `.error(message)`. The others did not advance and run
    /// again next step.
    public mutating func fail(_ output: SchedulerOutput, requestIDs: Set<String>? = nil, message: String) -> [RequestOutput] {
        var ids: [String] = []
        for s in output.sequences where ids.last != s.requestID { ids.append(s.requestID) }
        if let requestIDs {
            let named = ids.filter(requestIDs.contains)
            if !named.isEmpty { ids = named }
        }
        return ids.compactMap { cancel($0, reason: .error(message)) }
    }

    // MARK: schedule

    public mutating func schedule() -> SchedulerOutput {
        var out = SchedulerOutput()
        var budget = config.maxNumTokens

        // 1. Decodes, oldest first. Making room preempts from the newest end, which this pass
        //    has not reached yet: scheduled requests are never preempted.
        var index = 0
        while index < runningIDs.count {
            let id = runningIDs[index]
            let beamCount = entries[id]!.beams.count
            guard entries[id]!.isDecoding, budget >= beamCount else { index += 1; continue }
            while !canAppendDecode(id), let victim = runningIDs.last {
                preempt(victim)
                out.stats.preemptedCount += 1
                if victim == id { break }
            }
            guard entries[id]?.lifecycle.status == .running else { continue }
            for b in 0 ..< beamCount {
                let computed = entries[id]!.beams[b].computedCount
                out.blockCopies += blockManager.appendSlots(&entries[id]!.beams[b].blockTable, computedCount: computed)!
                out.sequences.append(entries[id]!.scheduled(beam: b, tokenCount: 1))
            }
            budget -= beamCount
            out.stats.decodeTokenCount += beamCount
            index += 1
        }

        // 2. Prefill (or recompute) chunks of admitted requests, oldest first.
        for id in runningIDs where budget > 0 && !entries[id]!.isDecoding {
            let chunk = entries[id]!.schedulePrefill(budget: budget)
            out.sequences.append(chunk)
            budget -= chunk.tokens.count
            out.stats.prefillTokenCount += chunk.tokens.count
        }

        // 3. Admissions, in queue order, until one does not fit; none in a step that had to
        //    preempt (the blocks just freed go to the running requests).
        while out.stats.preemptedCount == 0, let id = waitingIDs.first, runningIDs.count < config.maxBatchSize, budget > 0 {
            guard admit(id, budget: budget) else {
                if runningIDs.isEmpty {
                    // Everything is free and it still cannot run (add() should have refused it).
                    _ = cancel(id, reason: .error("the request cannot be scheduled under this engine's limits"))
                    continue
                }
                break
            }
            out.stats.admittedCount += 1
            let chunk = entries[id]!.schedulePrefill(budget: budget)
            out.sequences.append(chunk)
            budget -= chunk.tokens.count
            out.stats.prefillTokenCount += chunk.tokens.count
        }

        out.finishedRequestIDs = finishedSinceLastStep
        finishedSinceLastStep = []
        out.stats.waitingCount = waitingIDs.count
        out.stats.runningCount = runningIDs.count
        out.stats.kvBlocksUsed = blockManager.numUsedBlocks
        out.stats.kvBlocksFree = blockManager.numFreeBlocks
        if !out.sequences.isEmpty { totals.stepsTotal += 1 }
        totals.lastStepTokenCount = out.stats.tokenCount
        totals.tokensTotal += out.stats.tokenCount
        return out
    }

    /// Blocks a request may hold at its largest: the prompt's full blocks (shared by all beams)
    /// plus, per beam, the rest of the prompt and every token it may generate.
    func worstCaseBlocks(_ request: Request) -> Int {
        let prompt = request.promptTokenIDs.count
        var total = prompt + request.stop.maxTokens
        if let limit = config.maxSequenceLength { total = min(total, limit) }
        let perBeam = blockManager.blocksFor(prompt % config.blockSize + total - prompt)
        return prompt / config.blockSize + request.parameters.beamWidth * perBeam
    }

    private func canAppendDecode(_ id: String) -> Bool {
        let sequences = entries[id]!.beams.map { (blockTable: $0.blockTable, computedCount: $0.computedCount) }
        return blockManager.blocksNeeded(toAppend: 1, to: sequences) <= blockManager.numFreeBlocks
    }

    /// Moves the head of the waiting queue to running with blocks for its tokens, if the
    /// policy, the free blocks and (without chunking) the token budget allow.
    private mutating func admit(_ id: String, budget: Int) -> Bool {
        guard let entry = entries[id] else { return false }
        let tokens = entry.beams[0].tokens
        let recompute = entry.lifecycle.status == .preempted
        if !config.enableChunkedContext && !recompute && tokens.count - blockManager.cachedTokenCount(tokens) > budget {
            return false
        }
        var reserve = 0
        if config.policy == .guaranteedNoEvict {
            reserve = worstCaseBlocks(entry.request)
            guard reservedBlocks + reserve <= config.numBlocks else { return false }
        }
        guard blockManager.canAllocate(tokens) else { return false }
        switch entries[id]!.lifecycle.schedule() {
        case .allocateAndPrefill, .allocateAndRecompute: break
        default: return false
        }
        let allocation = blockManager.allocate(tokens)!
        entries[id]!.beams[0].blockTable = allocation.blockTable
        entries[id]!.beams[0].blockHashes = allocation.blockHashes
        entries[id]!.beams[0].computedCount = allocation.cachedTokenCount
        entries[id]!.reservedBlocks = reserve
        reservedBlocks += reserve
        waitingIDs.removeFirst()
        runningIDs.append(id)
        return true
    }

    /// Running → preempted: frees the blocks and puts the request at the front of the queue.
    private mutating func preempt(_ id: String) {
        guard var entry = entries.removeValue(forKey: id) else { return }
        defer { entries[id] = entry }
        guard case .freeBlocksAndRequeue = entry.lifecycle.preempt() else { return }
        for beam in entry.beams { blockManager.deallocate(beam.blockTable) }
        if entry.isBeamSearch {
            entry.beams = [Beam(tokens: entry.request.promptTokenIDs)]
            entry.hypotheses = []
        } else {
            entry.beams[0].blockTable = []
            entry.beams[0].blockHashes = []
            entry.beams[0].computedCount = 0
        }
        reservedBlocks -= entry.reservedBlocks
        entry.reservedBlocks = 0
        runningIDs.removeAll { $0 == id }
        waitingIDs.insert(id, at: 0)
        totals.preemptionsTotal += 1
    }

    /// Any state → finished: frees what the request holds and forgets it.
    mutating func finish(_ id: String, _ reason: FinishReason) {
        guard var entry = entries.removeValue(forKey: id) else { return }
        switch entry.lifecycle.finish(reason) {
        case .freeBlocksAndFinish:
            for beam in entry.beams { blockManager.deallocate(beam.blockTable) }
            reservedBlocks -= entry.reservedBlocks
            runningIDs.removeAll { $0 == id }
        case .finish:
            waitingIDs.removeAll { $0 == id }
        default:
            return
        }
        finishedSinceLastStep.append(id)
        totals.finishedTotal += 1
    }

    /// Inserts a new request after every preempted one and every one that sorts before it.
    private mutating func enqueue(_ id: String) {
        let key = entries[id]!.queueKey
        var i = waitingIDs.count
        while i > 0, let previous = entries[waitingIDs[i - 1]], previous.lifecycle.status != .preempted, key < previous.queueKey {
            i -= 1
        }
        waitingIDs.insert(id, at: i)
    }
}

// MARK: per-request state

/// One sequence of a request: the only one when sampling, one per beam in beam search.
struct Beam: Sendable {
    /// Prompt + generated tokens.
    var tokens: [Int32]
    var blockTable: [Int32] = []
    /// Chain hashes of the committed full blocks (prefix cache).
    var blockHashes: [UInt64] = []
    /// Tokens whose KV has been written.
    var computedCount = 0
    /// Per generated token, when the request returns them.
    var logProbs: [Float] = []
    var topLogProbs: [[TokenLogProb]] = []
    var cumulativeLogProb: Double = 0
}

/// A finished beam-search hypothesis (output tokens, stop excluded).
struct Hypothesis: Sendable {
    var tokens: [Int32]
    var logProbs: [Float]
    var cumulativeLogProb: Double
    /// cumulativeLogProb / length^lengthPenalty, length counting the stop.
    var score: Double
    var reason: FinishReason
}

struct Entry: Sendable {
    var request: Request
    /// Submission order, the last tie-breaker of the queue.
    let order: Int
    var lifecycle = RequestLifecycle()
    var beams: [Beam]
    /// Generated tokens already sent (sampling).
    var emittedCount = 0
    /// Beam search: the best finished hypotheses, best first, at most beamWidth.
    var hypotheses: [Hypothesis] = []
    /// guaranteedNoEvict: blocks reserved at admission.
    var reservedBlocks = 0

    init(request: Request, order: Int) {
        self.request = request
        self.order = order
        beams = [Beam(tokens: request.promptTokenIDs)]
    }

    var promptCount: Int { request.promptTokenIDs.count }
    var generatedCount: Int { beams[0].tokens.count - promptCount }
    var isBeamSearch: Bool { request.parameters.beamWidth > 1 }
    /// Every beam has only its last token left to feed.
    var isDecoding: Bool { beams.allSatisfy { $0.tokens.count - $0.computedCount == 1 } }

    var queueKey: QueueKey { QueueKey(priority: request.priority, arrival: request.arrivalTime, order: order) }

    struct QueueKey: Comparable {
        var priority: Int
        var arrival: Double
        var order: Int
        static func < (a: Self, b: Self) -> Bool { (a.priority, a.arrival, a.order) < (b.priority, b.arrival, b.order) }
    }

    /// The next chunk of beam 0's uncomputed tokens, at most `budget` long.
    func schedulePrefill(budget: Int) -> ScheduledSequence {
        let beam = beams[0]
        let count = min(beam.tokens.count - beam.computedCount, budget)
        return scheduled(beam: 0, tokenCount: count)
    }

    /// Feeds the `tokenCount` tokens after the computed ones; samples if they reach the end.
    func scheduled(beam b: Int, tokenCount: Int) -> ScheduledSequence {
        let beam = beams[b]
        let stop = request.stop
        var suppressed: Set<Int32> = []
        if generatedCount < stop.minTokens {
            suppressed = stop.stopTokenIDs
            if let end = stop.endID, !stop.ignoreEOS { suppressed.insert(end) }
        }
        return ScheduledSequence(
            requestID: request.id, beamIndex: b,
            tokens: Array(beam.tokens[beam.computedCount ..< beam.computedCount + tokenCount]),
            contextBefore: beam.computedCount, blockTable: beam.blockTable,
            needsSample: beam.computedCount + tokenCount == beam.tokens.count,
            parameters: request.parameters, history: beam.tokens, generatedCount: generatedCount,
            badWords: stop.badWords, suppressedTokenIDs: suppressed)
    }
}
