// Text generation for the OpenAI-compatible routes: prompts in, per-choice text deltas out,
// straight to the LLM model's engines with the tokenizer and settings that the model's
// ensemble steps (or BLS model) use, so greedy text equals the Triton routes' text.
import Engine
import Foundation
import Tokenization

/// How a text model reaches its LLM: the engines, and the tokenizers and settings its
/// preprocessing / postprocessing (or BLS model) apply.
struct TextRoute {
    let llm: LLMModel
    let encoder: Tokenizer
    let decoder: Tokenizer
    let addSpecialTokens: Bool
    let skipSpecialTokens: Bool
    let endID: Int32?
}

extension InferenceServer: TextGenerationService {

    // MARK: which models generate text

    /// Holds `name` (first lease) and the models it generates through. Throws 404 / 503 as
    /// infer does, and 404 for a model that does not turn text into text: an ensemble must
    /// have a preprocessing, an LLM and a postprocessing step; a BLS model names its LLM; an
    /// LLM model uses its checkpoint's tokenizer (special tokens added and skipped).
    func textRoute(_ name: String) throws -> (route: TextRoute, leases: [ModelLease]) {
        let lease = try self.lease(name, version: "")
        var leases = [lease]
        let notText = ServingError(.notFound, "model '\(name)' does not generate text (the OpenAI routes take an ensemble of "
                                   + "preprocessing, LLM and postprocessing steps, a BLS model or an LLM model)")
        do {
            switch lease.model {
            case let llm as LLMModel:
                let t = llm.tokenizer
                return (TextRoute(llm: llm, encoder: t, decoder: t, addSpecialTokens: true, skipSpecialTokens: true, endID: llm.defaultEndID), leases)
            case let bls as BLSModel:
                let inner = try self.lease(bls.llmName, version: "")
                leases.append(inner)
                guard let llm = inner.model as? LLMModel else { throw notText }
                let t = bls.tokenizer ?? llm.tokenizer
                return (TextRoute(llm: llm, encoder: t, decoder: t, addSpecialTokens: bls.addSpecialTokens,
                                  skipSpecialTokens: bls.skipSpecialTokens, endID: t.eosID ?? llm.defaultEndID), leases)
            case let ensemble as EnsembleModel:
                var llm: LLMModel?
                var pre: (tokenizer: Tokenizer, addSpecialTokens: Bool, endID: Int32)?
                var post: (tokenizer: Tokenizer, skipSpecialTokens: Bool)?
                for step in ensemble.steps {
                    let inner = try self.lease(step.model, version: step.version)
                    leases.append(inner)
                    if let m = inner.model as? LLMModel {
                        guard llm == nil else { throw notText }
                        llm = m
                    } else if let b = inner.model as? BatchedModel, let t = b.textTokenizer {
                        switch b.tokenizerRole {
                        case .preprocessing(let add, let end)?: pre = (t, add, end)
                        case .postprocessing(let skip)?: post = (t, skip)
                        case nil: break
                        }
                    }
                }
                guard let llm, let pre, let post else { throw notText }
                return (TextRoute(llm: llm, encoder: pre.tokenizer, decoder: post.tokenizer, addSpecialTokens: pre.addSpecialTokens,
                                  skipSpecialTokens: post.skipSpecialTokens, endID: pre.endID), leases)
            default:
                throw notText
            }
        } catch {
            for l in leases { l.release() }
            throw error
        }
    }

    public func textModels() -> [TextModel] {
        let names = registry.withLock { $0.records.keys.sorted() }
        return names.compactMap { name -> TextModel? in
            guard let (route, leases) = try? textRoute(name) else { return nil }
            defer { for l in leases { l.release() } }
            let created = registry.withLock { r in (try? readySlot(r, name, ""))?.loadedAt } ?? 0
            return TextModel(name: name, created: created, contextLength: route.llm.contextLength)
        }
    }

    // MARK: generating

    public func generateText(_ request: TextGenerationRequest) throws -> TextGeneration {
        do {
            return try startGeneration(request)
        } catch {
            throw Self.publicError(error)
        }
    }

    static let maxTextChoices = 1024
    static let maxTopLogProbs = 20

