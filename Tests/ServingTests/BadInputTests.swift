// Bad requests get Triton's status and a message naming the input; none of them crashes the
// server or disturbs other requests. One test runs the real default model (SmolLM2).
import Foundation
import Serving
import Testing

@Suite struct BadInputTests {
    @Test func badRequestsGetTheRightStatusAndNameTheInput() async throws {
        let server = try await startServer(try tinyRepository())
        // A request in flight the whole time must come through untouched.
        let bystander = Task { try await server.infer(ensembleRequest("bystander", maxTokens: 40, extra: [int32("end_id", [-1])])) }

        func expectError(_ request: InferRequest, _ status: ServingError.Status, naming: String, _ line: Int = #line) async {
            let e = await servingError { _ = try await server.infer(request) }
            #expect(e?.status == status, "line \(line): \(String(describing: e))")
            #expect(e?.message.contains(naming) == true, "line \(line): \(e?.message ?? "no error")")
        }
        await expectError(InferRequest(modelName: "nope", inputs: []), .notFound, naming: "nope")
        await expectError(InferRequest(modelName: "ensemble", modelVersion: "7", inputs: []), .notFound, naming: "7")
        await expectError(InferRequest(modelName: "ensemble", inputs: [int32("max_tokens", [4])]), .badRequest, naming: "'text_input'")
        await expectError(InferRequest(modelName: "ensemble", inputs: [text("text_input", "x"), fp32("max_tokens", 4)]), .badRequest, naming: "'max_tokens'")
        await expectError(InferRequest(modelName: "ensemble", inputs: [
            text("text_input", "x"), InferTensor(name: "max_tokens", datatype: .int32, shape: [1, 2, 2], data: .ints([1, 2, 3, 4])),
        ]), .badRequest, naming: "'max_tokens'")
        await expectError(InferRequest(modelName: "ensemble", inputs: [
            text("text_input", "x"), InferTensor(name: "max_tokens", datatype: .int32, shape: [1, 1], data: .ints([1, 2])),
        ]), .badRequest, naming: "'max_tokens'")
        await expectError(ensembleRequest("x", maxTokens: -5), .badRequest, naming: "'max_tokens' must be >= 1")
        await expectError(ensembleRequest("x", maxTokens: 0), .badRequest, naming: "'max_tokens'")
        await expectError(ensembleRequest("x", maxTokens: 4, extra: [fp32("temperature", -1), int32("top_k", [5])]), .badRequest, naming: "'temperature'")
        await expectError(ensembleRequest("x", maxTokens: 4, extra: [fp32("top_p", 2)]), .badRequest, naming: "'top_p'")
        await expectError(ensembleRequest("x", maxTokens: 4, extra: [int32("top_k", [-3])]), .badRequest, naming: "'top_k'")
        await expectError(ensembleRequest("x", maxTokens: 4, extra: [fp32("repetition_penalty", 0)]), .badRequest, naming: "'repetition_penalty'")
        await expectError(ensembleRequest("x", maxTokens: 4, extra: [int32("min_tokens", [9])]), .badRequest, naming: "'min_tokens'")
        await expectError(ensembleRequest("x", maxTokens: 4, extra: [int32("beam_width", [4])]), .badRequest, naming: "'beam_width'")
        await expectError(ensembleRequest("x", maxTokens: 4, extra: [int32("unknown_input", [1])]), .badRequest, naming: "'unknown_input'")
        await expectError(ensembleRequest("x", maxTokens: 4, model: "tensorrt_llm_bls").with(fp32("temperature", .nan)), .badRequest, naming: "'temperature'")
        await expectError(InferRequest(modelName: "tensorrt_llm", inputs: [
            int32("input_ids", [1, 600]), int32("input_lengths", [2]), int32("request_output_len", [2]),
        ]), .badRequest, naming: "vocabulary")
        await expectError(InferRequest(modelName: "tensorrt_llm", inputs: [
            int32("input_ids", [1, 5]), int32("input_lengths", [3]), int32("request_output_len", [2]),
        ]), .badRequest, naming: "'input_lengths'")
        await expectError(InferRequest(modelName: "tensorrt_llm", inputs: [
            int32("input_ids", [1, 5]), int32("input_lengths", [2]), int32("request_output_len", [2]),
            InferTensor(name: "stop_words_list", datatype: .int32, shape: [1, 2, 2], data: .ints([5, 6, 3, -1])),
        ]), .badRequest, naming: "'stop_words_list'")
        await expectError(InferRequest(modelName: "ensemble", inputs: [text("text_input", "x"), int32("max_tokens", [2])], requestedOutputs: ["nope"]),
                          .badRequest, naming: "'nope'")
        let answer = try await bystander.value
        #expect(answer.text("text_output")?.isEmpty == false)
        #expect(server.isReady())
        await server.shutdown(gracePeriod: 1)
    }

