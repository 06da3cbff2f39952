// What a request asks of the sampler and when it must stop. Errors name the field the way
// Triton's TensorRT-LLM ensemble names its inputs (temperature, top_k, max_tokens, ...).

/// How the next token is chosen. Every default means "off": greedy, no penalties, one beam,
/// no log probabilities.
public struct SamplingParameters: Equatable, Sendable {
    /// 0 means greedy (argmax).
    public var temperature: Float
    /// 0 means no top-k limit.
    public var topK: Int
    /// 1 means no nucleus limit.
    public var topP: Float
    /// 0 means off; else drop tokens below minP × the top token's probability.
    public var minP: Float
    /// nil: the runner draws one.
    public var seed: UInt64?
    /// 1 means off (TRT-LLM / HF: logits of seen tokens divided or multiplied by it).
    public var repetitionPenalty: Float
    /// 0 means off (OpenAI: subtracted once from the logit of every seen token).
    public var presencePenalty: Float
    /// 0 means off (OpenAI: subtracted per occurrence of a seen token).
    public var frequencyPenalty: Float
    /// 1 means sampling; above 1, beam search with this many beams.
    public var beamWidth: Int
    /// Beam search: a hypothesis scores cumLogProb / length^lengthPenalty.
    public var lengthPenalty: Float
    /// Beam search: true stops once beamWidth hypotheses have finished; false also waits
    /// while a running beam could still beat the worst of them (HF's heuristic).
    public var earlyStopping: Bool
    /// Return the log probability of every output token.
    public var returnLogProbs: Bool
    /// Return this many most likely alternatives at every output token (0: none).
    public var topLogProbs: Int

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, seed: UInt64? = nil,
                repetitionPenalty: Float = 1, presencePenalty: Float = 0, frequencyPenalty: Float = 0,
                beamWidth: Int = 1, lengthPenalty: Float = 1, earlyStopping: Bool = true,
                returnLogProbs: Bool = false, topLogProbs: Int = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.seed = seed
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.beamWidth = beamWidth
        self.lengthPenalty = lengthPenalty
        self.earlyStopping = earlyStopping
        self.returnLogProbs = returnLogProbs
        self.topLogProbs = topLogProbs
    }

    public static let greedy = SamplingParameters()

    /// Throws `EngineError.invalidParameter` naming the first bad field.
    public func validate() throws {
        func bad(_ field: String, _ message: String) -> EngineError { .invalidParameter(field: field, message: message) }
        guard temperature.isFinite && temperature >= 0 else { throw bad("temperature", "must be a finite number >= 0, got \(temperature)") }
        guard topK >= 0 else { throw bad("top_k", "must be >= 0, got \(topK)") }
        guard topP > 0 && topP <= 1 else { throw bad("top_p", "must be in (0, 1], got \(topP)") }
        guard minP >= 0 && minP <= 1 else { throw bad("min_p", "must be in [0, 1], got \(minP)") }
        guard repetitionPenalty.isFinite && repetitionPenalty > 0 else { throw bad("repetition_penalty", "must be a finite number > 0, got \(repetitionPenalty)") }
        guard presencePenalty.isFinite else { throw bad("presence_penalty", "must be finite, got \(presencePenalty)") }
        guard frequencyPenalty.isFinite else { throw bad("frequency_penalty", "must be finite, got \(frequencyPenalty)") }
        guard beamWidth >= 1 else { throw bad("beam_width", "must be >= 1, got \(beamWidth)") }
        guard lengthPenalty.isFinite else { throw bad("length_penalty", "must be finite, got \(lengthPenalty)") }
        guard topLogProbs >= 0 else { throw bad("top_logprobs", "must be >= 0, got \(topLogProbs)") }
    }
}

