// Text generation for the OpenAI routes, in-process over the tiny Llama repository: greedy text
// equal to the ensemble's, every text model, choices and seeds, log probs, stop strings held
// back and cut on the text, errors, cancellation; and the pure pieces (ChoiceDecoder, TokenSpelling).
import CPUCompute
import Engine
import Foundation
import Runtime
@testable import Serving
import TestFixtures
import Testing
import Tokenization

@Suite struct TextGenerationTests {
    static let tokenizer = LLMRepositoryTests.bundle.tokenizer

    /// Every delta of a generation, and the per-choice text, token counts and finish reasons.
    struct Collected {
        var deltas: [TextDelta] = []
        var texts: [String] = []
        var tokenCounts: [Int] = []
        var reasons: [String?] = []
        var tokens: [[GeneratedToken]] = []
    }

    static func collect(_ g: TextGeneration, choices: Int) async throws -> Collected {
        var c = Collected(texts: Array(repeating: "", count: choices), tokenCounts: Array(repeating: 0, count: choices),
                          reasons: Array(repeating: nil, count: choices), tokens: Array(repeating: [], count: choices))
        for try await d in g.deltas {
            #expect(c.reasons[d.choice] == nil, "a delta after choice \(d.choice) finished")
            c.deltas.append(d)
            c.texts[d.choice] += d.text
            c.tokenCounts[d.choice] += d.tokenCount
            c.tokens[d.choice] += d.tokens
            c.reasons[d.choice] = d.finishReason
        }
        return c
    }

    @Test func greedyTextEqualsTheEnsemblesForEveryTextModel() async throws {
        let server = try await startServer(try tinyRepository())
        #expect(server.textModels().map(\.name) == ["ensemble", "tensorrt_llm", "tensorrt_llm_bls"])
        #expect(server.textModels().allSatisfy { $0.contextLength == 256 && $0.created > 0 })
        let prompt = "Once upon a time"
        let ensemble = try await server.infer(ensembleRequest(prompt, maxTokens: 12))
        for model in ["ensemble", "tensorrt_llm_bls", "tensorrt_llm"] {
            let g = try server.generateText(TextGenerationRequest(model: model, prompts: [.text(prompt)], maxTokens: 12, temperature: 0))
            #expect(g.promptTokenCounts == [Self.tokenizer.encode(prompt).count])
            #expect(g.promptTexts == [prompt])
            let c = try await Self.collect(g, choices: 1)
            #expect(c.texts == [ensemble.text("text_output")!], "\(model)")
            #expect(c.tokenCounts == [12] && c.reasons == ["length"])
            #expect(c.deltas.count > 1, "one delta per engine step")
        }
        // The same prompt as token ids.
        let ids = Self.tokenizer.encode(prompt)
        let byIDs = try await Self.collect(try server.generateText(TextGenerationRequest(model: "ensemble", prompts: [.tokenIDs(ids)],
                                                                                         maxTokens: 12, temperature: 0)), choices: 1)
        #expect(byIDs.texts == [ensemble.text("text_output")!])
        // Statistics count the request on the model named.
        #expect(try server.modelStatistics("tensorrt_llm_bls", version: "").first?.success.count == 1)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func chatUsesTheTemplateAndItsTokens() async throws {
        let server = try await startServer(try tinyRepository())
        let turns = [ChatTurn(role: "user", content: "What is 2+2?")]
        let g = try server.generateText(TextGenerationRequest(model: "ensemble", prompts: [.chat(turns)], maxTokens: 4, temperature: 0))
        let rendered = try server.renderChat(model: "ensemble", messages: turns, addGenerationPrompt: true)
        #expect(g.promptTexts == [rendered])
        // The template writes <s>: nothing more is added.
        #expect(g.promptTokenCounts == [Self.tokenizer.encode(rendered, addSpecialTokens: false).count])
        _ = try await Self.collect(g, choices: 1)
        let e = await servingError {
            _ = try server.generateText(TextGenerationRequest(model: "ensemble", prompts: [.chat([ChatTurn(role: "user", content: "a"),
                                                                                                  ChatTurn(role: "user", content: "b")])]))
        }
        #expect(e?.status == .badRequest && e?.message.contains("chat template") == true, "\(String(describing: e))")
        await server.shutdown(gracePeriod: 1)
    }

