// config.pbtxt parsing: the fixtures in Tests/Fixtures/pbtxt/ are written in the layout of
// TensorRT-LLM's inflight_batcher_llm repository (plus one file that touches the rest of the
// schema). Each fixture's config.binpb was written by protoc's C++ text parser (the one Triton
// uses) from the same text, so equality with it checks the Swift parser and the wire format.
import Foundation
import SwiftProtobuf
import Testing
import TritonProtos

enum PbtxtFixtures {
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/pbtxt")

    static let models = [
        "ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls",
        "sequence_kitchen_sink",
    ]

    static func path(_ model: String) -> String {
        directory.appendingPathComponent(model).appendingPathComponent("config.pbtxt").path
    }

    static func text(_ model: String) throws -> String {
        try String(contentsOfFile: path(model), encoding: .utf8)
    }

    static func config(_ model: String) throws -> Inference_ModelConfig {
        try decodeModelConfig(text: text(model), path: path(model))
    }

    static func golden(_ model: String) throws -> Inference_ModelConfig {
        let url = directory.appendingPathComponent(model).appendingPathComponent("config.binpb")
        return try Inference_ModelConfig(serializedBytes: [UInt8](Data(contentsOf: url)))
    }
}

@Suite("config.pbtxt fixtures")
struct ModelConfigFixtureTests {
    @Test(arguments: PbtxtFixtures.models)
    func parsesLikeTheReferenceParser(model: String) throws {
        let config = try PbtxtFixtures.config(model)
        #expect(config.name == model)
        #expect(config == (try PbtxtFixtures.golden(model)))
    }

    @Test(arguments: PbtxtFixtures.models)
    func roundTripsThroughTextAndBinary(model: String) throws {
        let config = try PbtxtFixtures.config(model)
        let text = config.textFormatString()
        #expect(try Inference_ModelConfig(textFormatString: text) == config)
        let bytes: [UInt8] = try config.serializedBytes()
        #expect(try Inference_ModelConfig(serializedBytes: bytes) == config)
    }