/// When a request's generation ends. Stops (end id, stop ids, stop sequences) are honoured only
/// once `minTokens` tokens precede them; the tokens of a stop never appear in the output.
public struct StopConditions: Equatable, Sendable {
    /// Generated tokens at most, stops included (finish reason `.length`).
    public var maxTokens: Int
    /// Output tokens before any stop may end the request. The runner also masks endID and
    /// stopTokenIDs until then (`ScheduledSequence.suppressedTokenIDs`).
    public var minTokens: Int
    /// TRT-LLM end_id: generating it ends the request, unless `ignoreEOS`.
    public var endID: Int32?
    /// TRT-LLM pad_id: passed through for the frontends' padded outputs.
    public var padID: Int32?
    /// Single tokens that end the request (also with `ignoreEOS`).
    public var stopTokenIDs: Set<Int32>
    /// Token sequences that end the request when the generated tokens end with one, across
    /// token boundaries. Tokens that may begin one are held back until it is decided.
    public var stopSequences: [[Int32]]
    /// Token sequences the sampler must never complete; passed through untouched.
    public var badWords: [[Int32]]
    /// Generate past endID (until maxTokens or another stop).
    public var ignoreEOS: Bool

    public init(maxTokens: Int = 16, minTokens: Int = 0, endID: Int32? = nil, padID: Int32? = nil,
                stopTokenIDs: Set<Int32> = [], stopSequences: [[Int32]] = [], badWords: [[Int32]] = [],
                ignoreEOS: Bool = false) {
        self.maxTokens = maxTokens
        self.minTokens = minTokens
        self.endID = endID
        self.padID = padID
        self.stopTokenIDs = stopTokenIDs
        self.stopSequences = stopSequences
        self.badWords = badWords
        self.ignoreEOS = ignoreEOS
    }

    /// Throws `EngineError.invalidParameter` naming the first bad field.
    public func validate() throws {
        func bad(_ field: String, _ message: String) -> EngineError { .invalidParameter(field: field, message: message) }
        guard maxTokens >= 1 else { throw bad("max_tokens", "must be >= 1, got \(maxTokens)") }
        guard minTokens >= 0 && minTokens <= maxTokens else { throw bad("min_tokens", "must be in [0, max_tokens], got \(minTokens)") }
        guard !stopSequences.contains(where: \.isEmpty) else { throw bad("stop_words", "must not contain an empty sequence") }
        guard !badWords.contains(where: \.isEmpty) else { throw bad("bad_words", "must not contain an empty sequence") }
    }

    /// Whether `token` ends generation by itself (end id unless ignoreEOS, or a stop id).
    func isStopToken(_ token: Int32) -> Bool {
        (!ignoreEOS && token == endID) || stopTokenIDs.contains(token)
    }

    /// The length of the stop sequence that `generated` ends with, if any (longest wins).
    func matchedStopSequence(_ generated: ArraySlice<Int32>) -> Int? {
        var best: Int?
        for s in stopSequences where s.count <= generated.count && generated.suffix(s.count).elementsEqual(s) {
            best = max(best ?? 0, s.count)
        }
        return best
    }

    /// The length of the longest suffix of `generated` that is a proper prefix of a stop
    /// sequence: those tokens must be held back, since they may yet become a stop.
    func pendingStopPrefix(_ generated: ArraySlice<Int32>) -> Int {
        longestPendingStopPrefix(of: stopSequences, in: generated)
    }
}

/// Errors the engine reports to callers. Messages are meant for an HTTP 400 / gRPC status.
public enum EngineError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A request field is out of range; `field` is the Triton / TRT-LLM input name.
    case invalidParameter(field: String, message: String)
    /// A request can never run under this engine's limits (too long, too many beams, ...).
    case requestTooLarge(String)
    /// A request with this id is already in flight.
    case duplicateRequestID(String)
    /// The request failed while running (its stream's last output has finishReason .error).
    case requestFailed(id: String, message: String)
    /// The engine has shut down.
    case shutDown

    public var description: String {
        switch self {
        case let .invalidParameter(field, message): "\(field) \(message)"
        case let .requestTooLarge(message): message
        case let .duplicateRequestID(id): "request id '\(id)' is already in use"
        case let .requestFailed(id, message): "request '\(id)' failed: \(message)"
        case .shutDown: "the engine has shut down"
        }
    }
}

/// The length of the longest tail of `text` that is a proper prefix of one of `stops`: what a
/// streamer must hold back, since it may yet become a stop (stop token sequences here, stop
/// strings' bytes in the OpenAI layer).
public func longestPendingStopPrefix<E: Equatable>(of stops: [[E]], in text: ArraySlice<E>) -> Int {
    var best = 0
    for s in stops {
        var n = min(s.count - 1, text.count)
        while n > best {
            if text.suffix(n).elementsEqual(s.prefix(n)) { best = n; break }
            n -= 1
        }
    }
    return best
}