    @Test func choicesSeedsAndLogProbs() async throws {
        let server = try await startServer(try tinyRepository())
        let request = TextGenerationRequest(model: "ensemble", prompts: [.text("Hello"), .text("Bye")], choicesPerPrompt: 2, maxTokens: 10,
                                            temperature: 0.9, topP: 0.95, seed: 42, logProbs: true, topLogProbs: 3)
        let a = try await Self.collect(try server.generateText(request), choices: 4)
        let b = try await Self.collect(try server.generateText(request), choices: 4)
        #expect(a.texts == b.texts, "the same seed gives the same text")
        #expect(a.texts[0] != a.texts[1], "choices of one prompt draw differently")
        var other = request
        other.seed = 7
        #expect(try await Self.collect(try server.generateText(other), choices: 4).texts != a.texts)
        for k in 0..<4 {
            #expect(a.tokens[k].count == a.tokenCounts[k])
            #expect(a.tokens[k].allSatisfy { $0.logProb <= 0 && $0.top.count == 3 })
            #expect(a.tokens[k].allSatisfy { t in zip(t.top, t.top.dropFirst()).allSatisfy { $0.logProb >= $1.logProb } })
            #expect(a.tokens[k].map(\.textOffset) == a.tokens[k].map(\.textOffset).sorted())
        }
        // Greedy: the chosen token is the most likely one.
        let greedy = try await Self.collect(try server.generateText(TextGenerationRequest(model: "ensemble", prompts: [.text("Hello")], maxTokens: 6,
                                                                                          temperature: 0, logProbs: true, topLogProbs: 2)), choices: 1)
        #expect(greedy.tokens[0].allSatisfy { $0.top.first?.token == $0.token && abs(($0.top.first?.logProb ?? 1) - $0.logProb) < 1e-6 })
        await server.shutdown(gracePeriod: 1)
    }

