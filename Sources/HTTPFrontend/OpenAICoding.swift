// OpenAICoding: the OpenAI-compatible API's JSON. Requests of /v1/completions and
// /v1/chat/completions become a Serving `TextGenerationRequest` (ranges checked here, with
// OpenAI's parameter names in the errors); deltas become OpenAI's response and chunk objects;
// errors are {"error": {"message", "type", "param", "code"}}.
import JSONCore
import Serving

/// An error as OpenAI reports it.
struct OpenAIError: Error, Equatable, CustomStringConvertible {
    var status: Int
    var message: String
    var type: String
    var param: String?
    var code: String?

    init(status: Int = 400, _ message: String, type: String? = nil, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type ?? (status >= 500 ? "server_error" : "invalid_request_error")
        self.param = param
        self.code = code
    }

    init(_ e: ServingError) {
        self.init(status: e.status.rawValue, e.message, code: e.status == .notFound ? "model_not_found" : nil)
    }

    var description: String { message }

    var json: [UInt8] {
        JSONWriter.encode(.object(JSONObject([("error", .object(JSONObject([
            ("message", .string(message)), ("type", .string(type)),
            ("param", param.map(JSON.string) ?? .null), ("code", code.map(JSON.string) ?? .null),
        ])))])))
    }
}

/// A request of either endpoint, as Petrel runs it.
struct OpenAIRequest: Equatable {
    enum Endpoint: Equatable { case completions, chat }
    var endpoint: Endpoint
    var generation: TextGenerationRequest
    var stream = false
    var includeUsage = false
    /// Completions: the prompt's text comes before the completion.
    var echo = false
    /// Completions' `logprobs`: the legacy object with this many alternatives per token; chat's
    /// `logprobs: true`: content entries with `top_logprobs` alternatives.
    var logProbs: Int?

    var choiceCount: Int { generation.prompts.count * generation.choicesPerPrompt }
}

enum OpenAICoding {
    // MARK: decoding

    /// OpenAI's limits: n up to 128, temperature 0...2, penalties -2...2.
    static let maxChoices = 128
    static let maxTopLogProbs = 20

    static func decodeCompletions(_ json: JSON) throws -> OpenAIRequest {
        let o = try root(json)
        var prompts: [TextGenerationRequest.Prompt]
        switch o["prompt"] {
        case .string(let s)?: prompts = [.text(s)]
        case .array(let items)? where !items.isEmpty:
            if items.allSatisfy({ if case .string = $0 { return true }; return false }) {
                prompts = items.map { if case .string(let s) = $0 { return .text(s) }; return .text("") }
            } else if let ids = tokenIDs(items) {
                prompts = [.tokenIDs(ids)]
            } else {
                prompts = try items.map { item in
                    guard case .array(let row) = item, !row.isEmpty, let ids = tokenIDs(row) else {
                        throw OpenAIError("'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays", param: "prompt")
                    }
                    return .tokenIDs(ids)
                }
            }
        case nil, .null?: throw OpenAIError("'prompt' is required", param: "prompt")
        default: throw OpenAIError("'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays", param: "prompt")
        }
        var r = try common(o, prompts: prompts, endpoint: .completions)
        r.generation.maxTokens = try positiveInt(o, "max_tokens") ?? 16
        r.echo = try bool(o, "echo") ?? false
        if let n = try int(o, "logprobs") {
            guard (0...maxTopLogProbs).contains(n) else { throw OpenAIError("'logprobs' must be between 0 and \(maxTopLogProbs), got \(n)", param: "logprobs") }
            r.logProbs = n
            r.generation.logProbs = true
            r.generation.topLogProbs = n
        }
        if r.echo && r.logProbs != nil {
            throw OpenAIError("'echo' with 'logprobs' is not supported (the prompt's log probabilities are not computed)", param: "echo")
        }
        if let best = try int(o, "best_of"), best != r.generation.choicesPerPrompt {
            throw OpenAIError("'best_of' other than 'n' is not supported", param: "best_of")
        }
        if case .string(let s)? = o["suffix"], !s.isEmpty { throw OpenAIError("'suffix' is not supported", param: "suffix") }
        return r
    }