    @Test func ensemble() throws {
        let c = try PbtxtFixtures.config("ensemble")
        #expect(c.platform == "ensemble")
        #expect(c.backend.isEmpty)
        #expect(c.maxBatchSize == 64)
        #expect(c.input.map(\.name) == [
            "text_input", "max_tokens", "bad_words", "stop_words", "end_id", "temperature",
            "random_seed", "stream",
        ])
        #expect(c.input[0].dataType == .typeString)
        #expect(c.input[0].dims == [1])
        #expect(!c.input[0].optional)
        #expect(c.input[2].dims == [-1])
        #expect(c.input[2].optional)
        #expect(c.input[5].dataType == .typeFp32)
        #expect(c.input[6].dataType == .typeUint64)
        #expect(c.input[7].dataType == .typeBool)
        #expect(c.output.map(\.name) == ["text_output", "cum_log_probs"])

        guard case .ensembleScheduling(let ensemble)? = c.schedulingChoice else {
            Issue.record("expected ensemble_scheduling, got \(String(describing: c.schedulingChoice))")
            return
        }
        #expect(c.dynamicBatching == Inference_ModelDynamicBatching())  // other oneof arms unset
        #expect(ensemble.step.map(\.modelName) == ["preprocessing", "tensorrt_llm", "postprocessing"])
        #expect(ensemble.step.allSatisfy { $0.modelVersion == -1 })
        let pre = ensemble.step[0]
        #expect(pre.inputMap == [
            "QUERY": "text_input", "REQUEST_OUTPUT_LEN": "max_tokens", "BAD_WORDS_DICT": "bad_words",
            "STOP_WORDS_DICT": "stop_words", "END_ID": "end_id",
        ])
        #expect(pre.outputMap["INPUT_ID"] == "_INPUT_ID")
        #expect(pre.outputMap.count == 6)
        let llm = ensemble.step[1]
        #expect(llm.inputMap["input_ids"] == "_INPUT_ID")
        #expect(llm.inputMap["streaming"] == "stream")
        #expect(llm.outputMap == [
            "output_ids": "_TOKENS_BATCH", "sequence_length": "_SEQUENCE_LENGTH",
            "cum_log_probs": "cum_log_probs",
        ])
        #expect(ensemble.step[2].outputMap == ["OUTPUT": "text_output"])
    }

    @Test func tensorrtLLM() throws {
        let c = try PbtxtFixtures.config("tensorrt_llm")
        #expect(c.backend == "tensorrtllm")
        #expect(c.maxBatchSize == 64)
        #expect(c.hasModelTransactionPolicy)
        #expect(c.modelTransactionPolicy.decoupled)

        guard case .dynamicBatching? = c.schedulingChoice else {
            Issue.record("expected dynamic_batching")
            return
        }
        #expect(c.dynamicBatching.preferredBatchSize == [64])
        #expect(c.dynamicBatching.maxQueueDelayMicroseconds == 100)
        #expect(c.dynamicBatching.defaultQueuePolicy.maxQueueSize == 1024)
        #expect(c.dynamicBatching.defaultQueuePolicy.timeoutAction == .reject)

        let inputs = Dictionary(uniqueKeysWithValues: c.input.map { ($0.name, $0) })
        #expect(c.input.count == 10)
        let ids = try #require(inputs["input_ids"])
        #expect(ids.dataType == .typeInt32)
        #expect(ids.dims == [-1])
        #expect(ids.allowRaggedBatch)
        #expect(!ids.hasReshape)
        let lengths = try #require(inputs["input_lengths"])
        #expect(lengths.hasReshape)  // `reshape: { shape: [ ] }`: present, scalar
        #expect(lengths.reshape.shape.isEmpty)
        #expect(try #require(inputs["stop_words_list"]).dims == [2, -1])
        let seed = try #require(inputs["random_seed"])  // tab-indented in the fixture
        #expect(seed.dataType == .typeUint64)
        #expect(seed.optional)
        #expect(seed.hasReshape)
        #expect(try #require(inputs["streaming"]).dataType == .typeBool)
        #expect(try #require(inputs["temperature"]).dataType == .typeFp32)
        #expect(c.output.map(\.dims) == [[-1, -1], [-1], [-1]])

        #expect(c.instanceGroup.count == 1)
        #expect(c.instanceGroup[0].kind == .cpu)
        #expect(c.instanceGroup[0].count == 1)

        #expect(c.parameters.count == 8)
        #expect(c.parameters["batch_scheduler_policy"]?.stringValue == "guaranteed_no_evict")
        #expect(c.parameters["kv_cache_free_gpu_mem_fraction"]?.stringValue == "0.9")
        #expect(c.parameters["gpt_model_type"]?.stringValue == "inflight_fused_batching")
        #expect(c.parameters["gpt_model_path"]?.stringValue == "/engines/smollm2-135m/fp16/1-gpu")
        #expect(c.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"]?.stringValue == "no")
        #expect(c.parameters["max_beam_width"]?.stringValue == "1")
    }

    @Test func pythonSteps() throws {
        let pre = try PbtxtFixtures.config("preprocessing")
        #expect(pre.backend == "python")
        #expect(pre.parameters["tokenizer_dir"]?.stringValue == "/models/smollm2-135m-instruct")
        #expect(pre.parameters["add_special_tokens"]?.stringValue == "false")
        #expect(pre.instanceGroup.map(\.count) == [2])
        #expect(pre.instanceGroup[0].kind == .cpu)
        #expect(pre.output.first { $0.name == "BAD_WORDS_IDS" }?.dims == [2, -1])
        #expect(pre.schedulingChoice == nil)
        #expect(!pre.hasModelTransactionPolicy)

        let post = try PbtxtFixtures.config("postprocessing")
        #expect(post.input.map(\.name) == ["TOKENS_BATCH", "SEQUENCE_LENGTH", "CUM_LOG_PROBS"])
        #expect(post.input[0].dims == [-1, -1])
        #expect(post.input[2].optional)
        #expect(post.output[0].dataType == .typeString)
        #expect(post.parameters["skip_special_tokens"]?.stringValue == "true")

        let bls = try PbtxtFixtures.config("tensorrt_llm_bls")
        #expect(bls.modelTransactionPolicy.decoupled)
        #expect(bls.parameters["tensorrt_llm_model_name"]?.stringValue == "tensorrt_llm")
        #expect(bls.parameters["accumulate_tokens"]?.stringValue == "false")
        #expect(bls.instanceGroup[0].count == 4)
    }

    @Test func restOfTheSchema() throws {
        let c = try PbtxtFixtures.config("sequence_kitchen_sink")
        #expect(c.platform == "onnxruntime_onnx")
        #expect(c.runtime == "libtriton_onnxruntime.so")
        guard case .specific(let specific)? = c.versionPolicy.policyChoice else {
            Issue.record("expected a specific version policy")
            return
        }
        #expect(specific.versions == [1, 3])
        #expect(c.defaultModelFilename == "model.onnx")
        #expect(c.ccModelFilenames == ["9.0": "model_sm90.onnx"])
        #expect(c.metricTags == ["team": "petrel"])
        #expect(c.input[0].dataType == .typeFp16)
        #expect(c.input[1].format == .nchw)
        #expect(c.input[1].dims == [3, 224, 224])
        #expect(c.output[0].labelFilename == "labels.txt")
        #expect(c.output[1].dataType == .typeBf16)
        #expect(c.output[1].reshape.shape == [2, 2])
        #expect(c.batchInput[0].kind == .batchAccumulatedElementCount)
        #expect(c.batchInput[0].dataType == .typeInt64)
        #expect(c.batchOutput[0].kind == .batchScatterWithInputShape)

        guard case .sequenceBatching? = c.schedulingChoice else {
            Issue.record("expected sequence_batching")
            return
        }
        let seq = c.sequenceBatching
        #expect(seq.maxSequenceIdleMicroseconds == 5_000_000)
        guard case .oldest(let oldest)? = seq.strategyChoice else {
            Issue.record("expected the oldest strategy")
            return
        }
        #expect(oldest.maxCandidateSequences == 4)
        #expect(oldest.preferredBatchSize == [2, 4])
        #expect(oldest.preserveOrdering)
        #expect(seq.controlInput.map(\.name) == ["START", "READY", "CORRID"])
        #expect(seq.controlInput[0].control[0].kind == .controlSequenceStart)
        #expect(seq.controlInput[0].control[0].fp32FalseTrue == [0, 1])
        #expect(seq.controlInput[1].control[0].boolFalseTrue == [false, true])
        #expect(seq.controlInput[2].control[0].dataType == .typeUint64)
        #expect(seq.state[0].initialState[0].stateData == .zeroData(true))
        #expect(seq.state[0].useGrowableMemory)

        let gpu = c.instanceGroup[0]
        #expect(gpu.name == "gpu_group")
        #expect(gpu.kind == .gpu)
        #expect(gpu.gpus == [0, 1])
        #expect(gpu.profile == ["0"])
        #expect(gpu.rateLimiter.resources.map(\.name) == ["R1", "R2"])
        #expect(gpu.rateLimiter.resources[1].global)
        #expect(gpu.rateLimiter.priority == 2)
        #expect(gpu.hostPolicy == "numa0")
        #expect(c.instanceGroup[1].passive)

        let opt = c.optimization
        #expect(opt.graph.level == 1)
        #expect(opt.priority == .priorityMax)
        #expect(opt.cuda.graphs && opt.cuda.busyWaitEvents && opt.cuda.outputCopyStream)
        #expect(opt.cuda.graphSpec[0].input["INPUT"]?.dim == [16])
        #expect(opt.cuda.graphSpec[0].graphLowerBound.batchSize == 1)
        let trt = opt.executionAccelerators.gpuExecutionAccelerator[0]
        #expect(trt.name == "tensorrt")
        #expect(trt.parameters["precision_mode"] == "FP16")
        #expect(opt.hasInputPinnedMemory && !opt.inputPinnedMemory.enable)
        #expect(opt.outputPinnedMemory.enable)
        #expect(opt.gatherKernelBufferThreshold == 2)
        #expect(opt.eagerBatching)

        let warm = c.modelWarmup[0]
        #expect(warm.batchSize == 2 && warm.count == 3)
        #expect(warm.inputs["INPUT"]?.inputDataType == .randomData(true))
        #expect(warm.inputs["IMAGE"]?.inputDataType == .inputDataFile("image.raw"))
        #expect(c.modelOperations.opLibraryFilename == ["libcustom_ops.so"])
        #expect(c.modelRepositoryAgents.agents[0].parameters["MD5:model.onnx"] == "0123abcd")
        #expect(c.responseCache.enable)
        let metric = c.modelMetrics.metricControl[0]
        #expect(metric.metricIdentifier.family == "nv_inference_first_response_histogram_ms")
        #expect(metric.histogramOptions.buckets == [1, 2.5, 10, 100])
    }

    @Test func priorityQueuesAndOtherPolicies() throws {
        let text = """
            name: "prio"
            version_policy { latest { num_versions: 2 } }
            dynamic_batching {
              priority_levels: 3
              default_priority_level: 2
              priority_queue_policy { key: 1 value: { timeout_action: DELAY default_timeout_microseconds: 1000 allow_timeout_override: true } }
              priority_queue_policy [ { key: 3 value { max_queue_size: 7 } } ]
              preserve_ordering: true
            }
            """
        let c = try decodeModelConfig(text: text, path: "prio/config.pbtxt")
        #expect(c.versionPolicy.policyChoice == .latest(.with { $0.numVersions = 2 }))
        #expect(c.dynamicBatching.priorityLevels == 3)
        #expect(c.dynamicBatching.defaultPriorityLevel == 2)
        #expect(c.dynamicBatching.priorityQueuePolicy[1]?.timeoutAction == .delay)
        #expect(c.dynamicBatching.priorityQueuePolicy[1]?.defaultTimeoutMicroseconds == 1000)
        #expect(c.dynamicBatching.priorityQueuePolicy[1]?.allowTimeoutOverride == true)
        #expect(c.dynamicBatching.priorityQueuePolicy[3]?.maxQueueSize == 7)
        #expect(c.dynamicBatching.preserveOrdering)
    }
}

