// KServeResponder: the HTTP endpoint of port 8000. Every route of Triton's HTTP/REST API
// (KServe v2 plus Triton's extensions) answered with Triton's JSON shapes and status codes;
// errors are {"error": "..."}. It talks to the server core only through InferenceService.
// Paths under /v1 go to the OpenAI-compatible routes (OpenAIResponder.swift).
import HTTPTypes
import Hummingbird
import JSONCore
import NIOCore
import Serving
import Synchronization
import Telemetry

/// Request context carrying the connection, so handlers can notice the client going away.
public struct FrontendRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}

struct KServeResponder: HTTPResponder {
    typealias Context = FrontendRequestContext

    let service: any InferenceService
    let options: HTTPFrontendOptions
    /// Restricted group -> the header it needs.
    let restrictions: [APIGroup: (name: HTTPField.Name, headerName: String, value: String)]

    init(service: any InferenceService, options: HTTPFrontendOptions) {
        self.service = service
        self.options = options
        var r: [APIGroup: (name: HTTPField.Name, headerName: String, value: String)] = [:]
        for rule in options.restrictedAPIs {
            guard let name = HTTPField.Name(rule.headerName) else { continue }
            for g in rule.groups { r[g] = (name, rule.headerName, rule.headerValue) }
        }
        self.restrictions = r
    }

    func respond(to request: Request, context: Context) async throws -> Response {
        options.log.verbose(1, "HTTP request: \(request.method) \(request.uri.path)")
        if let route = OpenAIRoute(path: request.uri.path) {
            return await respondOpenAI(route, request, context)
        }
        guard let route = Route(path: request.uri.path) else {
            return Self.error(.notFound, "Not Found")
        }
        if let rule = restrictions[route.group], request.headers[rule.name] != rule.value {
            return Self.error(.forbidden, "This API is restricted, expecting header '\(rule.headerName)'")
        }
        guard route.allows(request.method) else {
            return Self.error(.methodNotAllowed, "Method Not Allowed")
        }
        do {
            return try await handle(route, request, context)
        } catch let e as ServingError {
            return Self.error(Self.status(e.status), e.message)
        } catch is CancellationError {
            return Self.error(.badRequest, "request was cancelled")
        } catch {
            return Self.error(.internalServerError, "\(error)")
        }
    }