    static func decodeChat(_ json: JSON) throws -> OpenAIRequest {
        let o = try root(json)
        guard case .array(let items)? = o["messages"], !items.isEmpty else {
            throw OpenAIError("'messages' must be a non-empty array of messages", param: "messages")
        }
        let turns = try items.enumerated().map { i, item -> ChatTurn in
            guard case .object(let m) = item, case .string(var role)? = m["role"] else {
                throw OpenAIError("messages[\(i)] must be an object with a string 'role'", param: "messages")
            }
            if role == "developer" { role = "system" }
            switch m["content"] {
            case .string(let s)?: return ChatTurn(role: role, content: s)
            case nil, .null?: return ChatTurn(role: role, content: "")
            case .array(let parts)?:
                let texts = try parts.map { part -> String in
                    guard case .object(let p) = part, case .string("text")? = p["type"], case .string(let t)? = p["text"] else {
                        throw OpenAIError("messages[\(i)].content: only text parts ({\"type\": \"text\", \"text\": ...}) are supported", param: "messages")
                    }
                    return t
                }
                return ChatTurn(role: role, content: texts.joined(separator: "\n"))
            default:
                throw OpenAIError("messages[\(i)].content must be a string or an array of text parts", param: "messages")
            }
        }
        var r = try common(o, prompts: [.chat(turns)], endpoint: .chat)
        r.generation.maxTokens = try positiveInt(o, "max_completion_tokens") ?? positiveInt(o, "max_tokens")
        let logprobs = try bool(o, "logprobs") ?? false
        if let n = try int(o, "top_logprobs") {
            guard (0...maxTopLogProbs).contains(n) else {
                throw OpenAIError("'top_logprobs' must be between 0 and \(maxTopLogProbs), got \(n)", param: "top_logprobs")
            }
            guard logprobs else { throw OpenAIError("'top_logprobs' needs 'logprobs' set to true", param: "top_logprobs") }
            r.generation.topLogProbs = n
        }
        if logprobs {
            r.generation.logProbs = true
            r.logProbs = r.generation.topLogProbs
        }
        for key in ["tools", "functions"] {
            if case .array(let a)? = o[key], !a.isEmpty { throw OpenAIError("'\(key)' (tool calling) is not supported", param: key) }
        }
        if let format = o["response_format"], format != .null {
            guard case .string("text")? = format["type"] else {
                throw OpenAIError("'response_format' other than {\"type\": \"text\"} is not supported", param: "response_format")
            }
        }
        return r
    }

