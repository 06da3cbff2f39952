// The OpenAI-compatible routes on port 8000: GET /v1/models (and /v1/models/{id}),
// POST /v1/completions and /v1/chat/completions, streamed as Server-Sent Events ending in
// `data: [DONE]`. They run on Serving's `TextGenerationService` (InferenceServer conforms);
// a service without it answers 404. Errors use OpenAI's shape.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HTTPTypes
import Hummingbird
import JSONCore
import NIOCore
import Serving

enum OpenAIRoute: Equatable, Sendable {
    case models
    case model(String)
    case completions
    case chatCompletions
    /// A path under /v1 that names nothing.
    case unknown

    /// nil for paths outside /v1.
    init?(path: String) {
        guard path == "/v1" || path.hasPrefix("/v1/") else { return nil }
        let s = path.split(separator: "/", omittingEmptySubsequences: true).dropFirst().map(String.init)
        switch s {
        case ["models"]: self = .models
        case let m where m.count == 2 && m[0] == "models": self = Route.percentDecoded(Substring(m[1])).map(OpenAIRoute.model) ?? .unknown
        case ["completions"]: self = .completions
        case ["chat", "completions"]: self = .chatCompletions
        default: self = .unknown
        }
    }

    var group: APIGroup {
        switch self {
        case .models, .model, .unknown: return .metadata
        case .completions, .chatCompletions: return .inference
        }
    }

    var method: HTTPRequest.Method {
        switch self {
        case .models, .model, .unknown: return .get
        case .completions, .chatCompletions: return .post
        }
    }
}

extension KServeResponder {
    func respondOpenAI(_ route: OpenAIRoute, _ request: Request, _ context: Context) async -> Response {
        do {
            if route == .unknown { throw OpenAIError(status: 404, "no OpenAI route at \(request.uri.path)", code: "unknown_url") }
            if let rule = restrictions[route.group], request.headers[rule.name] != rule.value {
                throw OpenAIError(status: 403, "This API is restricted, expecting header '\(rule.headerName)'")
            }
            guard request.method == route.method else {
                throw OpenAIError(status: 405, "\(request.method) is not allowed on \(request.uri.path)")
            }
            guard let text = service as? any TextGenerationService else {
                throw OpenAIError(status: 404, "this server has no text generation models")
            }
            switch route {
            case .models:
                return Self.json(OpenAICoding.models(text.textModels()))
            case .model(let name):
                guard let m = text.textModels().first(where: { $0.name == name }) else {
                    throw OpenAIError(status: 404, "The model '\(name)' does not exist", code: "model_not_found")
                }
                return Self.json(OpenAICoding.model(m))
            case .completions, .chatCompletions:
                try Self.requireIdentityEncoding(request)
                guard let json = try Self.parseJSON(try await readBody(request), allowEmpty: false) else {
                    throw OpenAIError("the request body is empty")
                }
                let r = route == .completions ? try OpenAICoding.decodeCompletions(json) : try OpenAICoding.decodeChat(json)
                return try await generate(r, text, context)
            case .unknown:
                throw OpenAIError(status: 404, "no OpenAI route at \(request.uri.path)")
            }
        } catch let e as OpenAIError {
            return Self.openAIError(e)
        } catch let e as ServingError {
            return Self.openAIError(OpenAIError(e))
        } catch is CancellationError {
            return Self.openAIError(OpenAIError(status: 400, "the request was cancelled"))
        } catch {
            return Self.openAIError(OpenAIError(status: 500, "\(error)"))
        }
    }

    static func openAIError(_ e: OpenAIError) -> Response {
        Response(status: HTTPResponse.Status(code: e.status), headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: e.json)))
    }

    private func generate(_ r: OpenAIRequest, _ text: any TextGenerationService, _ context: Context) async throws -> Response {
        let generation = try text.generateText(r.generation)
        let id = (r.endpoint == .chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.lowercased().filter { $0 != "-" }
        let created = Int64(Date().timeIntervalSince1970)
        if r.stream { return await stream(r, generation, id: id, created: created, context) }
        let count = r.choiceCount
        let choices = try await Self.untilDisconnect(context) { () -> [OpenAICoding.Choice] in
            let choices = Locked(Array(repeating: OpenAICoding.Choice(), count: count))
            try await generation.run { d in
                choices.withLock { choices in
                    choices[d.choice].text += d.text
                    choices[d.choice].tokens += d.tokens
                    choices[d.choice].tokenCount += d.tokenCount
                    if let reason = d.finishReason { choices[d.choice].finishReason = reason }
                }
            }
            try Task.checkCancellation()
            return choices.current
        }
        return Self.json(bytes: OpenAICoding.response(r, id: id, created: created, generation: generation, choices: choices))
    }

    private enum OpenAIEvent: Sendable {
        case data([UInt8])
        case failure(OpenAIError)
    }

    /// Server-Sent Events: the chunks of each delta as it arrives, then the usage chunk when
    /// asked for, then `data: [DONE]`. A failure before any chunk answers with its status and
    /// OpenAI's error body; a later one is sent as a `data: {"error": …}` event. The client
    /// going away cancels the generation.
    private func stream(_ r: OpenAIRequest, _ g: TextGeneration, id: String, created: Int64, _ context: Context) async -> Response {
        let queue = EventQueue<OpenAIEvent>()
        let pump = Task {
            let writer = Locked(OpenAICoding.ChunkWriter(request: r, id: id, created: created, generation: g))
            do {
                try await g.run { d in
                    for c in writer.withLock({ $0.chunks(for: d) }) { queue.push(.data(c)) }
                }
                try Task.checkCancellation()
                for c in writer.withLock({ $0.finish() }) { queue.push(.data(c)) }
            } catch let e as ServingError {
                queue.push(.failure(OpenAIError(e)))
            } catch is CancellationError {
            } catch {
                queue.push(.failure(OpenAIError(status: 500, "\(error)")))
            }
            queue.finish()
        }
        let stop = await ClientDisconnectObserver.cancelling(pump, on: context.channel)
        let first = await withTaskCancellationHandler { await queue.next() } onCancel: { pump.cancel() }
        if case .failure(let e)? = first {
            stop()
            return Self.openAIError(e)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"],
                        body: ResponseBody { writer in
            defer { stop() }
            var event = first
            var failed = false
            while let e = event {
                switch e {
                case .data(let json): try await writer.write(Self.sse(json))
                case .failure(let error):
                    failed = true
                    try await writer.write(Self.sse(error.json))
                }
                event = await queue.next()
            }
            if first != nil || failed { try await writer.write(ByteBuffer(string: "data: [DONE]\n\n")) }
            try await writer.finish(nil)
        })
    }
}