    private static func validate(_ r: TextGenerationRequest) throws {
        func bad(_ message: String) -> ServingError { ServingError(.badRequest, message) }
        guard !r.prompts.isEmpty else { throw bad("at least one prompt is required") }
        guard r.choicesPerPrompt >= 1 else { throw bad("n must be >= 1, got \(r.choicesPerPrompt)") }
        guard r.prompts.count * r.choicesPerPrompt <= maxTextChoices else {
            throw bad("\(r.prompts.count * r.choicesPerPrompt) choices requested; at most \(maxTextChoices) per request")
        }
        if let m = r.maxTokens, m < 1 { throw bad("max_tokens must be >= 1, got \(m)") }
        guard r.temperature.isFinite && r.temperature >= 0 else { throw bad("temperature must be a finite number >= 0, got \(r.temperature)") }
        guard r.topP >= 0 && r.topP <= 1 else { throw bad("top_p must be in [0, 1], got \(r.topP)") }
        guard r.presencePenalty.isFinite else { throw bad("presence_penalty must be finite") }
        guard r.frequencyPenalty.isFinite else { throw bad("frequency_penalty must be finite") }
        guard r.topK >= 0 else { throw bad("top_k must be >= 0 (0: every token), got \(r.topK)") }
        guard r.minP >= 0 && r.minP <= 1 else { throw bad("min_p must be in [0, 1], got \(r.minP)") }
        guard r.repetitionPenalty.isFinite && r.repetitionPenalty > 0 else {
            throw bad("repetition_penalty must be a finite number > 0, got \(r.repetitionPenalty)")
        }
        guard r.minTokens >= 0 else { throw bad("min_tokens must be >= 0, got \(r.minTokens)") }
        if let m = r.maxTokens, r.minTokens > m { throw bad("min_tokens (\(r.minTokens)) must not exceed max_tokens (\(m))") }
        guard r.topLogProbs >= 0 && r.topLogProbs <= maxTopLogProbs else {
            throw bad("top_logprobs must be in [0, \(maxTopLogProbs)], got \(r.topLogProbs)")
        }
    }