    /// What both endpoints share.
    private static func common(_ o: JSONObject, prompts: [TextGenerationRequest.Prompt], endpoint: OpenAIRequest.Endpoint) throws -> OpenAIRequest {
        guard case .string(let model)? = o["model"], !model.isEmpty else { throw OpenAIError("'model' is required (a string)", param: "model") }
        var g = TextGenerationRequest(model: model, prompts: prompts)
        if let n = try int(o, "n") {
            guard (1...maxChoices).contains(n) else { throw OpenAIError("'n' must be between 1 and \(maxChoices), got \(n)", param: "n") }
            g.choicesPerPrompt = n
        }
        g.temperature = try number(o, "temperature", in: 0...2) ?? 1
        g.topP = try number(o, "top_p", in: 0...1) ?? 1
        g.presencePenalty = try number(o, "presence_penalty", in: -2...2) ?? 0
        g.frequencyPenalty = try number(o, "frequency_penalty", in: -2...2) ?? 0
        // vLLM's extensions (what benchmark clients and vLLM users send): top_k (-1 or 0: off),
        // min_p, repetition_penalty, min_tokens, ignore_eos.
        if let k = try int(o, "top_k") {
            guard k >= -1 else { throw OpenAIError("'top_k' must be -1 (off) or a positive integer, got \(k)", param: "top_k") }
            g.topK = max(k, 0)
        }
        g.minP = try number(o, "min_p", in: 0...1) ?? 0
        if let r = try number(o, "repetition_penalty", in: 0...Double.greatestFiniteMagnitude) {
            guard r > 0 else { throw OpenAIError("'repetition_penalty' must be > 0", param: "repetition_penalty") }
            g.repetitionPenalty = r
        }
        if let m = try int(o, "min_tokens") {
            guard m >= 0 else { throw OpenAIError("'min_tokens' must be >= 0, got \(m)", param: "min_tokens") }
            g.minTokens = m
        }
        g.ignoreEOS = try bool(o, "ignore_eos") ?? false
        if let seed = o["seed"], seed != .null {
            switch seed {
            case .int(let v): g.seed = UInt64(bitPattern: v)
            case .uint(let v): g.seed = v
            default: throw OpenAIError("'seed' must be an integer", param: "seed")
            }
        }
        switch o["stop"] {
        case nil, .null?: break
        case .string(let s)?: g.stop = [s]
        case .array(let items)?:
            g.stop = try items.map { item in
                guard case .string(let s) = item else { throw OpenAIError("'stop' must be a string or an array of strings", param: "stop") }
                return s
            }
        default: throw OpenAIError("'stop' must be a string or an array of strings", param: "stop")
        }
        if case .object(let bias)? = o["logit_bias"], !bias.members.isEmpty {
            throw OpenAIError("'logit_bias' is not supported", param: "logit_bias")
        }
        var r = OpenAIRequest(endpoint: endpoint, generation: g)
        r.stream = try bool(o, "stream") ?? false
        if let options = o["stream_options"], options != .null {
            guard r.stream else { throw OpenAIError("'stream_options' is only allowed when 'stream' is true", param: "stream_options") }
            guard case .object(let so) = options else { throw OpenAIError("'stream_options' must be an object", param: "stream_options") }
            r.includeUsage = try bool(so, "include_usage", param: "stream_options.include_usage") ?? false
        }
        return r
    }

    private static func root(_ json: JSON) throws -> JSONObject {
        guard case .object(let o) = json else { throw OpenAIError("the request body must be a JSON object") }
        return o
    }

    /// Token ids, when every item is an integer.
    private static func tokenIDs(_ items: [JSON]) -> [Int32]? {
        var ids: [Int32] = []
        for item in items {
            guard case .int(let v) = item, let id = Int32(exactly: v) else { return nil }
            ids.append(id)
        }
        return ids
    }

    private static func number(_ o: JSONObject, _ key: String, in range: ClosedRange<Double>) throws -> Double? {
        let v: Double
        switch o[key] {
        case nil, .null?: return nil
        case .int(let i)?: v = Double(i)
        case .uint(let u)?: v = Double(u)
        case .double(let d)?: v = d
        case let other?: throw OpenAIError("'\(key)' must be a number, got \(other.typeName)", param: key)
        }
        guard range.contains(v) else {
            throw OpenAIError("'\(key)' must be between \(range.lowerBound.formatted) and \(range.upperBound.formatted), got \(v.formatted)", param: key)
        }
        return v
    }

    private static func int(_ o: JSONObject, _ key: String) throws -> Int? {
        switch o[key] {
        case nil, .null?: return nil
        case .int(let i)?: return Int(i)
        case .double(let d)? where d == d.rounded() && abs(d) < 1e15: return Int(d)
        case let other?: throw OpenAIError("'\(key)' must be an integer, got \(other.typeName)", param: key)
        }
    }

    private static func positiveInt(_ o: JSONObject, _ key: String) throws -> Int? {
        guard let n = try int(o, key) else { return nil }
        guard n >= 1 else { throw OpenAIError("'\(key)' must be at least 1, got \(n)", param: key) }
        return n
    }

    private static func bool(_ o: JSONObject, _ key: String, param: String? = nil) throws -> Bool? {
        switch o[key] {
        case nil, .null?: return nil
        case .bool(let b)?: return b
        case let other?: throw OpenAIError("'\(param ?? key)' must be a boolean, got \(other.typeName)", param: param ?? key)
        }
    }

    // MARK: encoding