    @Test func stopStringsCutTheTextAndEndTheRequest() async throws {
        let server = try await startServer(try tinyRepository())
        let base = TextGenerationRequest(model: "ensemble", prompts: [.text("Once upon a time")], maxTokens: 20, temperature: 0)
        let full = try await Self.collect(try server.generateText(base), choices: 1).texts[0]
        let scalars = Array(full.unicodeScalars)
        #expect(scalars.count > 8)
        let stop = String(String.UnicodeScalarView(scalars[5..<8]))
        var request = base
        request.stop = ["never seen", stop]
        let c = try await Self.collect(try server.generateText(request), choices: 1)
        let cut = String(full[..<full.range(of: stop)!.lowerBound])
        #expect(c.texts == [cut])
        #expect(c.reasons == ["stop"] && c.tokenCounts[0] < 20)
        // The engine request ended as stopped and freed its blocks.
        var llm = LLMMetrics()
        for _ in 0..<200 {
            llm = server.metricsSnapshot().models.first { $0.name == "tensorrt_llm" }!.llm!
            if llm.activeRequests == 0 { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        #expect(llm.activeRequests == 0 && llm.kvBlocksUsed == 0)
        #expect(llm.finishedRequests["stop"] == 1)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func badRequestsAndUnknownModels() async throws {
        let server = try await startServer(try tinyRepository())
        let ok = TextGenerationRequest(model: "ensemble", prompts: [.text("x")], maxTokens: 2)
        var cases: [(TextGenerationRequest, ServingError.Status, String)] = []
        func with(_ change: (inout TextGenerationRequest) -> Void, _ status: ServingError.Status = .badRequest, _ fragment: String) {
            var r = ok
            change(&r)
            cases.append((r, status, fragment))
        }
        with({ $0.model = "nope" }, .notFound, "unknown model")
        with({ $0.model = "preprocessing" }, .notFound, "does not generate text")
        with({ $0.maxTokens = 300 }, .badRequest, "maximum context length is 256")
        with({ $0.prompts = [.text(String(repeating: "word ", count: 400))] }, .badRequest, "maximum context length")
        with({ $0.temperature = -1 }, .badRequest, "temperature")
        with({ $0.topP = 2 }, .badRequest, "top_p")
        with({ $0.choicesPerPrompt = 0 }, .badRequest, "n must be")
        with({ $0.prompts = [] }, .badRequest, "prompt")
        with({ $0.prompts = [.tokenIDs([1, 9999])] }, .badRequest, "vocabulary")
        with({ $0.topLogProbs = 50 }, .badRequest, "top_logprobs")
        for (r, status, fragment) in cases {
            let e = await servingError { _ = try server.generateText(r) }
            #expect(e?.status == status && e?.message.contains(fragment) == true, "\(fragment): \(String(describing: e))")
        }
        // No limit: up to the context length.
        let g = try server.generateText(TextGenerationRequest(model: "tensorrt_llm", prompts: [.tokenIDs([1, 5, 6])], maxTokens: nil, temperature: 0))
        let c = try await Self.collect(g, choices: 1)
        #expect(c.reasons[0] == "stop" || c.tokenCounts[0] == 256 - 3)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func droppingTheStreamCancelsEveryChoice() async throws {
        let server = try await startServer(try tinyRepository())
        // The generation lives only in the reader, which stops after three deltas.
        let reader = Task {
            let g = try server.generateText(TextGenerationRequest(model: "ensemble", prompts: [.tokenIDs([1, 5, 6])], choicesPerPrompt: 3,
                                                                  maxTokens: 200, temperature: 1, seed: 1))
            var n = 0
            for try await _ in g.deltas {
                n += 1
                if n == 3 { break }
            }
        }
        try await reader.value
        var llm = LLMMetrics()
        for _ in 0..<300 {
            llm = server.metricsSnapshot().models.first { $0.name == "tensorrt_llm" }!.llm!
            if llm.activeRequests == 0 && llm.kvBlocksUsed == 0 { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        #expect(llm.activeRequests == 0 && llm.kvBlocksUsed == 0)
        await server.shutdown(gracePeriod: 1)
    }

    // MARK: pure pieces

    /// The decoder fed token by token over "Hello world, hello moon".
    func decode(_ text: String, stops: [String], finalReason: FinishReason = .length) -> (deltas: [TextDelta], finished: Bool) {
        let ids = Self.tokenizer.encode(text, addSpecialTokens: false)
        var d = ChoiceDecoder(choice: 0, detokenizer: Self.tokenizer.makeDetokenizer(skipSpecialTokens: true),
                              stops: stops.map { Array($0.utf8) }, spelling: TokenSpelling(tokenizer: Self.tokenizer))
        var deltas: [TextDelta] = []
        for (k, id) in ids.enumerated() where !d.finished {
            let last = k == ids.count - 1
            deltas.append(d.take(RequestOutput(requestID: "r", newTokenIDs: [id], logProbs: [-1], finishReason: last ? finalReason : nil)))
        }
        return (deltas, d.finished)
    }

    @Test func choiceDecoderWithoutStopsSendsTheWholeText() {
        let text = "Hello world, hello moon"
        let (deltas, finished) = decode(text, stops: [])
        #expect(finished)
        #expect(deltas.map(\.text).joined() == Self.tokenizer.decode(Self.tokenizer.encode(text, addSpecialTokens: false)))
        #expect(deltas.last?.finishReason == "length")
        #expect(deltas.allSatisfy { $0.tokenCount == 1 && $0.tokens.count == 1 })
        // Text offsets point at each token's text.
        let whole = Array(deltas.map(\.text).joined().unicodeScalars)
        for d in deltas where !d.text.isEmpty {
            let t = d.tokens[0]
            #expect(String(String.UnicodeScalarView(whole[t.textOffset..<(t.textOffset + d.text.unicodeScalars.count)])) == d.text)
        }
    }

    @Test func choiceDecoderHoldsBackAndCutsAStop() {
        let text = "Hello world, hello moon"
        let (deltas, finished) = decode(text, stops: ["lo mo", "zzz"])
        #expect(finished)
        #expect(deltas.map(\.text).joined() == "Hello world, hel")
        #expect(deltas.last?.finishReason == "stop")
        // "lo" was held back while it could begin the stop: no delta ever showed it.
        #expect(!deltas.contains { $0.text.contains("lo m") })
        // A stop that never completes is released at the end.
        let (open, _) = decode(text, stops: ["moonlight"])
        #expect(open.map(\.text).joined() == "Hello world, hello moon")
        #expect(open.last?.finishReason == "length")
        // The engine's own stop keeps its reason.
        let (eos, _) = decode(text, stops: [], finalReason: .stop)
        #expect(eos.last?.finishReason == "stop")
        // A stop at the very start gives no text.
        #expect(decode(text, stops: ["Hel"]).deltas.map(\.text).joined() == "")
    }

    @Test func matchingHelpers() {
        let s = { (x: String) in Array(x.utf8) }
        #expect(ChoiceDecoder.firstMatch(of: [s("b"), s("cd")], in: s("abcd")) == 1)
        #expect(ChoiceDecoder.firstMatch(of: [s("cd"), s("b")], in: s("abcd")) == 1)
        #expect(ChoiceDecoder.firstMatch(of: [s("x")], in: s("abcd")) == nil)
        #expect(ChoiceDecoder.pendingStopPrefix(of: [s("cde")], in: s("abcd")) == 2)
        #expect(ChoiceDecoder.pendingStopPrefix(of: [s("dz"), s("cdy")], in: s("abcd")) == 2)
        #expect(ChoiceDecoder.pendingStopPrefix(of: [s("q")], in: s("abcd")) == 0)
    }

    @Test func tokenSpellingGivesEachTokensBytes() throws {
        // SentencePiece with byte fallback: "▁" is a space, <0xNN> is one byte.
        let sp = TokenSpelling(tokenizer: Self.tokenizer)
        let text = "naïve 数据"
        let ids = Self.tokenizer.encode(text, addSpecialTokens: false)
        #expect(ids.flatMap { sp.bytes(of: $0) } == Array((" " + text).utf8))   // the normalizer's "▁" comes first
        #expect(sp.text(of: 1).text == "<s>")
        // Byte-level BPE: GPT-2's byte-to-character table read backwards.
        let bl = try Tokenizer(tokenizerJSONAt: Fixtures.path("bytelevel/tokenizer.json"))
        let bytes = TokenSpelling(tokenizer: bl)
        let sample = " héllo wörld 🙂\n\tend"
        let blIDs = bl.encode(sample, addSpecialTokens: false)
        #expect(blIDs.flatMap { bytes.bytes(of: $0) } == Array(sample.utf8))
        #expect(TokenSpelling.byteOfCharacter.count == 256)
        #expect(TokenSpelling.byteOfCharacter[0x120] == 0x20)    // "Ġ" is the space
        #expect(TokenSpelling.byteOfCharacter[0x10A] == 0x0A)    // "Ċ" is the newline
    }
}