    @Test func requestedOutputsAndParameters() async throws {
        let server = try await startServer(try tinyRepository())
        let r = try await server.infer(InferRequest(modelName: "ensemble", id: "abc", inputs: [text("text_input", "hi"), int32("max_tokens", [3])],
                                                    requestedOutputs: ["text_output"]))
        #expect(r.outputs.map(\.name) == ["text_output"])
        #expect(r.id == "abc")
        #expect(r.parameters["completion_tokens"] != nil)
        // generate-style tensors without the batch dimension are taken as batch 1.
        let flat = try await server.infer(InferRequest(modelName: "ensemble", inputs: [
            InferTensor(name: "text_input", datatype: .bytes, shape: [1], data: .bytes([Data("hi".utf8)])),
            InferTensor(name: "max_tokens", datatype: .int32, shape: [1], data: .ints([3])),
            InferTensor(name: "bad_words", datatype: .bytes, shape: [1], data: .bytes([Data()])),
            InferTensor(name: "stop_words", datatype: .bytes, shape: [1], data: .bytes([Data()])),
        ]))
        #expect(flat.text("text_output") == r.text("text_output"))
        await server.shutdown(gracePeriod: 1)
    }

    /// The real default model: the streamed text, multi-byte characters included, joins to the
    /// non-streamed text, through the ensemble and the BLS route.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: Fixtures.smolLM2)))
    func smolLM2StreamsUTF8SafeText() async throws {
        let repo = try temporaryDirectory()
        var options = RepositoryTemplateOptions()
        options.maxTokensInPagedKVCache = 4096
        try RepositoryTemplate.write(modelPath: Fixtures.smolLM2, outputDirectory: repo, options: options)
        let server = try await startServer(repo)
        #expect(server.isReady())
        let prompt = "<|im_start|>user\nWrite three emoji and the word café in French.<|im_end|>\n<|im_start|>assistant\n"
        for model in ["ensemble", "tensorrt_llm_bls"] {
            let whole = try await server.infer(ensembleRequest(prompt, maxTokens: 24, model: model))
            let text = try #require(whole.text("text_output"))
            // Greedy SmolLM2 answers "Café is a French word…": multi-byte text went through the stream.
            #expect(text.unicodeScalars.contains { !$0.isASCII }, "\(text)")
            #expect(!text.isEmpty)
            let chunks = try await collect(try server.inferStream(ensembleRequest(prompt, maxTokens: 24, stream: true, model: model)))
            let joined = chunks.compactMap { $0.text("text_output") }.joined()
            #expect(joined == text, "\(model)")
            #expect(!joined.contains("\u{FFFD}") || text.contains("\u{FFFD}"))
            #expect(chunks.last?.isFinal == true)
        }
        await server.shutdown(gracePeriod: 1)
    }
}

extension InferRequest {
    func with(_ tensor: InferTensor) -> InferRequest {
        var r = self
        r.inputs.append(tensor)
        return r
    }
}

@Suite struct CancellationTests {
    /// SmolLM2 is slow enough on the CPU that a cancel after 3 chunks lands long before 400 tokens.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: Fixtures.smolLM2)))
    func droppingAStreamCancelsTheEngineRequest() async throws {
        let repo = try temporaryDirectory()
        var options = RepositoryTemplateOptions()
        options.maxTokensInPagedKVCache = 4096
        try RepositoryTemplate.write(modelPath: Fixtures.smolLM2, outputDirectory: repo, options: options)
        let server = try await startServer(repo) { $0.startupModels = [] }
        for (index, model) in ["ensemble", "tensorrt_llm_bls"].enumerated() {
            let stream = try server.inferStream(ensembleRequest("Count from one to one thousand:", maxTokens: 400, stream: true,
                                                                extra: [int32("end_id", [-1])], model: model))
            try await readThenCancel(stream, after: 3)
            var llm = LLMMetrics()
            for _ in 0..<500 {
                llm = server.metricsSnapshot().models.first { $0.name == "tensorrt_llm" }!.llm!
                // The cancel is counted once the engine has finished the request, which can come a
                // moment after its blocks are freed: wait for both.
                if llm.activeRequests == 0 && llm.kvBlocksUsed == 0 && llm.waitingRequests == 0
                    && llm.finishedRequests["cancelled", default: 0] > UInt64(index) { break }
                try await Task.sleep(nanoseconds: 10_000_000)
            }
            #expect(llm.activeRequests == 0 && llm.kvBlocksUsed == 0, "\(model)")
            #expect(llm.finishedRequests["cancelled"] != nil, "\(model): \(llm.finishedRequests)")
            #expect(llm.generatedTokensTotal < 100, "\(model): \(llm.generatedTokensTotal)")
        }
        #expect(server.metricsSnapshot().models.first { $0.name == "tensorrt_llm" }!.llm!.finishedRequests["cancelled"] == 2)
        await server.shutdown(gracePeriod: 1)
    }
}