    /// What one choice came to (non-streaming responses).
    struct Choice {
        var text = ""
        var tokens: [GeneratedToken] = []
        var tokenCount = 0
        var finishReason: String?
    }

    static func usage(_ promptTokens: Int, _ completionTokens: Int) -> JSON {
        .object(JSONObject([("prompt_tokens", .int(Int64(promptTokens))), ("completion_tokens", .int(Int64(completionTokens))),
                            ("total_tokens", .int(Int64(promptTokens + completionTokens)))]))
    }

    /// A log probability as JSON can hold it (an impossible token's -inf is written -9999).
    static func logProb(_ v: Double) -> JSON { .double(v.isFinite ? v : -9999) }

    /// Completions' legacy object: tokens, token_logprobs, top_logprobs (the top `count`
    /// alternatives and the chosen token, by text), text_offset (from `offset`).
    static func legacyLogProbs(_ tokens: [GeneratedToken], count: Int, offset: Int) -> JSON {
        let top: [JSON] = tokens.map { t in
            var entries = JSONObject()
            var seen = Set<String>()
            for a in t.top.prefix(count) + [TokenAlternative(token: t.token, logProb: t.logProb)] where seen.insert(a.token.text).inserted {
                entries.members.append((a.token.text, logProb(a.logProb)))
            }
            return .object(entries)
        }
        return .object(JSONObject([
            ("tokens", .array(tokens.map { .string($0.token.text) })),
            ("token_logprobs", .array(tokens.map { logProb($0.logProb) })),
            ("top_logprobs", .array(top)),
            ("text_offset", .array(tokens.map { .int(Int64($0.textOffset + offset)) })),
        ]))
    }

    /// Chat's object: {"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}.
    static func chatLogProbs(_ tokens: [GeneratedToken], count: Int) -> JSON {
        func entry(_ t: TokenText, _ lp: Double) -> [(key: String, value: JSON)] {
            [("token", .string(t.text)), ("logprob", logProb(lp)), ("bytes", .array(t.bytes.map { .int(Int64($0)) }))]
        }
        let content: [JSON] = tokens.map { t in
            .object(JSONObject(entry(t.token, t.logProb) + [("top_logprobs", .array(t.top.prefix(count).map { .object(JSONObject(entry($0.token, $0.logProb))) }))]))
        }
        return .object(JSONObject([("content", .array(content)), ("refusal", .null)]))
    }

    /// The whole (non-streaming) response of either endpoint.
    static func response(_ r: OpenAIRequest, id: String, created: Int64, generation g: TextGeneration, choices: [Choice]) -> [UInt8] {
        let objects: [JSON] = choices.enumerated().map { i, c in
            let prompt = g.promptTexts[i / r.generation.choicesPerPrompt]
            let echoed = r.echo ? prompt : ""
            var logprobs = JSON.null
            if let n = r.logProbs {
                logprobs = r.endpoint == .chat ? chatLogProbs(c.tokens, count: n)
                    : legacyLogProbs(c.tokens, count: n, offset: echoed.unicodeScalars.count)
            }
            let reason = c.finishReason.map(JSON.string) ?? .null
            switch r.endpoint {
            case .completions:
                return .object(JSONObject([("index", .int(Int64(i))), ("text", .string(echoed + c.text)), ("logprobs", logprobs),
                                           ("finish_reason", reason)]))
            case .chat:
                let message = JSON.object(JSONObject([("role", .string("assistant")), ("content", .string(c.text)), ("refusal", .null)]))
                return .object(JSONObject([("index", .int(Int64(i))), ("message", message), ("logprobs", logprobs), ("finish_reason", reason)]))
            }
        }
        let completion = choices.reduce(0) { $0 + $1.tokenCount }
        return JSONWriter.encode(.object(JSONObject([
            ("id", .string(id)), ("object", .string(r.endpoint == .chat ? "chat.completion" : "text_completion")),
            ("created", .int(created)), ("model", .string(g.model)), ("choices", .array(objects)),
            ("usage", usage(g.promptTokenCounts.reduce(0, +), completion)),
        ])))
    }