@Suite("config.pbtxt JSON (Triton's HTTP /config)")
struct ModelConfigJSONTests {
    static var protoNames: JSONEncodingOptions {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return options
    }

    @Test(arguments: PbtxtFixtures.models)
    func roundTripWithProtoFieldNames(model: String) throws {
        let config = try PbtxtFixtures.config(model)
        let json = try config.jsonString(options: Self.protoNames)
        #expect(json.contains("\"max_batch_size\":"))
        #expect(!json.contains("\"maxBatchSize\""))
        #expect(try Inference_ModelConfig(jsonString: json) == config)
    }

    @Test func fieldNamesAndValuesAsTritonWritesThem() throws {
        let config = try PbtxtFixtures.config("tensorrt_llm")
        let json = try config.jsonString(options: Self.protoNames)
        let object = try #require(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["name"] as? String == "tensorrt_llm")
        #expect(object["max_batch_size"] as? Int == 64)
        let policy = try #require(object["model_transaction_policy"] as? [String: Any])
        #expect(policy["decoupled"] as? Bool == true)
        let batching = try #require(object["dynamic_batching"] as? [String: Any])
        #expect(batching["preferred_batch_size"] as? [Int] == [64])
        // proto3 JSON writes 64-bit integers as strings
        #expect(batching["max_queue_delay_microseconds"] as? String == "100")
        let inputs = try #require(object["input"] as? [[String: Any]])
        #expect(inputs[0]["data_type"] as? String == "TYPE_INT32")
        #expect(inputs[0]["dims"] as? [String] == ["-1"])
        #expect(inputs[0]["allow_ragged_batch"] as? Bool == true)
        let groups = try #require(object["instance_group"] as? [[String: Any]])
        #expect(groups[0]["kind"] as? String == "KIND_CPU")
        let parameters = try #require(object["parameters"] as? [String: [String: String]])
        #expect(parameters["batch_scheduler_policy"] == ["string_value": "guaranteed_no_evict"])

        // Decoding accepts both spellings, as protobuf JSON parsers do.
        let camel = try config.jsonString()
        #expect(camel.contains("\"maxBatchSize\":"))
        #expect(try Inference_ModelConfig(jsonString: camel) == config)
    }
}