    private func handle(_ route: Route, _ request: Request, _ context: Context) async throws -> Response {
        switch route {
        case .serverMetadata:
            return Self.json(TritonJSON.serverMetadata(service.serverMetadata()))

        case .health(let live):
            let ok = live ? service.isLive() : service.isReady()
            return Response(status: ok ? .ok : .badRequest)

        case .modelReady(let model, let version):
            guard !model.isEmpty else { return Self.error(.badRequest, "Missing model name in ModelReady request") }
            return service.isModelReady(model, version: version)
                ? Response(status: .ok) : Self.error(.badRequest, "Model version not ready")

        case .modelMetadata(let model, let version):
            return Self.json(TritonJSON.modelMetadata(try service.modelMetadata(model, version: version)))

        case .modelConfig(let model, let version):
            let config = try service.modelConfig(model, version: version)
            return Self.json(bytes: try TritonJSON.modelConfig(config))

        case .modelStats(let model, let version):
            let stats = try service.modelStatistics(model, version: version)
            return Self.json(TritonJSON.statistics(stats))

        case .infer(let model, let version):
            return try await infer(request, context, model: model, version: version)

        case .generate(let model, let version, let stream):
            let inputs = try service.inputsForGenerate(model, version: version)
            try Self.requireIdentityEncoding(request)
            let json = try Self.parseJSON(try await readBody(request), allowEmpty: true) ?? .object(JSONObject())
            let infer = try GenerateCoding.decodeRequest(json, inputs: inputs, model: model, version: version)
            if stream { return try await generateStream(infer, context) }
            let service = self.service
            let response = try await Self.untilDisconnect(context) { try await service.infer(infer) }
            return Self.json(bytes: try GenerateCoding.encodeResponse(response))

        case .repositoryIndex(let repository):
            guard repository.isEmpty else { throw Self.repositoryNameUnsupported }
            var readyOnly = false
            if let json = try Self.parseJSON(try await readBody(request), allowEmpty: true),
               let ready = json["ready"] {
                guard case .bool(let b) = ready else { throw badRequest("Invalid value for 'ready': expected a boolean") }
                readyOnly = b
            }
            return Self.json(TritonJSON.repositoryIndex(service.repositoryIndex(readyOnly: readyOnly)))

        case .repositoryLoad(let repository, let model):
            guard repository.isEmpty else { throw Self.repositoryNameUnsupported }
            var config: String?
            if let json = try Self.parseJSON(try await readBody(request), allowEmpty: true),
               let params = json["parameters"] {
                guard case .object(let p) = params else { throw badRequest("Unable to parse 'parameters'") }
                for (key, value) in p.members {
                    guard case .string(let s) = value else {
                        throw badRequest("Unable to parse parameter '\(key)': expected a string")
                    }
                    if key == "config" {
                        config = s
                    } else if key.hasPrefix("file:") {
                        throw ServingError(.notImplemented, "load parameter '\(key)': model files in the load request are not supported")
                    }
                }
            }
            try await service.loadModel(model, config: config)
            return Self.emptyJSONResponse()

        case .repositoryUnload(let repository, let model):
            guard repository.isEmpty else { throw Self.repositoryNameUnsupported }
            var dependents = false
            if let json = try Self.parseJSON(try await readBody(request), allowEmpty: true),
               let value = json["parameters"]?["unload_dependents"] {
                guard case .bool(let b) = value else {
                    throw badRequest("Unable to parse 'unload_dependents': expected a boolean")
                }
                dependents = b
            }
            try await service.unloadModel(model, unloadDependents: dependents)
            return Self.emptyJSONResponse()

        case .logging:
            if request.method == .post {
                let body = try await readBody(request)
                guard case .object(let o)? = try Self.parseJSON(body, allowEmpty: false) else {
                    throw badRequest("logging request must be a JSON object")
                }
                try options.log.update { try TritonJSON.applyLogging(o, to: &$0) }
            }
            return Self.json(TritonJSON.logging(options.log.settings))

        case .trace, .modelTrace:
            throw Self.tracingUnsupported

        case .sharedMemory(let cuda, let region, let action):
            // As Triton with client shared memory disabled: no region is registered, and none can be.
            let kind = cuda ? "CUDA" : "system"
            switch action {
            case .status:
                guard region.isEmpty else {
                    throw badRequest("Unable to find \(kind) shared memory region: '\(region)'")
                }
                return Self.json(.array([]))
            case .register, .unregister:
                throw ServingError(.notImplemented, "\(kind) shared memory is not supported by this server; send tensor data in the request")
            }
        }
    }

    // MARK: infer

