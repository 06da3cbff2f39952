// The inflight_batcher_llm repository written by RepositoryTemplate, served in-process over the
// tiny Llama: every model loads, and each route agrees with the tokenizer and with greedy generation
// of the request alone (ModelRunner.generate).
import CPUCompute
import Engine
import Foundation
import Runtime
@testable import Serving
import TestFixtures
import Testing
import Tokenization
import TritonProtos

@Suite struct LLMRepositoryTests {
    static let bundle = try! ModelBundle(path: Fixtures.tinyLlama, backend: CPUBackend())

    /// Greedy ids from one request alone on an Engine of its own (no stop ids).
    static func greedy(_ prompt: [Int32], _ count: Int) async throws -> [Int32] {
        var ids: [Int32] = []
        _ = try await ModelRunner.generate(bundle.model, prompt: prompt, maxTokens: count) { ids += $0 }
        return ids
    }

    @Test func templateRepositoryLoadsAndParses() async throws {
        let repo = try tinyRepository()
        for name in RepositoryTemplate.modelNames {
            let path = "\(repo)/\(name)/config.pbtxt"
            let config = try decodeModelConfig(text: String(contentsOfFile: path, encoding: .utf8), path: path)
            #expect(config.name == name)
            #expect(FileManager.default.fileExists(atPath: "\(repo)/\(name)/1"))
        }
        let server = try await startServer(repo)
        #expect(server.isReady())
        let index = server.repositoryIndex(readyOnly: false)
        #expect(index.map(\.name) == ["ensemble", "postprocessing", "preprocessing", "tensorrt_llm", "tensorrt_llm_bls"])
        #expect(index.allSatisfy { $0.state == "READY" && $0.version == "1" }, "\(index)")
        let ensemble = try server.modelMetadata("ensemble", version: "")
        #expect(ensemble.platform == "ensemble")
        let inputs = Set(ensemble.inputs.map(\.name))
        for name in ["text_input", "max_tokens", "bad_words", "stop_words", "end_id", "pad_id", "top_k", "top_p", "temperature",
                     "length_penalty", "repetition_penalty", "min_tokens", "presence_penalty", "frequency_penalty", "seed",
                     "return_log_probs", "beam_width", "stream"] {
            #expect(inputs.contains(name), "ensemble input \(name)")
        }
        #expect(Set(ensemble.outputs.map(\.name)).isSuperset(of: ["text_output", "cum_log_probs", "output_log_probs"]))
        #expect(ensemble.inputs.first { $0.name == "text_input" } == TensorMetadata(name: "text_input", datatype: .bytes, shape: [-1, 1]))
        let generate = try server.inputsForGenerate("ensemble", version: "")
        #expect(generate.first { $0.name == "max_tokens" }?.datatype == .int32)
        #expect(try server.modelConfig("tensorrt_llm", version: "1").modelTransactionPolicy.decoupled)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func preprocessingEqualsTheTokenizer() async throws {
        let server = try await startServer(try tinyRepository())
        let prompt = "The quick brown fox jumps over the lazy dog"
        let response = try await server.infer(InferRequest(modelName: "preprocessing", inputs: [
            text("QUERY", prompt), int32("REQUEST_OUTPUT_LEN", [7]), texts("STOP_WORDS_DICT", ["fox", "lazy dog"]),
        ]))
        let want = Self.bundle.tokenizer.encode(prompt, addSpecialTokens: true)
        #expect(response.ints("INPUT_ID") == want.map(Int64.init))
        #expect(response.output("INPUT_ID")?.shape == [1, want.count])
        #expect(response.ints("REQUEST_INPUT_LEN") == [Int64(want.count)])
        #expect(response.ints("REQUEST_OUTPUT_LEN") == [7])
        #expect(response.ints("OUT_END_ID") == [2])
        // TRT-LLM's [2, n] layout: flat ids, then cumulative end offsets padded with -1.
        let fox = Self.bundle.tokenizer.encode("fox", addSpecialTokens: false).map(Int64.init)
        let lazy = Self.bundle.tokenizer.encode("lazy dog", addSpecialTokens: false).map(Int64.init)
        let n = fox.count + lazy.count
        #expect(response.output("STOP_WORDS_IDS")?.shape == [1, 2, n])
        #expect(response.ints("STOP_WORDS_IDS") == fox + lazy + [Int64(fox.count), Int64(n)] + Array(repeating: -1, count: n - 2))
        #expect(response.ints("BAD_WORDS_IDS") == [0, -1])
        await server.shutdown(gracePeriod: 1)
    }

