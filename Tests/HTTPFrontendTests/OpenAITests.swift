// The OpenAI-compatible routes over a fake TextGenerationService: request decoding with
// OpenAI's parameter names in errors, the response and chunk objects, Server-Sent Events ending
// in [DONE], errors in OpenAI's shape before and during a stream, and a client hanging up.
import Foundation
@testable import HTTPFrontend
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JSONCore
@testable import Serving
import Testing

/// The fake's text models: `ensemble` streams llmPieces one token each; `failing` fails before
/// any delta (`failing`) ; `slow` sends one delta, then waits to be cancelled.
extension FakeService: TextGenerationService {
    func textModels() -> [TextModel] {
        ["ensemble", "failing", "slow"].map { TextModel(name: $0, created: 1_700_000_000, contextLength: 256) }
    }

    func generateText(_ request: TextGenerationRequest) throws -> TextGeneration {
        guard textModels().contains(where: { $0.name == request.model }) else {
            throw ServingError(.notFound, "unknown model: '\(request.model)' is not found")
        }
        probe.state.withLock { $0.lastText = request }
        let choices = request.prompts.count * request.choicesPerPrompt
        let probe = self.probe
        let (stream, continuation) = AsyncThrowingStream<TextDelta, Error>.makeStream()
        let producer = Task {
            switch request.model {
            case "failing":
                continuation.finish(throwing: ServingError(.internalError, "model 'failing' exploded"))
            case "slow":
                continuation.yield(TextDelta(choice: 0, text: "tick", tokenCount: 1))
                do { try await Task.sleep(for: .seconds(30)) } catch { return }
                continuation.finish()
            default:
                let pieces = Array(llmPieces.prefix(request.maxTokens ?? llmPieces.count))
                for c in 0..<choices {
                    var offset = 0
                    for (k, piece) in pieces.enumerated() {
                        var tokens: [GeneratedToken] = []
                        if request.logProbs {
                            let token = TokenText(text: piece, bytes: Array(piece.utf8))
                            let top = (0..<request.topLogProbs).map { j in
                                TokenAlternative(token: j == 0 ? token : TokenText(text: "alt\(j)", bytes: Array("alt\(j)".utf8)), logProb: -0.5 - Double(j))
                            }
                            tokens = [GeneratedToken(id: Int32(k), token: token, logProb: -0.5, textOffset: offset, top: top)]
                        }
                        offset += piece.unicodeScalars.count
                        let last = k == pieces.count - 1
                        continuation.yield(TextDelta(choice: c, text: piece, tokenCount: 1, tokens: tokens,
                                                     finishReason: last ? (pieces.count < llmPieces.count ? "length" : "stop") : nil))
                    }
                }
                continuation.finish()
            }
        }
        continuation.onTermination = { termination in
            if case .cancelled = termination { probe.state.withLock { $0.cancelled.append(request.model) } }
            producer.cancel()
        }
        return TextGeneration(model: request.model, promptTokenCounts: Array(repeating: 5, count: request.prompts.count),
                              promptTexts: request.prompts.map { if case .text(let s) = $0 { return s }; return "<chat>" },
                              run: { send in for try await d in stream { try await send(d) } }, abandon: { producer.cancel() })
    }
}

/// The `error` object of an OpenAI error answer.
func openAIError(_ body: [UInt8]) throws -> [String: Any] {
    try #require(try jsonObject(body)["error"] as? [String: Any])
}

@Suite struct OpenAIDecodingTests {
    func json(_ text: String) throws -> JSON { try JSONParser.parse(Array(text.utf8), options: .kserve) }

    @Test func routes() {
        #expect(OpenAIRoute(path: "/v1/models") == .models)
        #expect(OpenAIRoute(path: "/v1/models/my%20model") == .model("my model"))
        #expect(OpenAIRoute(path: "/v1/completions") == .completions)
        #expect(OpenAIRoute(path: "/v1/chat/completions") == .chatCompletions)
        #expect(OpenAIRoute(path: "/v1/embeddings") == .unknown)
        #expect(OpenAIRoute(path: "/v1") == .unknown)
        #expect(OpenAIRoute(path: "/v2/models") == nil)
        #expect(OpenAIRoute(path: "/v10/models") == nil)
        #expect(OpenAIRoute(path: "/v1/completions")?.group == .inference)
    }

