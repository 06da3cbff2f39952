// The generate extension: the README's curl body (no Content-Type), typed inputs from the
// model, Server-Sent Events read event by event off a raw socket (flushed as produced,
// multi-byte characters intact), errors before and during a stream, and a client hanging up
// cancelling its request.
import Foundation
import HTTPFrontend
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// Exactly what `curl -X POST localhost:8000/v2/models/ensemble/generate -d '...'` sends.
let curlBody = #"{"text_input": "What is machine learning?", "max_tokens": 20, "bad_words": "", "stop_words": "", "pad_id": 2, "end_id": 2}"#

@Suite struct GenerateTests {
    @Test func curlCommandFromTheREADME() async throws {
        let probe = FakeProbe()
        try await withServer(FakeService(probe: probe)) { _, port in
            let c = try RawHTTPConnection(port: port)
            defer { c.hangUp() }
            try await c.write("POST /v2/models/ensemble/generate HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
                              + "Content-Length: \(curlBody.utf8.count)\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n\(curlBody)")
            let head = try await c.readHead()
            #expect(head.status == 200)
            #expect(head.headers["content-type"] == "application/json")
            let o = try jsonObject(try await c.readBody(head))
            #expect(o["text_output"] as? String == llmPieces.joined())
            #expect(o["model_name"] as? String == "ensemble")
            #expect(o["model_version"] as? String == "1")
        }
        // The JSON fields became tensors typed and shaped from the model's inputs.
        let seen = try #require(probe.state.withLock { $0.lastRequest })
        let byName = Dictionary(uniqueKeysWithValues: seen.inputs.map { ($0.name, $0) })
        #expect(byName["text_input"]?.datatype == .bytes)
        #expect(byName["text_input"]?.shape == [1, 1])
        #expect(byName["text_input"]?.data == .bytes([Data("What is machine learning?".utf8)]))
        #expect(byName["max_tokens"]?.datatype == .int32)
        #expect(byName["max_tokens"]?.data == .ints([20]))
        #expect(byName["bad_words"]?.shape == [1, 1])
        #expect(byName["pad_id"]?.data == .ints([2]))
        #expect(seen.inputs.count == 6)
    }

    /// curl and libcurl (perf_analyzer) ask before sending larger bodies; the answer must come
    /// at once, not after their one-second timeout.
    @Test func expectContinueIsAnsweredBeforeTheBody() async throws {
        try await withServer { _, port in
            let c = try RawHTTPConnection(port: port, timeoutSeconds: 3)
            defer { c.hangUp() }
            try await c.write("POST /v2/models/ensemble/generate HTTP/1.1\r\nHost: x\r\nContent-Length: \(curlBody.utf8.count)\r\nExpect: 100-continue\r\n\r\n")
            let interim = try await c.readHead()
            #expect(interim.status == 100)
            try await c.write(curlBody)
            let head = try await c.readHead()
            #expect(head.status == 200)
            #expect(try jsonObject(try await c.readBody(head))["text_output"] as? String == llmPieces.joined())
        }
    }