    private func startGeneration(_ request: TextGenerationRequest) throws -> TextGeneration {
        try Self.validate(request)
        let (route, leases) = try textRoute(request.model)
        var handles: [GenerationHandle] = []
        let promptIDs: [[Int32]], promptTexts: [String]
        do {
            (promptIDs, promptTexts) = try Self.encode(request.prompts, route)
            let context = route.llm.contextLength
            var p = SamplingParameters()
            if request.temperature > 0 && request.topP > 0 {
                p.temperature = Float(request.temperature)
                p.topP = Float(request.topP)
                p.topK = request.topK
                p.minP = Float(request.minP)
            }
            p.repetitionPenalty = Float(request.repetitionPenalty)
            p.presencePenalty = Float(request.presencePenalty)
            p.frequencyPenalty = Float(request.frequencyPenalty)
            p.returnLogProbs = request.logProbs
            p.topLogProbs = request.logProbs ? request.topLogProbs : 0
            for (i, ids) in promptIDs.enumerated() {
                let label = promptIDs.count > 1 ? "prompt \(i)" : "the prompt"
                guard ids.count < context else {
                    throw ServingError(.badRequest, "\(label) has \(ids.count) tokens; this model's maximum context length is \(context) tokens")
                }
                if let m = request.maxTokens, ids.count + m > context {
                    var prompt = promptIDs.count > 1 ? "prompt \(i)" : "prompt"
                    if case .chat = request.prompts[i] { prompt = "messages" }
                    throw ServingError(.badRequest, LLMModel.contextExceeded(limit: context, promptTokens: ids.count, maxTokens: m, prompt: prompt))
                }
                var stop = StopConditions(maxTokens: request.maxTokens ?? context - ids.count, minTokens: request.minTokens,
                                          endID: route.endID)
                stop.ignoreEOS = request.ignoreEOS
                if case .chat = request.prompts[i] { stop.stopTokenIDs = route.encoder.stopIDs }
                for _ in 0..<request.choicesPerPrompt {
                    var parameters = p
                    parameters.seed = request.seed.map { $0 &+ UInt64(handles.count) }
                    let g = Generation(prompt: ids, parameters: parameters, stop: stop)
                    handles.append(try route.llm.generate(g, clientID: "", timeoutMicroseconds: nil))
                }
            }
        } catch {
            for h in handles { h.cancel() }
            for l in leases { l.release() }
            throw error
        }
        let submitted = handles
        let stops = request.stop.filter { !$0.isEmpty }.map { Array($0.utf8) }
        let spelling = request.logProbs ? TokenSpelling(tokenizer: route.decoder) : nil
        let decoder = route.decoder, skip = route.skipSpecialTokens
        let recorder = leases[0].recorder
        recorder.requestStarted()
        let arrival = StatisticsRecorder.now()
        let first = Locked(true)
        /// One choice, read in place: its deltas go to `send` in order.
        @Sendable func choice(_ i: Int, _ send: @escaping @Sendable (TextDelta) async throws -> Void) async throws {
            let handle = submitted[i]
            var choice = ChoiceDecoder(choice: i, detokenizer: decoder.makeDetokenizer(skipSpecialTokens: skip), stops: stops, spelling: spelling)
            try await handle.forEach { out in
                guard !choice.finished else { return }
                switch out.finishReason {
                case .cancelled?: throw ServingError(.unavailable, "the request was cancelled")
                case .error(let m)?: throw ServingError(.internalError, m)
                default: break
                }
                let delta = choice.take(out)
                if first.withLock({ was in defer { was = false }; return was }) { recorder.firstResponse(arrival: arrival) }
                try await send(delta)
                // A stop string ends the engine request; its outputs then end with it.
                if choice.finished && out.finishReason == nil { handle.stop() }
            }
            guard choice.finished else { throw ServingError(.unavailable, "the request was cancelled") }
        }
        let run: @Sendable (@escaping @Sendable (TextDelta) async throws -> Void) async throws -> Void = { send in
            defer { for l in leases { l.release() } }
            // Recorded before the caller hears the end, so a client that reads the statistics
            // after its response sees its own request counted.
            func record(_ success: Bool) {
                recorder.execution(requestCount: 1, inferences: submitted.count, inputNs: 0,
                                   inferNs: StatisticsRecorder.now() - arrival, outputNs: 0)
                recorder.requestFinished(success: success, arrival: arrival)
            }
            do {
                if submitted.count == 1 {
                    try await choice(0, send)
                } else {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for i in submitted.indices { group.addTask { try await choice(i, send) } }
                        try await group.waitForAll()
                    }
                }
            } catch {
                for h in submitted { h.cancel() }
                record(false)
                throw Self.publicError(error)
            }
            record(true)
        }
        let abandon: @Sendable () -> Void = {
            for h in submitted { h.cancel() }
            recorder.requestFinished(success: false, arrival: arrival)
            for l in leases { l.release() }
        }
        return TextGeneration(model: request.model, promptTokenCounts: promptIDs.map(\.count), promptTexts: promptTexts,
                              run: run, abandon: abandon)
    }

    /// Each prompt's token ids and text.
    private static func encode(_ prompts: [TextGenerationRequest.Prompt], _ route: TextRoute) throws -> ([[Int32]], [String]) {
        var ids: [[Int32]] = [], texts: [String] = []
        for (i, prompt) in prompts.enumerated() {
            switch prompt {
            case .text(let s):
                ids.append(route.encoder.encode(s, addSpecialTokens: route.addSpecialTokens))
                texts.append(s)
            case .tokenIDs(let t):
                let vocabulary = route.llm.vocabularySize
                if let bad = t.first(where: { $0 < 0 || Int($0) >= vocabulary }) {
                    throw ServingError(.badRequest, "prompt \(i) holds token id \(bad), outside the model's vocabulary of \(vocabulary)")
                }
                ids.append(t)
                texts.append(route.decoder.decode(t, skipSpecialTokens: route.skipSpecialTokens))
            case .chat(let turns):
                guard !turns.isEmpty else { throw ServingError(.badRequest, "messages must not be empty") }
                let text: String
                do {
                    text = try route.encoder.applyChatTemplate(turns.map { ChatMessage(role: $0.role, content: $0.content) },
                                                               addGenerationPrompt: true).text
                } catch {
                    throw ServingError(.badRequest, "chat template: \(error)")
                }
                ids.append(route.encoder.encode(text, addSpecialTokens: false))
                texts.append(text)
            }
            guard !ids[i].isEmpty else { throw ServingError(.badRequest, "prompt \(i) encodes to no tokens") }
        }
        return (ids, texts)
    }
}

// MARK: one choice

/// One choice's text as its tokens arrive: decoded incrementally, stop strings matched on the
/// text (a tail that may still begin one is held back until decided), and, with log probs,
/// each token spelled out. Feed it the engine's outputs in order until `finished`.
struct ChoiceDecoder {
    let choice: Int
    var detokenizer: IncrementalDetokenizer
    /// Stop strings as UTF-8 (none empty).
    let stops: [[UInt8]]
    /// nil: no log probs.
    let spelling: TokenSpelling?
    /// Decoded text not yet sent: whole characters only.
    private var held: [UInt8] = []
    /// Unicode scalars decoded so far (text offsets of the tokens).
    private var scalarCount = 0
    private(set) var finished = false

    init(choice: Int, detokenizer: IncrementalDetokenizer, stops: [[UInt8]], spelling: TokenSpelling?) {
        self.choice = choice
        self.detokenizer = detokenizer
        self.stops = stops
        self.spelling = spelling
    }