    private func infer(_ request: Request, _ context: Context, model: String, version: String) async throws -> Response {
        try Self.requireIdentityEncoding(request)
        var headerLength: Int?
        if let name = HTTPField.Name("Inference-Header-Content-Length"), let text = request.headers[name] {
            guard let n = Int(text.trimmingSpaces) else {
                throw badRequest("Unable to parse Inference-Header-Content-Length, got: \(text)")
            }
            headerLength = n
        }
        let body = try await readBody(request)
        let (inferRequest, format) = try body.withUnsafeReadableBytes {
            try InferCoding.decodeRequest($0, headerLength: headerLength, model: model, version: version)
        }
        let service = self.service
        let response = try await Self.untilDisconnect(context) { try await service.infer(inferRequest) }
        let (bytes, jsonLength) = try InferCoding.encodeResponse(response, format: format)
        var headers: HTTPFields = [:]
        if let jsonLength {
            headers[.contentType] = "application/octet-stream"
            headers[HTTPField.Name("Inference-Header-Content-Length")!] = String(jsonLength)
        } else {
            headers[.contentType] = "application/json"
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    // MARK: generate_stream

    private enum StreamEvent: Sendable {
        case data([UInt8])
        case failure(HTTPResponse.Status, String)
    }

    /// Server-Sent Events, one `data: {json}\n\n` per response, written as each arrives. An
    /// error before any output answers with the error's status and a JSON body, as Triton does.
    /// The client going away cancels the request.
    private func generateStream(_ request: InferRequest, _ context: Context) async throws -> Response {
        let queue = EventQueue<StreamEvent>()
        let service = self.service
        // The request runs in this task; its responses are encoded as they come and queued for
        // the body writer (the frontend's one stream).
        let pump = Task {
            do {
                try await service.inferStream(request) { response in
                    // A flag-only final response (no outputs) carries nothing to send.
                    if response.outputs.isEmpty && response.parameters.isEmpty { return }
                    queue.push(.data(try GenerateCoding.encodeResponse(response)))
                }
            } catch let e as ServingError {
                queue.push(.failure(Self.status(e.status), e.message))
            } catch is CancellationError {
            } catch {
                queue.push(.failure(.internalServerError, "\(error)"))
            }
            queue.finish()
        }
        let stop = await ClientDisconnectObserver.cancelling(pump, on: context.channel)

        let first = await withTaskCancellationHandler { await queue.next() } onCancel: { pump.cancel() }
        // An error before any response: a plain JSON error with its status, as Triton answers.
        if case .failure(let status, let message)? = first {
            stop()
            return Self.error(status, message)
        }
        let headers: HTTPFields = [.contentType: "text/event-stream; charset=utf-8"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            defer { stop() }
            var event = first
            while let e = event {
                switch e {
                case .data(let json): try await writer.write(Self.sse(json))
                case .failure(_, let message): try await writer.write(Self.sse(GenerateCoding.errorJSON(message)))
                }
                event = await queue.next()
            }
            try await writer.finish(nil)
        })
    }

    static func sse(_ json: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(json.count + 8)
        buffer.writeString("data: ")
        buffer.writeBytes(json)
        buffer.writeString("\n\n")
        return buffer
    }

    // MARK: helpers

    /// Runs `operation`, cancelling it if the client disconnects first.
    static func untilDisconnect<T: Sendable>(_ context: Context,
                                             _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        guard let observer = await ClientDisconnectObserver.on(context.channel) else { return try await operation() }
        return try await observer.run(operation)
    }

    /// The body, at most `maxBodyBytes` (Triton answers larger ones 400).
    func readBody(_ request: Request) async throws -> ByteBuffer {
        let limit = options.maxBodyBytes
        func tooLarge(_ size: Int?) -> ServingError {
            let what = size.map { "request JSON size of \($0) bytes" } ?? "request body"
            return badRequest("\(what) exceeds the maximum allowed input size of \(limit) bytes. Use --http-max-input-size to increase the limit.")
        }
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw tooLarge(length)
        }
        do {
            return try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw tooLarge(nil)
        }
    }

    /// Compressed request bodies (Content-Encoding gzip / deflate) are not supported.
    static func requireIdentityEncoding(_ request: Request) throws {
        if let encoding = request.headers[.contentEncoding], !encoding.isEmpty, encoding != "identity" {
            throw badRequest("Unsupported content-encoding '\(encoding)', only 'identity' is supported.")
        }
    }

    /// nil for an empty body when `allowEmpty`.
    static func parseJSON(_ body: ByteBuffer, allowEmpty: Bool) throws -> JSON? {
        if body.readableBytes == 0 {
            if allowEmpty { return nil }
            throw badRequest("failed to parse the request JSON buffer: the body is empty")
        }
        do {
            return try body.withUnsafeReadableBytes {
                try JSONParser.parse(buffer: $0.assumingMemoryBound(to: UInt8.self), options: .kserve)
            }
        } catch let e as JSONParseError {
            throw badRequest("failed to parse the request JSON buffer: \(e.message) at offset \(e.offset)")
        }
    }

    /// Triton's answer when built without tracing (503).
    static let tracingUnsupported = ServingError(.unavailable, "the server does not support tracing")

    private static let repositoryNameUnsupported = ServingError(.notImplemented, "'repository_name' specification is not supported")

    static func status(_ s: ServingError.Status) -> HTTPResponse.Status { HTTPResponse.Status(code: s.rawValue) }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: GenerateCoding.errorJSON(message))))
    }

    static func json(_ value: JSON) -> Response { json(bytes: JSONWriter.encode(value)) }

    static func json(bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func emptyJSONResponse() -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"])
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