    @Test func tensorrtLLMEqualsGreedyAlone() async throws {
        let server = try await startServer(try tinyRepository())
        let prompt: [Int32] = [1, 67, 200, 31, 400, 12]
        let response = try await server.infer(InferRequest(modelName: "tensorrt_llm", inputs: [
            int32("input_ids", prompt.map(Int.init)), int32("input_lengths", [prompt.count]),
            int32("request_output_len", [12]), int32("end_id", [-1]),
        ]))
        let want = try await Self.greedy(prompt, 12)
        #expect(response.ints("output_ids") == want.map(Int64.init))
        #expect(response.output("output_ids")?.shape == [1, 1, 12])
        #expect(response.ints("sequence_length") == [12])
        #expect(response.parameters["finish_reason"] == .string("length"))

        // exclude_input_in_output false: the prompt comes first, as TensorRT-LLM returns it.
        let whole = try await server.infer(InferRequest(modelName: "tensorrt_llm", inputs: [
            int32("input_ids", prompt.map(Int.init)), int32("input_lengths", [prompt.count]),
            int32("request_output_len", [12]), int32("end_id", [-1]), bool("exclude_input_in_output", false),
        ]))
        #expect(whole.ints("output_ids") == (prompt + want).map(Int64.init))
        await server.shutdown(gracePeriod: 1)
    }