    /// `data: {json}\n\n` per chunk for a streamed response; holds the counts for the usage chunk.
    struct ChunkWriter {
        let request: OpenAIRequest
        let id: String
        let created: Int64
        let model: String
        let promptTexts: [String]
        let promptTokens: Int
        private var completionTokens = 0
        private var started = false

        init(request: OpenAIRequest, id: String, created: Int64, generation g: TextGeneration) {
            self.request = request
            self.id = id
            self.created = created
            self.model = g.model
            self.promptTexts = g.promptTexts
            self.promptTokens = g.promptTokenCounts.reduce(0, +)
        }

        private func chunk(_ choices: [JSON], usage: JSON? = nil) -> [UInt8] {
            var members: [(key: String, value: JSON)] = [
                ("id", .string(id)), ("object", .string(request.endpoint == .chat ? "chat.completion.chunk" : "text_completion")),
                ("created", .int(created)), ("model", .string(model)), ("choices", .array(choices)),
            ]
            if request.includeUsage { members.append(("usage", usage ?? .null)) }
            return JSONWriter.encode(.object(JSONObject(members)))
        }

        private func choice(_ index: Int, text: String?, delta: [(key: String, value: JSON)] = [], logprobs: JSON = .null,
                            finishReason: String? = nil) -> JSON {
            var members: [(key: String, value: JSON)] = [("index", .int(Int64(index)))]
            if request.endpoint == .chat {
                members.append(("delta", .object(JSONObject(delta))))
            } else {
                members.append(("text", .string(text ?? "")))
            }
            members += [("logprobs", logprobs), ("finish_reason", finishReason.map(JSON.string) ?? .null)]
            return .object(JSONObject(members))
        }

        /// The opening chunks: chat's assistant role, completions' echoed prompts; once.
        mutating func start() -> [[UInt8]] {
            guard !started else { return [] }
            started = true
            let count = request.choiceCount
            switch request.endpoint {
            case .chat:
                return (0..<count).map { chunk([choice($0, text: nil, delta: [("role", .string("assistant")), ("content", .string(""))])]) }
            case .completions:
                guard request.echo else { return [] }
                return (0..<count).map { chunk([choice($0, text: promptTexts[$0 / request.generation.choicesPerPrompt])]) }
            }
        }

        /// The chunks of one delta: its text (and log probs) if any, then its finish reason.
        mutating func chunks(for d: TextDelta) -> [[UInt8]] {
            var out = start()
            completionTokens += d.tokenCount
            if !d.text.isEmpty || !d.tokens.isEmpty {
                var logprobs = JSON.null
                if let n = request.logProbs {
                    let echoOffset = request.echo ? promptTexts[d.choice / request.generation.choicesPerPrompt].unicodeScalars.count : 0
                    logprobs = request.endpoint == .chat ? OpenAICoding.chatLogProbs(d.tokens, count: n)
                        : OpenAICoding.legacyLogProbs(d.tokens, count: n, offset: echoOffset)
                }
                out.append(chunk([choice(d.choice, text: d.text, delta: [("content", .string(d.text))], logprobs: logprobs)]))
            }
            if let reason = d.finishReason {
                out.append(chunk([choice(d.choice, text: "", finishReason: reason)]))
            }
            return out
        }

        /// After the last delta: the usage chunk when asked for.
        mutating func finish() -> [[UInt8]] {
            var out = start()
            if request.includeUsage { out.append(chunk([], usage: OpenAICoding.usage(promptTokens, completionTokens))) }
            return out
        }
    }

    static func models(_ models: [TextModel]) -> JSON {
        .object(JSONObject([("object", .string("list")), ("data", .array(models.map(model)))]))
    }

    static func model(_ m: TextModel) -> JSON {
        .object(JSONObject([("id", .string(m.name)), ("object", .string("model")), ("created", .int(m.created)),
                            ("owned_by", .string("petrel")), ("max_model_len", .int(Int64(m.contextLength)))]))
    }
}

extension Double {
    /// 2 for 2.0, else the shortest form.
    fileprivate var formatted: String { self == rounded() && abs(self) < 1e15 ? String(Int64(self)) : description }
}