    /// The delta for one engine output: the tokens up to a stop string (if one completes),
    /// the text that is certain, and the finish reason once finished ("stop" for a stop string,
    /// else the engine's "stop" / "length").
    mutating func take(_ out: RequestOutput) -> TextDelta {
        var delta = TextDelta(choice: choice, text: "", tokenCount: 0)
        guard !finished else { return delta }
        var sent: [UInt8] = []
        for (j, id) in out.newTokenIDs.enumerated() {
            delta.tokenCount += 1
            if let spelling {
                let top = j < out.topLogProbs.count
                    ? out.topLogProbs[j].map { TokenAlternative(token: spelling.text(of: $0.token), logProb: Double($0.logProb)) } : []
                delta.tokens.append(GeneratedToken(id: id, token: spelling.text(of: id), logProb: j < out.logProbs.count ? Double(out.logProbs[j]) : 0,
                                                   textOffset: scalarCount, top: top))
            }
            append(detokenizer.append(id))
            if let cut = Self.firstMatch(of: stops, in: held) {
                sent += held[..<cut]
                held = []
                finished = true
                delta.finishReason = "stop"
                break
            }
        }
        if !finished, let reason = out.finishReason {
            append(detokenizer.finish())
            if let cut = Self.firstMatch(of: stops, in: held) { held.removeSubrange(cut...) }
            sent += held
            held = []
            finished = true
            delta.finishReason = reason == .length ? "length" : "stop"
        } else if !finished {
            let keep = Self.pendingStopPrefix(of: stops, in: held)
            sent += held[..<(held.count - keep)]
            held.removeFirst(held.count - keep)
        }
        delta.text = String(decoding: sent, as: UTF8.self)
        return delta
    }

    private mutating func append(_ piece: String) {
        guard !piece.isEmpty else { return }
        scalarCount += piece.unicodeScalars.count
        held += piece.utf8
    }

    /// Where the earliest occurrence of any stop begins in `text`.
    static func firstMatch(of stops: [[UInt8]], in text: [UInt8]) -> Int? {
        var best: Int?
        for s in stops where s.count <= text.count {
            var i = 0
            while i + s.count <= text.count && i < (best ?? Int.max) {
                if text[i] == s[0] && text[i..<(i + s.count)].elementsEqual(s) { best = i; break }
                i += 1
            }
        }
        return best
    }

    /// The length of the longest tail of `text` that is a proper prefix of a stop.
    static func pendingStopPrefix(of stops: [[UInt8]], in text: [UInt8]) -> Int {
        longestPendingStopPrefix(of: stops, in: text[...])
    }
}

// MARK: token spelling

/// A token's own bytes, out of context, from its vocabulary spelling: byte-level BPE pieces
/// mapped back through GPT-2's byte-to-character table, SentencePiece pieces with "▁" as a
/// space and `<0xNN>` as byte NN. Special tokens are their text.
struct TokenSpelling: Sendable {
    let tokenizer: Tokenizer

    func bytes(of id: Int32) -> [UInt8] {
        guard let piece = tokenizer.tokenString(id) else { return [] }
        switch tokenizer.kind {
        case .byteLevelBPE:
            guard tokenizer.tokenType(id) == .normal else { return Array(piece.utf8) }
            var out: [UInt8] = []
            out.reserveCapacity(piece.unicodeScalars.count)
            for s in piece.unicodeScalars {
                guard let b = Self.byteOfCharacter[s.value] else { return Array(piece.utf8) }
                out.append(b)
            }
            return out
        case .sentencePieceBPE:
            if let b = Self.byteToken(piece) { return [b] }
            return Array(piece.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
        }
    }

    func text(of id: Int32) -> TokenText {
        let b = bytes(of: id)
        return TokenText(text: String(decoding: b, as: UTF8.self), bytes: b)
    }

    /// GPT-2's table read backwards: printable bytes stand for themselves, the other 68 bytes
    /// were given the characters from U+0100 up, in byte order.
    static let byteOfCharacter: [UInt32: UInt8] = {
        var table: [UInt32: UInt8] = [:]
        var next: UInt32 = 256
        for b in 0...255 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                table[UInt32(b)] = UInt8(b)
            } else {
                table[next] = UInt8(b)
                next += 1
            }
        }
        return table
    }()

    /// The byte of a `<0xNN>` piece.
    static func byteToken(_ piece: String) -> UInt8? {
        let u = Array(piece.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"), u[5] == UInt8(ascii: ">") else {
            return nil
        }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }
}