    @Test func idParametersAndUnknownKeys() async throws {
        let probe = FakeProbe()
        try await withApp(FakeService(probe: probe)) { client in
            let r = try await post(client, "/v2/models/ensemble/generate",
                                   #"{"id": "g1", "text_input": ["a", "b"], "parameters": {"temperature": 0.5, "top_k": 4}, "seed_text": "x"}"#)
            #expect(r.status == .ok)
            let o = try jsonObject(r.body)
            #expect(o["id"] as? String == "g1")
            #expect(o["text_output"] as? String == llmPieces.joined())
            let seen = try #require(probe.state.withLock { $0.lastRequest })
            #expect(seen.id == "g1")
            let text = try #require(seen.inputs.first { $0.name == "text_input" })
            #expect(text.shape == [2, 1])
            // `temperature` is an input of the model: inside `parameters` it still maps to a tensor.
            let temperature = try #require(seen.inputs.first { $0.name == "temperature" })
            #expect(temperature.datatype == .fp32)
            #expect(temperature.data == .floats([0.5]))
            #expect(seen.parameters["top_k"] == .int(4))
            #expect(seen.parameters["seed_text"] == .string("x"))
            #expect(seen.parameters["id"] == nil)

            let bad: [(String, String, HTTPResponse.Status, String)] = [
                ("ensemble", #"{"text_input": "x", "max_tokens": -1}"#, .badRequest, "max_tokens must be positive"),
                ("ensemble", #"{"text_input": "x", "max_tokens": "twenty"}"#, .badRequest, "expects integers"),
                ("ensemble", #"{"text_input": 5}"#, .badRequest, "expects strings"),
                ("ensemble", #"{"max_tokens": 3}"#, .badRequest, "missing required input"),
                ("ensemble", #"{"text_input": "x", "parameters": 3}"#, .badRequest, "Expected JSON object for keyword: 'parameters'"),
                ("ensemble", #"{"text_input": "x", "other": [1, 2]}"#, .badRequest, "invalid type"),
                ("ensemble", #"{"text_input": "x""#, .badRequest, "failed to parse"),
                ("nope", #"{"text_input": "x"}"#, .notFound, "unknown model"),
                ("failing", #"{"text_input": "x"}"#, .internalServerError, "exploded"),
            ]
            for (model, body, status, fragment) in bad {
                let r = try await post(client, "/v2/models/\(model)/generate", body)
                #expect(r.status == status, "\(body)")
                let message = try errorMessage(r)
                #expect(message.contains(fragment), "\(message) lacks \(fragment)")
            }
            #expect(try await client.execute(uri: "/v2/health/ready", method: .get).status == .ok)
        }
    }

    @Test func streamArrivesEventByEventWithCharactersIntact() async throws {
        let probe = FakeProbe()
        try await withServer(FakeService(probe: probe)) { _, port in
            let c = try RawHTTPConnection(port: port)
            defer { c.hangUp() }
            let body = Array(#"{"id": "s1", "text_input": "hi", "max_tokens": 8, "stream": true}"#.utf8)
            try await c.write(Array("POST /v2/models/gated/generate_stream HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
            let head = try await c.readHead()
            #expect(head.status == 200)
            #expect(head.headers["content-type"] == "text/event-stream; charset=utf-8")
            #expect(head.headers["transfer-encoding"] == "chunked")
            var reader = SSEReader()
            var texts: [String] = []
            // The model produces piece k only after the test has read piece k - 1: each event
            // must reach the client on its own, not batched at the end.
            for k in 0..<llmPieces.count {
                var events: [String] = []
                while events.isEmpty {
                    let chunk = try #require(try await c.readChunk(), "stream ended early at piece \(k)")
                    events = reader.feed(chunk)
                }
                #expect(events.count == 1)
                let o = try jsonObject(Array(events[0].utf8))
                #expect(o["id"] as? String == "s1")
                #expect(o["model_name"] as? String == "gated")
                texts.append(try #require(o["text_output"] as? String))
                if k < llmPieces.count - 1 { probe.release() }
            }
            #expect(try await c.readChunk() == nil)  // the flag-only final response sends nothing
            #expect(reader.isEmpty)
            #expect(texts == llmPieces)
            #expect(texts.joined() == "Machine learning étudie les 数据 🙂!")
        }
    }

    @Test func streamedTextJoinsToTheNonStreamedText() async throws {
        try await withServer { _, port in
            let c = try RawHTTPConnection(port: port)
            defer { c.hangUp() }
            let (head, body) = try await c.request("POST", "/v2/models/ensemble/generate_stream", body: Array(curlBody.utf8))
            #expect(head.status == 200)
            var reader = SSEReader()
            let events = reader.feed(body)
            let streamed = try events.map { try #require(try jsonObject(Array($0.utf8))["text_output"] as? String) }.joined()
            let (_, plain) = try await c.request("POST", "/v2/models/ensemble/generate", body: Array(curlBody.utf8))
            #expect(streamed == (try jsonObject(plain)["text_output"] as? String))
            #expect(events.count == llmPieces.count)
        }
    }

    @Test func streamErrors() async throws {
        try await withServer { _, port in
            // An error after output: the status is already 200; the error comes as an event.
            let c = try RawHTTPConnection(port: port)
            defer { c.hangUp() }
            let (head, body) = try await c.request("POST", "/v2/models/failing/generate_stream", body: Array(#"{"text_input": "x"}"#.utf8))
            #expect(head.status == 200)
            var reader = SSEReader()
            let events = reader.feed(body)
            #expect(events.count == 2)
            #expect(try jsonObject(Array(events[0].utf8))["text_output"] as? String == "partial")
            #expect(try jsonObject(Array(events[1].utf8))["error"] as? String == "model 'failing' exploded mid-stream")

            // Errors before any response: a plain JSON error with its status.
            let d = try RawHTTPConnection(port: port)
            defer { d.hangUp() }
            let (badHead, badBody) = try await d.request("POST", "/v2/models/ensemble/generate_stream",
                                                         body: Array(#"{"text_input": "x", "max_tokens": 0}"#.utf8))
            #expect(badHead.status == 400)
            #expect(badHead.headers["content-type"] == "application/json")
            #expect(try jsonObject(badBody)["error"] as? String == "max_tokens must be positive")
            let (unknownHead, _) = try await d.request("POST", "/v2/models/nope/generate_stream", body: Array("{}".utf8))
            #expect(unknownHead.status == 404)
        }
    }

    @Test func clientHangingUpCancelsTheStream() async throws {
        let probe = FakeProbe()
        try await withServer(FakeService(probe: probe)) { _, port in
            let c = try RawHTTPConnection(port: port)
            let body = Array(#"{"id": "bye", "text_input": "x"}"#.utf8)
            try await c.write(Array("POST /v2/models/slow/generate_stream HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
            let head = try await c.readHead()
            #expect(head.status == 200)
            var reader = SSEReader()
            var events: [String] = []
            while events.isEmpty { events = reader.feed(try #require(try await c.readChunk())) }
            #expect(probe.cancelled.isEmpty)
            c.hangUp()
            #expect(await probe.wait { $0.cancelled.contains("bye") }, "the slow model was not cancelled")
        }
    }

    @Test func clientHangingUpCancelsANonStreamingRequest() async throws {
        let probe = FakeProbe()
        try await withServer(FakeService(probe: probe)) { _, port in
            let c = try RawHTTPConnection(port: port)
            let body = Array(#"{"id": "gone", "text_input": "x"}"#.utf8)
            try await c.write(Array("POST /v2/models/slow/generate HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
            #expect(await probe.wait { $0.started.contains("gone") })
            c.hangUp()
            #expect(await probe.wait { $0.cancelled.contains("gone") }, "the slow request was not cancelled")
        }
    }
}