    @Test func completionsRequest() throws {
        let r = try OpenAICoding.decodeCompletions(try json(#"""
            {"model": "ensemble", "prompt": "Hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "n": 3, "seed": -1,
             "presence_penalty": 1, "frequency_penalty": -0.5, "stop": ["a", "bc"], "logprobs": 2, "stream": true,
             "stream_options": {"include_usage": true}, "user": "me", "logit_bias": {}, "best_of": 3, "suffix": null}
            """#))
        let g = r.generation
        #expect(g == TextGenerationRequest(model: "ensemble", prompts: [.text("Hi")], choicesPerPrompt: 3, maxTokens: 7, temperature: 0.5,
                                           topP: 0.9, seed: UInt64.max, presencePenalty: 1, frequencyPenalty: -0.5, stop: ["a", "bc"],
                                           logProbs: true, topLogProbs: 2))
        #expect(r.stream && r.includeUsage && r.logProbs == 2 && r.endpoint == .completions && r.choiceCount == 3)
        // OpenAI's defaults: 16 tokens, temperature 1 (sampling), one choice.
        let d = try OpenAICoding.decodeCompletions(try json(#"{"model": "m", "prompt": "x"}"#)).generation
        #expect(d.maxTokens == 16 && d.temperature == 1 && d.topP == 1 && d.choicesPerPrompt == 1 && d.seed == nil && !d.logProbs)
        // Every prompt form.
        let forms: [(String, [TextGenerationRequest.Prompt])] = [
            (#"["a", "b"]"#, [.text("a"), .text("b")]),
            ("[1, 2, 3]", [.tokenIDs([1, 2, 3])]),
            ("[[1, 2], [3]]", [.tokenIDs([1, 2]), .tokenIDs([3])]),
        ]
        for (prompt, want) in forms {
            #expect(try OpenAICoding.decodeCompletions(try json(#"{"model": "m", "prompt": \#(prompt)}"#)).generation.prompts == want)
        }
        #expect(try OpenAICoding.decodeCompletions(try json(#"{"model": "m", "prompt": "x", "stop": "\n"}"#)).generation.stop == ["\n"])
    }

    @Test func chatRequest() throws {
        let r = try OpenAICoding.decodeChat(try json(#"""
            {"model": "m", "messages": [{"role": "developer", "content": "Be brief."},
                                        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
                                        {"role": "assistant", "content": null}],
             "max_tokens": 9, "max_completion_tokens": 5, "logprobs": true, "top_logprobs": 4, "response_format": {"type": "text"},
             "tools": []}
            """#))
        #expect(r.generation.prompts == [.chat([ChatTurn(role: "system", content: "Be brief."), ChatTurn(role: "user", content: "Hello\nthere"),
                                                ChatTurn(role: "assistant", content: "")])])
        #expect(r.generation.maxTokens == 5)
        #expect(r.generation.logProbs && r.generation.topLogProbs == 4 && r.logProbs == 4)
        // No limit given: up to the context length.
        let d = try OpenAICoding.decodeChat(try json(#"{"model": "m", "messages": [{"role": "user", "content": "x"}]}"#))
        #expect(d.generation.maxTokens == nil && d.logProbs == nil)
    }

    @Test func badRequestsNameTheirParameter() throws {
        let completions: [(String, String?)] = [
            (#"{"prompt": "x"}"#, "model"),
            (#"{"model": "m"}"#, "prompt"),
            (#"{"model": "m", "prompt": []}"#, "prompt"),
            (#"{"model": "m", "prompt": [1, "x"]}"#, "prompt"),
            (#"{"model": "m", "prompt": 5}"#, "prompt"),
            (#"{"model": "m", "prompt": "x", "temperature": 2.5}"#, "temperature"),
            (#"{"model": "m", "prompt": "x", "temperature": "hot"}"#, "temperature"),
            (#"{"model": "m", "prompt": "x", "top_p": -0.1}"#, "top_p"),
            (#"{"model": "m", "prompt": "x", "n": 0}"#, "n"),
            (#"{"model": "m", "prompt": "x", "n": 1.5}"#, "n"),
            (#"{"model": "m", "prompt": "x", "max_tokens": 0}"#, "max_tokens"),
            (#"{"model": "m", "prompt": "x", "presence_penalty": -3}"#, "presence_penalty"),
            (#"{"model": "m", "prompt": "x", "frequency_penalty": 2.5}"#, "frequency_penalty"),
            (#"{"model": "m", "prompt": "x", "stop": 3}"#, "stop"),
            (#"{"model": "m", "prompt": "x", "stop": ["a", 1]}"#, "stop"),
            (#"{"model": "m", "prompt": "x", "seed": "s"}"#, "seed"),
            (#"{"model": "m", "prompt": "x", "logprobs": 21}"#, "logprobs"),
            (#"{"model": "m", "prompt": "x", "logprobs": 1, "echo": true}"#, "echo"),
            (#"{"model": "m", "prompt": "x", "best_of": 2}"#, "best_of"),
            (#"{"model": "m", "prompt": "x", "suffix": "y"}"#, "suffix"),
            (#"{"model": "m", "prompt": "x", "logit_bias": {"5": 10}}"#, "logit_bias"),
            (#"{"model": "m", "prompt": "x", "stream": "yes"}"#, "stream"),
            (#"{"model": "m", "prompt": "x", "stream_options": {"include_usage": true}}"#, "stream_options"),
            ("[1]", nil),
        ]
        for (body, param) in completions {
            #expect(throws: OpenAIError.self, "\(body)") { try OpenAICoding.decodeCompletions(try json(body)) }
            do {
                _ = try OpenAICoding.decodeCompletions(try json(body))
            } catch let e as OpenAIError {
                #expect(e.param == param && e.status == 400 && e.type == "invalid_request_error", "\(body): \(e)")
            }
        }
        let chats: [(String, String)] = [
            (#"{"model": "m", "messages": []}"#, "messages"),
            (#"{"model": "m", "messages": [{"content": "x"}]}"#, "messages"),
            (#"{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}"#, "messages"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}"#, "top_logprobs"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 30}"#, "top_logprobs"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -1}"#, "max_completion_tokens"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}"#, "tools"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}"#, "response_format"),
        ]
        for (body, param) in chats {
            do {
                _ = try OpenAICoding.decodeChat(try json(body))
                Issue.record("accepted \(body)")
            } catch let e as OpenAIError {
                #expect(e.param == param && e.status == 400, "\(body): \(e)")
            }
        }
    }

    @Test func errorShape() throws {
        let e = OpenAIError(ServingError(.notFound, "unknown model: 'x' is not found"))
        let o = try openAIError(e.json)
        #expect(o["message"] as? String == "unknown model: 'x' is not found")
        #expect(o["type"] as? String == "invalid_request_error")
        #expect(o["code"] as? String == "model_not_found")
        #expect(o["param"] is NSNull)
        #expect(OpenAIError(ServingError(.unavailable, "busy")).type == "server_error")
    }

    @Test func legacyLogProbsKeepTheChosenTokenAndNoDuplicates() throws {
        let a = TokenText(text: "a", bytes: [97]), b = TokenText(text: "b", bytes: [98])
        let t = GeneratedToken(id: 1, token: b, logProb: -2, textOffset: 3,
                               top: [TokenAlternative(token: a, logProb: -1), TokenAlternative(token: a, logProb: -1.5)])
        let o = try jsonObject(JSONWriter.encode(OpenAICoding.legacyLogProbs([t], count: 2, offset: 10)))
        #expect(o["tokens"] as? [String] == ["b"])
        #expect(o["token_logprobs"] as? [Double] == [-2])
        #expect(o["top_logprobs"] as? [[String: Double]] == [["a": -1, "b": -2]])
        #expect(o["text_offset"] as? [Int] == [13])
        // -inf is not JSON: it is written -9999.
        #expect(OpenAICoding.logProb(-.infinity) == .double(-9999))
    }
}

@Suite struct OpenAIEndpointTests {
    @Test func modelsList() async throws {
        try await withApp { client in
            let r = try await client.execute(uri: "/v1/models", method: .get)
            #expect(r.status == .ok)
            let o = try jsonObject(r.body)
            #expect(o["object"] as? String == "list")
            let data = try #require(o["data"] as? [[String: Any]])
            #expect(data.map { $0["id"] as? String } == ["ensemble", "failing", "slow"])
            #expect(data[0]["object"] as? String == "model" && data[0]["created"] as? Int == 1_700_000_000 && data[0]["owned_by"] as? String == "petrel")
            let one = try await client.execute(uri: "/v1/models/ensemble", method: .get)
            #expect(try jsonObject(one.body)["id"] as? String == "ensemble")
            let missing = try await client.execute(uri: "/v1/models/nope", method: .get)
            #expect(missing.status == .notFound)
            #expect(try openAIError(Array(missing.body.readableBytesView))["code"] as? String == "model_not_found")
        }
    }

    @Test func completionWithChoicesLogProbsAndUsage() async throws {
        let probe = FakeProbe()
        try await withApp(FakeService(probe: probe)) { client in
            let r = try await post(client, "/v1/completions", #"{"model": "ensemble", "prompt": "Hi", "n": 2, "max_tokens": 3, "logprobs": 1, "temperature": 0}"#)
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "application/json")
            let o = try jsonObject(r.body)
            #expect(o["object"] as? String == "text_completion" && o["model"] as? String == "ensemble")
            #expect((o["id"] as? String)?.hasPrefix("cmpl-") == true)
            let choices = try #require(o["choices"] as? [[String: Any]])
            #expect(choices.map { $0["index"] as? Int } == [0, 1])
            for c in choices {
                #expect(c["text"] as? String == llmPieces.prefix(3).joined())
                #expect(c["finish_reason"] as? String == "length")
                let lp = try #require(c["logprobs"] as? [String: Any])
                #expect(lp["tokens"] as? [String] == Array(llmPieces.prefix(3)))
                #expect(lp["text_offset"] as? [Int] == [0, 7, 16])
                #expect((lp["top_logprobs"] as? [[String: Double]])?.count == 3)
            }
            let usage = try #require(o["usage"] as? [String: Int])
            #expect(usage == ["prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11])
            #expect(probe.state.withLock { $0.lastText?.temperature } == 0)

            // echo puts the prompt first.
            let echo = try await post(client, "/v1/completions", #"{"model": "ensemble", "prompt": "Hi: ", "max_tokens": 2, "echo": true}"#)
            let text = (try jsonObject(echo.body)["choices"] as? [[String: Any]])?.first?["text"] as? String
            #expect(text == "Hi: Machine learning")
        }
    }

    @Test func chatCompletion() async throws {
        try await withApp { client in
            let r = try await post(client, "/v1/chat/completions",
                                   #"{"model": "ensemble", "messages": [{"role": "user", "content": "Hi"}], "logprobs": true, "top_logprobs": 2}"#)
            #expect(r.status == .ok)
            let o = try jsonObject(r.body)
            #expect(o["object"] as? String == "chat.completion" && (o["id"] as? String)?.hasPrefix("chatcmpl-") == true)
            let choice = try #require((o["choices"] as? [[String: Any]])?.first)
            let message = try #require(choice["message"] as? [String: Any])
            #expect(message["role"] as? String == "assistant" && message["content"] as? String == llmPieces.joined())
            #expect(choice["finish_reason"] as? String == "stop")
            let content = try #require((choice["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
            #expect(content.count == llmPieces.count)
            #expect(content[2]["token"] as? String == " é" && content[2]["bytes"] as? [Int] == [32, 195, 169])
            #expect((content[0]["top_logprobs"] as? [[String: Any]])?.map { $0["token"] as? String } == ["Machine", "alt1"])
        }
    }

    @Test func chatStreamWithUsage() async throws {
        try await withServer { _, port in
            let c = try RawHTTPConnection(port: port)
            defer { c.hangUp() }
            let body = #"{"model": "ensemble", "messages": [{"role": "user", "content": "Hi"}], "stream": true, "stream_options": {"include_usage": true}}"#
            let (head, bytes) = try await c.request("POST", "/v1/chat/completions", body: Array(body.utf8))
            #expect(head.status == 200)
            #expect(head.headers["content-type"] == "text/event-stream; charset=utf-8")
            var reader = SSEReader()
            let events = reader.feed(bytes)
            #expect(events.last == "[DONE]")
            let chunks = try events.dropLast().map { try jsonObject(Array($0.utf8)) }
            #expect(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" && $0["id"] as? String == chunks[0]["id"] as? String })
            #expect(chunks.allSatisfy { $0.keys.contains("usage") })
            let choices = chunks.map { $0["choices"] as? [[String: Any]] ?? [] }
            let first = try #require(choices.first?.first?["delta"] as? [String: Any])
            #expect(first["role"] as? String == "assistant")
            let text = choices.flatMap { $0 }.compactMap { ($0["delta"] as? [String: Any])?["content"] as? String }.joined()
            #expect(text == llmPieces.joined())
            #expect(choices.flatMap { $0 }.compactMap { $0["finish_reason"] as? String } == ["stop"])
            #expect(choices.last?.isEmpty == true)
            #expect(chunks.last?["usage"] as? [String: Int] == ["prompt_tokens": 5, "completion_tokens": llmPieces.count, "total_tokens": 5 + llmPieces.count])
            #expect(chunks.dropLast().allSatisfy { $0["usage"] is NSNull })
        }
    }

    @Test func completionStreamWithoutUsage() async throws {
        try await withServer { _, port in
            let c = try RawHTTPConnection(port: port)
            defer { c.hangUp() }
            let (head, bytes) = try await c.request("POST", "/v1/completions",
                                                    body: Array(#"{"model": "ensemble", "prompt": "x", "stream": true, "max_tokens": 4}"#.utf8))
            #expect(head.status == 200)
            var reader = SSEReader()
            let events = reader.feed(bytes)
            #expect(events.last == "[DONE]")
            let chunks = try events.dropLast().map { try jsonObject(Array($0.utf8)) }
            #expect(chunks.allSatisfy { $0["object"] as? String == "text_completion" && !$0.keys.contains("usage") })
            let choices = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first }
            #expect(choices.compactMap { $0["text"] as? String }.joined() == llmPieces.prefix(4).joined())
            #expect(choices.last?["finish_reason"] as? String == "length")
        }
    }

    @Test func errorsInOpenAIsShape() async throws {
        try await withApp(options: HTTPFrontendOptions(restrictedAPIs: [RestrictedAPI(groups: [.metadata], headerName: "key", headerValue: "s")])) { client in
            let cases: [(HTTPRequest.Method, String, String, HTTPResponse.Status, String?)] = [
                (.post, "/v1/completions", #"{"model": "nope", "prompt": "x"}"#, .notFound, "model_not_found"),
                (.post, "/v1/completions", #"{"model": "ensemble", "prompt": "x", "temperature": -1}"#, .badRequest, nil),
                (.post, "/v1/completions", "{not json", .badRequest, nil),
                (.post, "/v1/completions", "", .badRequest, nil),
                (.post, "/v1/chat/completions", #"{"model": "ensemble", "messages": "hi"}"#, .badRequest, nil),
                (.get, "/v1/completions", "", .methodNotAllowed, nil),
                (.get, "/v1/embeddings", "", .notFound, "unknown_url"),
                (.get, "/v1/models", "", .forbidden, nil),
                (.post, "/v1/completions", #"{"model": "failing", "prompt": "x"}"#, .internalServerError, nil),
            ]
            for (method, uri, body, status, code) in cases {
                let r = try await client.execute(uri: uri, method: method, body: ByteBuffer(string: body))
                #expect(r.status == status, "\(uri) \(body)")
                #expect(r.headers[.contentType] == "application/json")
                let e = try openAIError(Array(r.body.readableBytesView))
                #expect(e["message"] is String && e["type"] is String && e.keys.contains("param"), "\(e)")
                #expect(e["code"] as? String == code, "\(uri) \(body): \(e)")
            }
            #expect(try await client.execute(uri: "/v1/models", method: .get, headers: [HTTPField.Name("key")!: "s"]).status == .ok)
        }
    }

    @Test func streamFailingBeforeAnyChunkAnswersWithTheStatus() async throws {
        try await withServer { _, port in
            let c = try RawHTTPConnection(port: port)
            defer { c.hangUp() }
            let (head, bytes) = try await c.request("POST", "/v1/chat/completions",
                                                    body: Array(#"{"model": "failing", "messages": [{"role": "user", "content": "x"}], "stream": true}"#.utf8))
            #expect(head.status == 500)
            #expect(try openAIError(bytes)["message"] as? String == "model 'failing' exploded")
        }
    }

    @Test func clientHangingUpCancelsTheGeneration() async throws {
        let probe = FakeProbe()
        try await withServer(FakeService(probe: probe)) { _, port in
            let c = try RawHTTPConnection(port: port)
            let body = Array(#"{"model": "slow", "prompt": "x", "stream": true}"#.utf8)
            try await c.write(Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
            let head = try await c.readHead()
            #expect(head.status == 200)
            var reader = SSEReader()
            var events: [String] = []
            while events.isEmpty { events = reader.feed(try #require(try await c.readChunk())) }
            #expect(try jsonObject(Array(events[0].utf8))["choices"] as? [[String: Any]] != nil)
            #expect(probe.cancelled.isEmpty)
            c.hangUp()
            #expect(await probe.wait { $0.cancelled.contains("slow") }, "the generation was not cancelled")
        }
    }
}