    @Test func ensembleAndBLSGiveTheGreedyText() async throws {
        let server = try await startServer(try tinyRepository())
        let prompt = "Once upon a time"
        let ids = Self.bundle.tokenizer.encode(prompt, addSpecialTokens: true)
        let want = Self.bundle.tokenizer.decode(try await Self.greedy(ids, 16), skipSpecialTokens: true)
        let noEnd = [int32("end_id", [-1])]
        let ensemble = try await server.infer(ensembleRequest(prompt, maxTokens: 16, extra: noEnd))
        #expect(ensemble.text("text_output") == want)
        #expect(ensemble.modelName == "ensemble")
        #expect(ensemble.output("cum_log_probs") != nil)
        let bls = try await server.infer(ensembleRequest(prompt, maxTokens: 16, extra: noEnd, model: "tensorrt_llm_bls"))
        #expect(bls.text("text_output") == want)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func streamedEnsembleChunksJoinToTheText() async throws {
        let server = try await startServer(try tinyRepository())
        for model in ["ensemble", "tensorrt_llm_bls"] {
            let whole = try await server.infer(ensembleRequest("Hello there", maxTokens: 20, extra: [int32("end_id", [-1])], model: model))
            let chunks = try await collect(try server.inferStream(ensembleRequest("Hello there", maxTokens: 20, stream: true,
                                                                                   extra: [int32("end_id", [-1])], model: model)))
            #expect(chunks.count >= 10, "\(model): one response per step, got \(chunks.count)")
            #expect(chunks.last?.isFinal == true)
            #expect(chunks.dropLast().allSatisfy { !$0.isFinal })
            #expect(chunks.compactMap { $0.text("text_output") }.joined() == whole.text("text_output"), "\(model)")
        }
        // infer() on the decoupled ensemble with stream = true answers once (streaming is off there).
        let once = try await server.infer(ensembleRequest("Hello there", maxTokens: 5, stream: true))
        #expect(once.isFinal)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func thirtyTwoConcurrentEnsembleRequestsEqualSequential() async throws {
        let server = try await startServer(try tinyRepository())
        let prompts = (0..<32).map { "Request number \($0) says \(String(repeating: "la ", count: $0 % 5))" }
        var sequential: [String] = []
        for p in prompts {
            sequential.append(try await server.infer(ensembleRequest(p, maxTokens: 8, extra: [int32("end_id", [-1])])).text("text_output") ?? "")
        }
        let concurrent = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (i, p) in prompts.enumerated() {
                group.addTask {
                    (i, try await server.infer(ensembleRequest(p, maxTokens: 8, extra: [int32("end_id", [-1])])).text("text_output") ?? "")
                }
            }
            var out = Array(repeating: "", count: prompts.count)
            for try await (i, t) in group { out[i] = t }
            return out
        }
        #expect(concurrent == sequential)
        let stats = try server.modelStatistics("ensemble", version: "")
        #expect(stats.first?.success.count == 64)
        let llm = try server.modelStatistics("tensorrt_llm", version: "1").first!
        #expect(llm.success.count == 64)
        #expect(llm.inferenceCount == 64)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func statisticsAndMetricsMove() async throws {
        let server = try await startServer(try tinyRepository())
        let before = server.metricsSnapshot()
        #expect(before.models.map(\.name) == ["ensemble", "postprocessing", "preprocessing", "tensorrt_llm", "tensorrt_llm_bls"])
        _ = try await collect(try server.inferStream(ensembleRequest("stats", maxTokens: 6, stream: true, extra: [int32("end_id", [-1])])))
        _ = try? await server.infer(ensembleRequest("bad", maxTokens: -1))
        let after = server.metricsSnapshot()
        let ensemble = after.models.first { $0.name == "ensemble" }!
        #expect(ensemble.statistics.success.count == 1)
        #expect(ensemble.statistics.fail.count == 1)
        #expect(ensemble.statistics.lastInference > 0)
        #expect(ensemble.firstResponseMilliseconds.count == 1)
        // Triton's ensemble scheduler counts a successful request as one execution of its batch size.
        #expect(ensemble.statistics.executionCount == 1)
        #expect(ensemble.statistics.inferenceCount == 1)
        _ = try await server.infer(InferRequest(modelName: "tensorrt_llm_bls", inputs: [text("text_input", "bls"), int32("max_tokens", [2]), int32("end_id", [-1])]))
        let bls = server.metricsSnapshot().models.first { $0.name == "tensorrt_llm_bls" }!.statistics
        #expect(bls.success.count == 1 && bls.executionCount == 1 && bls.inferenceCount == 1)
        let post = after.models.first { $0.name == "postprocessing" }!
        #expect(post.statistics.success.count == 6, "one postprocessing request per streamed token")
        #expect(post.statistics.executionCount >= 1)
        #expect(post.statistics.computeInfer.count == 6)
        #expect(post.statistics.queue.count == 6)
        let llm = try #require(after.models.first { $0.name == "tensorrt_llm" }?.llm)
        #expect(llm.generatedTokensTotal == 6)
        #expect(llm.promptTokensTotal > 0)
        #expect(llm.timeToFirstTokenSeconds.count == 1)
        #expect(llm.interTokenLatencySeconds.count == 5)
        #expect(llm.kvBlocksTotal == 8192 / 32)
        #expect(llm.kvBlocksUsed == 0 && llm.activeRequests == 0)
        #expect(llm.finishedRequests["length"] == 1)
        #expect(llm.maxRequests == 64)
        let stats = try server.modelStatistics("", version: "")
        #expect(stats.count == 5)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func cancellingAStreamCancelsTheRequestAndFreesItsBlocks() async throws {
        let server = try await startServer(try tinyRepository())
        let stream = try server.inferStream(ensembleRequest("cancel me", maxTokens: 200, stream: true, extra: [int32("end_id", [-1])]))
        try await readThenCancel(stream, after: 3)
        var llm = LLMMetrics()
        for _ in 0..<200 {
            llm = server.metricsSnapshot().models.first { $0.name == "tensorrt_llm" }!.llm!
            if llm.activeRequests == 0 && llm.kvBlocksUsed == 0 { break }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        // The tiny model may finish all 200 tokens before the cancel lands; either way nothing leaks.
        #expect(llm.activeRequests == 0)
        #expect(llm.kvBlocksUsed == 0)
        // Nor does postprocessing keep the cancelled stream's detokenizer.
        let post = try server.lease("postprocessing", version: "")
        defer { post.release() }
        let streams = try #require(((post.model as? BatchedModel)?.backend as? PostprocessingBackend)?.streams)
        for _ in 0..<200 where streams.count > 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        #expect(streams.count == 0)
        // The server still serves.
        #expect(try await server.infer(ensembleRequest("after", maxTokens: 3)).text("text_output") != nil)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func stopWordsEndTheText() async throws {
        let server = try await startServer(try tinyRepository())
        let prompt = "Once upon a time"
        let full = try await server.infer(ensembleRequest(prompt, maxTokens: 16, extra: [int32("end_id", [-1])]))
        let ids = try #require(try await server.infer(InferRequest(modelName: "tensorrt_llm", inputs: [
            int32("input_ids", Self.bundle.tokenizer.encode(prompt).map(Int.init)), int32("input_lengths", [Self.bundle.tokenizer.encode(prompt).count]),
            int32("request_output_len", [16]), int32("end_id", [-1]),
        ])).ints("output_ids"))
        // Stop on the 4th generated token: the output is the first 3.
        let stopped = try await server.infer(InferRequest(modelName: "tensorrt_llm", inputs: [
            int32("input_ids", Self.bundle.tokenizer.encode(prompt).map(Int.init)), int32("input_lengths", [Self.bundle.tokenizer.encode(prompt).count]),
            int32("request_output_len", [16]), int32("end_id", [-1]),
            InferTensor(name: "stop_words_list", datatype: .int32, shape: [1, 2, 1], data: .ints([ids[3], 1])),
        ]))
        let first = ids.firstIndex(of: ids[3])!
        #expect(stopped.ints("output_ids") == Array(ids.prefix(first)))
        #expect(stopped.parameters["finish_reason"] == .string("stop"))
        #expect(full.text("text_output") != nil)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func chatTemplatesComeFromTheModelsTokenizer() async throws {
        let server = try await startServer(try tinyRepository())
        let turns = [ChatTurn(role: "user", content: "What is 2+2?")]
        let want = try Self.bundle.tokenizer.applyChatTemplate([ChatMessage(role: "user", content: "What is 2+2?")], addGenerationPrompt: true).text
        for model in ["ensemble", "tensorrt_llm_bls", "tensorrt_llm", "preprocessing"] {
            #expect(try server.renderChat(model: model, messages: turns, addGenerationPrompt: true) == want, "\(model)")
        }
        #expect(want.contains("What is 2+2?"))
        let e = await servingError { _ = try server.renderChat(model: "nope", messages: turns, addGenerationPrompt: true) }
        #expect(e?.status == .notFound)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func streamingNeedsADecoupledModel() async throws {
        let server = try await startServer(try tinyRepository { $0.decoupled = false })
        let e = await servingError { _ = try await collect(try server.inferStream(ensembleRequest("x", maxTokens: 3, stream: true))) }
        #expect(e?.status == .badRequest)
        #expect(e?.message.contains("'stream'") == true, "\(e?.message ?? "")")
        // Without streaming the same model answers.
        #expect(try await server.infer(ensembleRequest("x", maxTokens: 3)).text("text_output") != nil)
        await server.shutdown(gracePeriod: 1)
    }

    @Test func beamSearchAndBatchesOfSeveralItems() async throws {
        let server = try await startServer(try tinyRepository { $0.maxBeamWidth = 2 })
        let beam = try await server.infer(ensembleRequest("Once upon a time", maxTokens: 6, extra: [int32("beam_width", [2]), int32("end_id", [-1])]))
        #expect(beam.text("text_output")?.isEmpty == false)
        // Two prompts in one request (batch 2) give each prompt's own greedy text.
        let a = try await server.infer(ensembleRequest("first prompt", maxTokens: 5, extra: [int32("end_id", [-1])]))
        let b = try await server.infer(ensembleRequest("second", maxTokens: 5, extra: [int32("end_id", [-1])]))
        let both = try await server.infer(InferRequest(modelName: "ensemble", inputs: [
            InferTensor(name: "text_input", datatype: .bytes, shape: [2, 1], data: .bytes([Data("first prompt".utf8), Data("second".utf8)])),
            InferTensor(name: "max_tokens", datatype: .int32, shape: [2, 1], data: .ints([5, 5])),
            InferTensor(name: "end_id", datatype: .int32, shape: [2, 1], data: .ints([-1, -1])),
        ]))
        guard case .bytes(let pair)? = both.output("text_output")?.data else { Issue.record("no text_output"); return }
        #expect(both.output("text_output")?.shape == [2, 1])
        #expect(pair.map { String(decoding: $0, as: UTF8.self) } == [a.text("text_output"), b.text("text_output")])
        await server.shutdown(gracePeriod: 1)
    }

    @Test func shutdownRefusesNewRequestsAndEndsRunningOnes() async throws {
        let server = try await startServer(try tinyRepository())
        let stream = try server.inferStream(ensembleRequest("long", maxTokens: 200, stream: true, extra: [int32("end_id", [-1])]))
        let reader = Task { () -> (Int, Bool) in
            var n = 0, final = false
            do {
                for try await r in stream { n += 1; final = r.isFinal }
            } catch {}
            return (n, final)
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        await server.shutdown(gracePeriod: 0.05)
        let (n, _) = await reader.value
        #expect(n < 200)
        #expect(!server.isReady())
        let e = await servingError { _ = try await server.infer(ensembleRequest("late", maxTokens: 2)) }
        #expect(e?.status == .unavailable)
    }
}
