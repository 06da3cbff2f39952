// The gRPC endpoint end to end: a real server on a loopback port, the generated client, a fake
// InferenceService behind it.
import Foundation
import GRPCCore
@testable import GRPCFrontend
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import Serving
import Synchronization
import Compute
import Testing
import Telemetry
import TritonProtos

typealias InferenceClient = Inference_GRPCInferenceService.Client<HTTP2ClientTransport.Posix>

/// Starts a server on 127.0.0.1 (a free port), runs `body` with a connected client, then shuts
/// the server down and waits for it to stop.
func withServer(_ fake: FakeInferenceService = FakeInferenceService(),
                options: GRPCFrontendOptions = GRPCFrontendOptions(host: "127.0.0.1", port: 0, shutdownGracePeriod: .seconds(5)),
                _ body: @escaping (InferenceClient, GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Void) async throws {
    var options = options
    options.host = "127.0.0.1"
    options.port = 0
    let server = GRPCFrontendServer(service: fake, options: options)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run() }
        let port = try await server.boundPort()
        let transport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
        try await withGRPCClient(transport: transport) { client in
            try await body(InferenceClient(wrapping: client), client)
        }
        server.shutdown()
        try await group.waitForAll()
    }
}

func expectCode<T>(_ code: RPCError.Code, _ messagePart: String = "", _ body: () async throws -> T,
                   sourceLocation: SourceLocation = #_sourceLocation) async {
    do {
        _ = try await body()
        Issue.record("expected \(code), got success", sourceLocation: sourceLocation)
    } catch let error as RPCError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        if !messagePart.isEmpty {
            #expect(error.message.contains(messagePart), "\(error.message)", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected RPCError \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

// MARK: building requests and reading responses

func raw<T: FixedWidthInteger>(_ values: [T]) -> Data {
    var d = Data()
    for v in values { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
    return d
}

func rawBytes(_ elements: [String]) -> Data {
    var d = Data()
    for e in elements {
        let u = Data(e.utf8)
        d.append(raw([UInt32(u.count)]))
        d.append(u)
    }
    return d
}

func input(_ name: String, _ datatype: String, _ shape: [Int64],
           _ fill: (inout Inference_InferTensorContents) -> Void = { _ in }) -> Inference_ModelInferRequest.InferInputTensor {
    var t = Inference_ModelInferRequest.InferInputTensor()
    t.name = name
    t.datatype = datatype
    t.shape = shape
    var c = Inference_InferTensorContents()
    fill(&c)
    if !TensorCoding.isEmpty(c) { t.contents = c }
    return t
}

func counterRequest(id: String, n: Int32, parameters: [String: Inference_InferParameter] = [:]) -> Inference_ModelInferRequest {
    var r = Inference_ModelInferRequest()
    r.modelName = "counter"
    r.id = id
    r.inputs = [input("N", "INT32", [1]) { $0.intContents = [n] }]
    r.parameters = parameters
    return r
}

func boolParam(_ b: Bool) -> Inference_InferParameter {
    var p = Inference_InferParameter()
    p.boolParam = b
    return p
}

func intParam(_ i: Int64) -> Inference_InferParameter {
    var p = Inference_InferParameter()
    p.int64Param = i
    return p
}

func finalFlag(_ r: Inference_ModelStreamInferResponse) -> Bool? {
    guard let p = r.inferResponse.parameters["triton_final_response"], case .boolParam(let b)? = p.parameterChoice else { return nil }
    return b
}

func int32s(_ d: Data) -> [Int32] {
    stride(from: 0, to: d.count, by: 4).map { i in
        Int32(littleEndian: d.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i, as: Int32.self) })
    }
}

/// Sends `requests` on one ModelStreamInfer stream, closes the sending side and collects every
/// response until the server ends the stream.
func stream(_ client: InferenceClient, _ requests: [Inference_ModelInferRequest]) async throws -> [Inference_ModelStreamInferResponse] {
    try await client.modelStreamInfer(requestProducer: { writer in
        for r in requests { try await writer.write(r) }
    }, onResponse: { response in
        var out: [Inference_ModelStreamInferResponse] = []
        for try await m in response.messages { out.append(m) }
        return out
    })
}

@Suite("gRPC frontend")
struct GRPCFrontendTests {
    // MARK: health and metadata

    @Test func liveReadyAndHealth() async throws {
        let fake = FakeInferenceService()
        try await withServer(fake) { client, raw async throws in
            #expect(try await client.serverLive(Inference_ServerLiveRequest()).live)
            #expect(try await client.serverReady(Inference_ServerReadyRequest()).ready)
            let health = Grpc_Health_V1_Health.Client(wrapping: raw)
            #expect(try await health.check(Grpc_Health_V1_HealthCheckRequest()).status == .serving)
            var named = Grpc_Health_V1_HealthCheckRequest()
            named.service = "inference.GRPCInferenceService"
            #expect(try await health.check(named).status == .serving)
            fake.setReady(false)
            #expect(try await client.serverReady(Inference_ServerReadyRequest()).ready == false)
            #expect(try await health.check(Grpc_Health_V1_HealthCheckRequest()).status == .notServing)
        }
    }

    @Test func modelReadyAndMetadata() async throws {
        try await withServer { client, _ in
            var ready = Inference_ModelReadyRequest()
            ready.name = "identity"
            #expect(try await client.modelReady(ready).ready)
            ready.version = "7"
            #expect(try await client.modelReady(ready).ready == false)
            ready.name = "nope"
            ready.version = ""
            #expect(try await client.modelReady(ready).ready == false)

            let server = try await client.serverMetadata(Inference_ServerMetadataRequest())
            #expect(server.name == "petrel")
            #expect(server.version == "0.1.0")
            #expect(server.extensions.contains("model_repository"))

            var metadataRequest = Inference_ModelMetadataRequest()
            metadataRequest.name = "identity"
            let metadata = try await client.modelMetadata(metadataRequest)
            #expect(metadata.name == "identity")
            #expect(metadata.versions == ["1"])
            #expect(metadata.platform == "petrel")
            #expect(metadata.inputs.map(\.name) == ["INPUT0"])
            #expect(metadata.inputs[0].datatype == "INT32")
            #expect(metadata.inputs[0].shape == [-1, 16])
            #expect(metadata.outputs[0].datatype == "BYTES")

            metadataRequest.name = "unknown"
            await expectCode(.notFound, "unknown model") { try await client.modelMetadata(metadataRequest) }
        }
    }

    @Test func modelConfigAndStatistics() async throws {
        try await withServer { client, _ in
            var configRequest = Inference_ModelConfigRequest()
            configRequest.name = "counter"
            let config = try await client.modelConfig(configRequest).config
            #expect(config.name == "counter")
            #expect(config.backend == "fake")
            #expect(config.maxBatchSize == 8)
            #expect(config.modelTransactionPolicy.decoupled)
            configRequest.name = "unknown"
            await expectCode(.notFound) { try await client.modelConfig(configRequest) }

            var statsRequest = Inference_ModelStatisticsRequest()
            statsRequest.name = "identity"
            let stats = try await client.modelStatistics(statsRequest).modelStats
            #expect(stats.count == 1)
            #expect(stats[0].name == "identity")
            #expect(stats[0].version == "1")
            #expect(stats[0].inferenceCount == 7)
            #expect(stats[0].executionCount == 5)
            #expect(stats[0].lastInference == 1_700_000_000_000)
            #expect(stats[0].inferenceStats.success.count == 7)
            #expect(stats[0].inferenceStats.success.ns == 7000)
            #expect(stats[0].inferenceStats.queue.ns == 700)
            let all = try await client.modelStatistics(Inference_ModelStatisticsRequest()).modelStats
            #expect(all.count == FakeInferenceService.models.count)
            statsRequest.name = "unknown"
            await expectCode(.notFound) { try await client.modelStatistics(statsRequest) }
        }
    }

    // MARK: ModelInfer

    @Test func inferRawTensorsRoundTrip() async throws {
        try await withServer { client, _ in
            let f16: [UInt16] = [0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x8000]  // 1, -2, 0.333, 65504, tiny, -0
            let bf16: [UInt16] = [0x3f80, 0xc040, 0x4049]
            let f32: [UInt32] = [Float(1.5).bitPattern, Float(-0.25).bitPattern, Float.pi.bitPattern]
            let f64: [UInt64] = [Double(2.5).bitPattern, Double.ulpOfOne.bitPattern]
            var r = Inference_ModelInferRequest()
            r.modelName = "identity"
            r.id = "raw-1"
            let tensors: [(String, String, [Int64], Data)] = [
                ("I32", "INT32", [2, 2], raw([Int32(1), -2, 3, Int32.max])),
                ("I8", "INT8", [3], raw([Int8(-128), 0, 127])),
                ("U8", "UINT8", [2], raw([UInt8(0), 255])),
                ("I16", "INT16", [2], raw([Int16.min, 7])),
                ("U16", "UINT16", [1], raw([UInt16.max])),
                ("U32", "UINT32", [1], raw([UInt32.max])),
                ("I64", "INT64", [2], raw([Int64.min, Int64.max])),
                ("U64", "UINT64", [1], raw([UInt64.max])),
                ("B", "BOOL", [3], Data([1, 0, 1])),
                ("F16", "FP16", [6], raw(f16)),
                ("BF16", "BF16", [3], raw(bf16)),
                ("F32", "FP32", [3], raw(f32)),
                ("F64", "FP64", [2], raw(f64)),
                ("S", "BYTES", [3], rawBytes(["hello", "", "wörld"])),
                ("EMPTY", "FP32", [0, 4], Data()),
            ]
            for (name, type, shape, data) in tensors {
                r.inputs.append(input(name, type, shape))
                r.rawInputContents.append(data)
            }
            let response = try await client.modelInfer(r)
            #expect(response.id == "raw-1")
            #expect(response.modelName == "identity")
            #expect(response.modelVersion == "1")
            #expect(response.outputs.count == tensors.count)
            #expect(response.rawOutputContents.count == tensors.count)
            for (i, (name, type, shape, data)) in tensors.enumerated() {
                #expect(response.outputs[i].name == name)
                #expect(response.outputs[i].datatype == type)
                #expect(response.outputs[i].shape == shape)
                #expect(response.rawOutputContents[i] == data, "\(name)")
                #expect(!response.outputs[i].hasContents)
            }
        }
    }

    @Test func inferTypedContents() async throws {
        try await withServer { client, _ in
            var r = Inference_ModelInferRequest()
            r.modelName = "identity"
            r.id = "typed"
            r.inputs = [
                input("I32", "INT32", [1, 3]) { $0.intContents = [1, -2, 3] },
                input("I16", "INT16", [1]) { $0.intContents = [-300] },
                input("I64", "INT64", [2]) { $0.int64Contents = [Int64.min, 42] },
                input("U8", "UINT8", [2]) { $0.uintContents = [0, 255] },
                input("U64", "UINT64", [1]) { $0.uint64Contents = [UInt64.max] },
                input("B", "BOOL", [2]) { $0.boolContents = [true, false] },
                input("F32", "FP32", [2]) { $0.fp32Contents = [0.5, -1.25] },
                input("F64", "FP64", [1]) { $0.fp64Contents = [1e300] },
                input("S", "BYTES", [2]) { $0.bytesContents = [Data("a".utf8), Data([0, 255])] },
            ]
            r.outputs = r.inputs.map { i in
                var o = Inference_ModelInferRequest.InferRequestedOutputTensor()
                o.name = i.name
                o.parameters["binary_data"] = boolParam(true)
                return o
            }
            let response = try await client.modelInfer(r)
            #expect(response.outputs.map(\.name) == r.inputs.map(\.name))
            let expected: [Data] = [
                raw([Int32(1), -2, 3]), raw([Int16(-300)]), raw([Int64.min, 42]), Data([0, 255]), raw([UInt64.max]),
                Data([1, 0]), raw([Float(0.5).bitPattern, Float(-1.25).bitPattern]), raw([Double(1e300).bitPattern]),
                rawBytes(["a"]) + raw([UInt32(2)]) + Data([0, 255]),
            ]
            #expect(response.rawOutputContents == expected)
        }
    }

    @Test func inferParametersAndRequestedOutputs() async throws {
        try await withServer { client, _ in
            var r = Inference_ModelInferRequest()
            r.modelName = "identity"
            r.inputs = [input("A", "INT32", [1]) { $0.intContents = [1] }, input("B", "INT32", [1]) { $0.intContents = [2] }]
            var wanted = Inference_ModelInferRequest.InferRequestedOutputTensor()
            wanted.name = "B"
            r.outputs = [wanted]
            var s = Inference_InferParameter()
            s.stringParam = "text"
            var d = Inference_InferParameter()
            d.doubleParam = 0.5
            var u = Inference_InferParameter()
            u.uint64Param = 9
            r.parameters = ["flag": boolParam(true), "n": intParam(-3), "s": s, "d": d, "u": u,
                            "triton_enable_empty_final_response": boolParam(true)]
            let response = try await client.modelInfer(r)
            #expect(response.outputs.map(\.name) == ["B"])
            #expect(int32s(response.rawOutputContents[0]) == [2])
            // Echoed by the fake: Serving saw them, minus the frontend's triton_* ones.
            #expect(response.parameters["flag"] == boolParam(true))
            #expect(response.parameters["n"] == intParam(-3))
            #expect(response.parameters["s"] == s)
            #expect(response.parameters["d"] == d)
            #expect(response.parameters["u"] == intParam(9))
            #expect(response.parameters["triton_enable_empty_final_response"] == nil)
        }
    }

    @Test func inferRequestErrors() async throws {
        try await withServer { client, _ in
            func request(_ inputs: [Inference_ModelInferRequest.InferInputTensor], raw: [Data] = []) -> Inference_ModelInferRequest {
                var r = Inference_ModelInferRequest()
                r.modelName = "identity"
                r.inputs = inputs
                r.rawInputContents = raw
                return r
            }
            await expectCode(.invalidArgument, "invalid datatype 'INT33'") {
                try await client.modelInfer(request([input("X", "INT33", [1]) { $0.intContents = [1] }]))
            }
            await expectCode(.invalidArgument, "byte size mismatch") {
                try await client.modelInfer(request([input("X", "INT32", [2])], raw: [raw([Int32(1)])]))
            }
            await expectCode(.invalidArgument, "expected 2 raw_input_contents") {
                try await client.modelInfer(request([input("X", "INT32", [1]), input("Y", "INT32", [1])], raw: [raw([Int32(1)])]))
            }
            await expectCode(.invalidArgument, "unexpected number of elements in int_contents") {
                try await client.modelInfer(request([input("X", "INT32", [3]) { $0.intContents = [1, 2] }]))
            }
            await expectCode(.invalidArgument, "belongs in int_contents") {
                try await client.modelInfer(request([input("X", "INT32", [1]) { $0.int64Contents = [1] }]))
            }
            await expectCode(.invalidArgument, "raw_input_contents") {
                try await client.modelInfer(request([input("X", "FP16", [1]) { $0.fp32Contents = [1] }]))
            }
            await expectCode(.invalidArgument, "contents field must not be specified") {
                try await client.modelInfer(request([input("X", "INT32", [1]) { $0.intContents = [1] }], raw: [raw([Int32(1)])]))
            }
            await expectCode(.invalidArgument, "string elements") {
                try await client.modelInfer(request([input("X", "BYTES", [2])], raw: [rawBytes(["one"])]))
            }
            await expectCode(.invalidArgument, "truncated BYTES") {
                try await client.modelInfer(request([input("X", "BYTES", [1])], raw: [Data([5, 0])]))
            }
            await expectCode(.invalidArgument, "non-negative") {
                try await client.modelInfer(request([input("X", "INT32", [-1])], raw: [Data()]))
            }
            var shm = input("X", "INT32", [1])
            var region = Inference_InferParameter()
            region.stringParam = "region0"
            shm.parameters["shared_memory_region"] = region
            await expectCode(.unimplemented, "shared memory") { try await client.modelInfer(request([shm])) }
            var unknown = request([input("X", "INT32", [1]) { $0.intContents = [1] }])
            unknown.modelName = "unknown"
            await expectCode(.notFound, "unknown model") { try await client.modelInfer(unknown) }
        }
    }

    @Test func servingErrorsMapToCodes() async throws {
        try await withServer { client, _ in
            let cases: [(Int64, RPCError.Code)] = [
                (400, .invalidArgument), (401, .unauthenticated), (403, .permissionDenied), (404, .notFound),
                (409, .alreadyExists), (413, .resourceExhausted), (500, .internalError), (501, .unimplemented),
                (503, .unavailable),
            ]
            for (status, code) in cases {
                var r = Inference_ModelInferRequest()
                r.modelName = "failing"
                r.parameters["status"] = intParam(status)
                await expectCode(code, "failed with \(status)") { try await client.modelInfer(r) }
            }
            var plain = Inference_ModelInferRequest()
            plain.modelName = "failing"
            plain.parameters["plain_error"] = boolParam(true)
            await expectCode(.internalError, "oops") { try await client.modelInfer(plain) }
        }
    }

    @Test func unaryDeadlineCancelsTheRequest() async throws {
        let fake = FakeInferenceService()
        try await withServer(fake) { client, _ in
            var r = Inference_ModelInferRequest()
            r.modelName = "slow_unary"
            r.id = "deadline"
            var options = CallOptions.defaults
            // Long enough that the request reaches the server even on a loaded 2-core CI machine.
            options.timeout = .seconds(2)
            await expectCode(.deadlineExceeded) { try await client.modelInfer(r, options: options) }
            #expect(await fake.probe.wait(for: "infer-cancelled:deadline"))
        }
    }

    // MARK: ModelStreamInfer

    @Test func decoupledStreamWithEmptyFinalResponse() async throws {
        try await withServer { client, _ in
            let responses = try await stream(client, [
                counterRequest(id: "req-7", n: 3, parameters: ["triton_enable_empty_final_response": boolParam(true)]),
            ])
            #expect(responses.count == 4)
            for (i, r) in responses.prefix(3).enumerated() {
                #expect(r.errorMessage.isEmpty)
                #expect(r.inferResponse.id == "req-7")
                #expect(r.inferResponse.modelName == "counter")
                #expect(r.inferResponse.outputs.map(\.name) == ["OUT"])
                #expect(int32s(r.inferResponse.rawOutputContents[0]) == [Int32(i)])
                #expect(finalFlag(r) == false)
            }
            let last = try #require(responses.last)
            #expect(last.errorMessage.isEmpty)
            #expect(last.inferResponse.id == "req-7")
            #expect(last.inferResponse.modelName == "counter")
            #expect(last.inferResponse.outputs.isEmpty)
            #expect(last.inferResponse.rawOutputContents.isEmpty)
            #expect(finalFlag(last) == true)
        }
    }

    @Test func decoupledStreamWithoutOptIn() async throws {
        try await withServer { client, _ in
            // Triton sends no empty final response unless asked: the null final is dropped.
            let plain = try await stream(client, [counterRequest(id: "a", n: 3)])
            #expect(plain.count == 3)
            #expect(plain.map(finalFlag) == [false, false, false])
            // A final response that carries data is flagged as such.
            let withData = try await stream(client, [counterRequest(id: "b", n: 3, parameters: ["final_with_data": boolParam(true)])])
            #expect(withData.count == 3)
            #expect(withData.map(finalFlag) == [false, false, true])
            #expect(withData.map { int32s($0.inferResponse.rawOutputContents[0]) } == [[0], [1], [2]])
            // Asked for: the data goes out unflagged, then the empty flagged one.
            let split = try await stream(client, [counterRequest(id: "c", n: 2, parameters: [
                "final_with_data": boolParam(true), "triton_enable_empty_final_response": boolParam(true),
            ])])
            #expect(split.map(finalFlag) == [false, false, true])
            #expect(split.map(\.inferResponse.outputs.count) == [1, 1, 0])
        }
    }

    @Test func alwaysSendEmptyFinalResponseOption() async throws {
        var options = GRPCFrontendOptions()
        options.alwaysSendEmptyFinalResponse = true
        try await withServer(options: options) { client, _ in
            let responses = try await stream(client, [counterRequest(id: "x", n: 2)])
            #expect(responses.map(finalFlag) == [false, false, true])
            #expect(responses.last?.inferResponse.outputs.isEmpty == true)
        }
    }

    @Test func nonDecoupledModelOnStream() async throws {
        try await withServer { client, _ in
            var r = Inference_ModelInferRequest()
            r.modelName = "identity"
            r.id = "one"
            r.inputs = [input("X", "INT32", [2]) { $0.intContents = [4, 5] }]
            let responses = try await stream(client, [r])
            #expect(responses.count == 1)
            #expect(responses[0].inferResponse.id == "one")
            #expect(int32s(responses[0].inferResponse.rawOutputContents[0]) == [4, 5])
            #expect(finalFlag(responses[0]) == true)
        }
    }

    @Test func manyRequestsOnOneStream() async throws {
        try await withServer { client, _ in
            let requests = (0..<8).map { i in
                counterRequest(id: "r\(i)", n: Int32(i + 1), parameters: ["triton_enable_empty_final_response": boolParam(true)])
            }
            let responses = try await stream(client, requests)
            let byID = Dictionary(grouping: responses, by: \.inferResponse.id)
            #expect(byID.count == 8)
            for i in 0..<8 {
                let mine = try #require(byID["r\(i)"])
                #expect(mine.count == i + 2)
                #expect(mine.dropLast().map { int32s($0.inferResponse.rawOutputContents[0])[0] } == (0...i).map(Int32.init))
                #expect(mine.map(finalFlag) == Array(repeating: false, count: i + 1) + [true])
            }
        }
    }

    @Test func streamErrorsAreInBandAndKeepTheStreamOpen() async throws {
        try await withServer { client, _ in
            var bad = Inference_ModelInferRequest()
            bad.modelName = "identity"
            bad.id = "bad"
            bad.modelVersion = "3"
            bad.inputs = [input("X", "NOPE", [1])]
            var unknown = Inference_ModelInferRequest()
            unknown.modelName = "unknown"
            unknown.id = "unknown"
            var failing = Inference_ModelInferRequest()
            failing.modelName = "failing"
            failing.id = "failing"
            var badFlag = counterRequest(id: "flag", n: 1)
            badFlag.parameters["triton_enable_empty_final_response"] = intParam(1)
            var good = Inference_ModelInferRequest()
            good.modelName = "identity"
            good.id = "good"
            good.inputs = [input("X", "INT32", [1]) { $0.intContents = [9] }]

            let responses = try await stream(client, [bad, unknown, failing, badFlag, good])
            let byID = Dictionary(grouping: responses, by: \.inferResponse.id)
            let badResponse = try #require(byID["bad"]?.first)
            #expect(badResponse.errorMessage.contains("invalid datatype 'NOPE'"))
            #expect(badResponse.inferResponse.modelName == "identity")
            #expect(badResponse.inferResponse.modelVersion == "3")
            #expect(finalFlag(badResponse) == true)
            #expect(byID["unknown"]?.first?.errorMessage.contains("unknown model") == true)
            // The failing model answers once, then fails: the error ends that request only.
            let failed = try #require(byID["failing"])
            #expect(failed.count == 2)
            #expect(failed[0].errorMessage.isEmpty)
            #expect(failed[1].errorMessage == "failing model broke mid-stream")
            #expect(byID["flag"]?.first?.errorMessage.contains("expected bool_param") == true)
            let ok = try #require(byID["good"]?.first)
            #expect(ok.errorMessage.isEmpty)
            #expect(int32s(ok.inferResponse.rawOutputContents[0]) == [9])
        }
    }

    @Test func clientCancellingTheStreamCancelsTheRequest() async throws {
        let fake = FakeInferenceService()
        try await withServer(fake) { client, _ in
            var r = Inference_ModelInferRequest()
            r.modelName = "slow"
            r.id = "slow-1"
            let request = r
            let seen = try await client.modelStreamInfer(requestProducer: { writer in
                try await writer.write(request)
                // Keep the sending side open, as a streaming client does.
                try await Task.sleep(for: .seconds(30))
            }, onResponse: { response in
                var n = 0
                for try await m in response.messages {
                    #expect(m.inferResponse.id == "slow-1")
                    n += 1
                    if n == 3 { break }
                }
                return n  // returning early cancels the RPC
            })
            #expect(seen == 3)
            #expect(await fake.probe.wait(for: "stream-cancelled:slow-1"))
        }
    }

    @Test func clientDisconnectCancelsTheRequest() async throws {
        let fake = FakeInferenceService()
        let server = GRPCFrontendServer(service: fake, options: GRPCFrontendOptions(host: "127.0.0.1", port: 0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.boundPort()
            let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
            let received = Locked(0)
            let clientTask = Task {
                try await withGRPCClient(transport: transport) { raw in
                    let client = InferenceClient(wrapping: raw)
                    var r = Inference_ModelInferRequest()
                    r.modelName = "slow"
                    r.id = "gone"
                    let request = r
                    try await client.modelStreamInfer(requestProducer: { writer in
                        try await writer.write(request)
                        try await Task.sleep(for: .seconds(30))
                    }, onResponse: { response in
                        for try await _ in response.messages { received.withLock { $0 += 1 } }
                    })
                }
            }
            while received.withLock({ $0 }) < 2 { try await Task.sleep(for: .milliseconds(10)) }
            clientTask.cancel()  // tears the client and its connection down
            _ = await clientTask.result
            #expect(await fake.probe.wait(for: "stream-cancelled:gone"))
            server.shutdown()
            try await group.waitForAll()
        }
    }

    @Test func shutdownCancelsStreamsAfterTheGracePeriod() async throws {
        let fake = FakeInferenceService()
        let server = GRPCFrontendServer(service: fake, options: GRPCFrontendOptions(
            host: "127.0.0.1", port: 0, shutdownGracePeriod: .seconds(2)))   // long enough to see streaming go on under a loaded CPU
        var shutdownAt = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.boundPort()
            let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
            let received = Locked(0)
            group.addTask {
                try? await withGRPCClient(transport: transport) { raw in
                    let client = InferenceClient(wrapping: raw)
                    var r = Inference_ModelInferRequest()
                    r.modelName = "slow"
                    r.id = "draining"
                    let request = r
                    try await client.modelStreamInfer(requestProducer: { writer in
                        try await writer.write(request)
                        try await Task.sleep(for: .seconds(120))
                    }, onResponse: { response in
                        for try await _ in response.messages { received.withLock { $0 += 1 } }
                    })
                }
            }
            while received.withLock({ $0 }) < 2 { try await Task.sleep(for: .milliseconds(10)) }
            shutdownAt = ContinuousClock.now
            server.shutdown()
            // Still streaming during the grace period; cancelled when it ends.
            try await Task.sleep(for: .milliseconds(100))
            #expect(!fake.probe.contains("stream-cancelled:draining"))
            let before = received.withLock { $0 }
            #expect(await fake.probe.wait(for: "stream-cancelled:draining"))
            #expect(received.withLock { $0 } > before)
            try await group.waitForAll()
        }
        // The server ended the stream: the client would have kept it open for 120 s. Measured
        // from the shutdown (the grace period is 2 s); a loaded 2-core machine has taken up to
        // ~35 s for the whole test, so 90 s leaves a wide margin and still fails if nothing ends it.
        #expect(ContinuousClock.now - shutdownAt < .seconds(90))
    }

    @Test func shutdownLetsInFlightRequestsFinish() async throws {
        let fake = FakeInferenceService()
        let server = GRPCFrontendServer(service: fake, options: GRPCFrontendOptions(host: "127.0.0.1", port: 0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.boundPort()
            let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
            try await withGRPCClient(transport: transport) { raw in
                let client = InferenceClient(wrapping: raw)
                var r = Inference_ModelInferRequest()
                r.modelName = "delayed"
                r.id = "late"
                r.inputs = [input("X", "INT32", [1]) { $0.intContents = [3] }]
                let request = r
                async let answer = client.modelInfer(request)
                async let stream = stream(client, [request])
                // Shut down only once both RPCs are executing (not after a fixed sleep: on a
                // loaded machine they may not have reached the server yet).
                let deadline = ContinuousClock.now + .seconds(10)
                while fake.probe.count(of: "delayed-started:late") < 2 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                server.shutdown()
                try await Task.sleep(for: .milliseconds(300))
                // A new RPC once the client knows the server is going away: refused (the
                // listener is closed), without disturbing the RPCs in flight.
                let health = Grpc_Health_V1_Health.Client(wrapping: raw)
                var options = CallOptions.defaults
                options.timeout = .milliseconds(500)
                await expectCode(.unavailable) { try await health.check(Grpc_Health_V1_HealthCheckRequest(), options: options) }
                #expect(try await answer.id == "late")
                #expect(try await stream.map { int32s($0.inferResponse.rawOutputContents[0]) } == [[3]])
            }
            try await group.waitForAll()
        }
        #expect(fake.probe.all.filter { !$0.hasPrefix("delayed-started") } == ["delayed-done:late", "delayed-done:late"])
    }

    @Test func compressedRequests() async throws {
        let server = GRPCFrontendServer(service: FakeInferenceService(), options: GRPCFrontendOptions(host: "127.0.0.1", port: 0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let port = try await server.boundPort()
            for algorithm in [CompressionAlgorithm.gzip, .deflate] {
                let transport = try HTTP2ClientTransport.Posix(
                    target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext,
                    config: .defaults { $0.compression = .init(algorithm: algorithm, enabledAlgorithms: .all) })
                try await withGRPCClient(transport: transport) { raw in
                    var r = Inference_ModelInferRequest()
                    r.modelName = "identity"
                    r.inputs = [input("X", "INT32", [1024])]
                    r.rawInputContents = [Data(repeating: 1, count: 4096)]
                    var options = CallOptions.defaults
                    options.compression = algorithm
                    let response = try await InferenceClient(wrapping: raw).modelInfer(r, options: options)
                    #expect(response.rawOutputContents == r.rawInputContents)
                }
            }
            server.shutdown()
            try await group.waitForAll()
        }
    }

    // MARK: repository, logging, unsupported

    @Test func repository() async throws {
        let fake = FakeInferenceService()
        try await withServer(fake) { client, _ in
            let all = try await client.repositoryIndex(Inference_RepositoryIndexRequest()).models
            #expect(all.count == FakeInferenceService.models.count + 1)
            let broken = try #require(all.first { $0.name == "broken" })
            #expect(broken.state == "UNAVAILABLE")
            #expect(broken.reason == "load failed")
            var readyOnly = Inference_RepositoryIndexRequest()
            readyOnly.ready = true
            #expect(try await client.repositoryIndex(readyOnly).models.allSatisfy { $0.state == "READY" })

            var load = Inference_RepositoryModelLoadRequest()
            load.modelName = "identity"
            _ = try await client.repositoryModelLoad(load)
            var config = Inference_ModelRepositoryParameter()
            config.stringParam = #"{"max_batch_size": 4}"#
            load.parameters["config"] = config
            _ = try await client.repositoryModelLoad(load)
            #expect(fake.probe.contains("load:identity:-"))
            #expect(fake.probe.contains(#"load:identity:{"max_batch_size": 4}"#))
            load.modelName = "missing"
            load.parameters = [:]
            await expectCode(.invalidArgument, "failed to load 'missing'") { try await client.repositoryModelLoad(load) }
            var file = Inference_ModelRepositoryParameter()
            file.bytesParam = Data([1, 2])
            load.parameters["file:1/model.onnx"] = file
            await expectCode(.unimplemented, "file:1/model.onnx") { try await client.repositoryModelLoad(load) }

            var unload = Inference_RepositoryModelUnloadRequest()
            unload.modelName = "counter"
            _ = try await client.repositoryModelUnload(unload)
            var dependents = Inference_ModelRepositoryParameter()
            dependents.boolParam = true
            unload.parameters["unload_dependents"] = dependents
            _ = try await client.repositoryModelUnload(unload)
            #expect(fake.probe.contains("unload:counter:false"))
            #expect(fake.probe.contains("unload:counter:true"))
            unload.modelName = "unknown"
            await expectCode(.notFound) { try await client.repositoryModelUnload(unload) }
        }
    }

    @Test func logSettings() async throws {
        let lines = Locked<[String]>([])
        var options = GRPCFrontendOptions()
        options.log = ServerLog(write: { line in lines.withLock { $0.append(line) } })
        let log = options.log
        try await withServer(options: options) { client, _ in
            func value(_ c: Inference_LogSettingsRequest.SettingValue.OneOf_ParameterChoice) -> Inference_LogSettingsRequest.SettingValue {
                var v = Inference_LogSettingsRequest.SettingValue()
                v.parameterChoice = c
                return v
            }
            let initial = try await client.logSettings(Inference_LogSettingsRequest()).settings
            #expect(Set(initial.keys) == ["log_file", "log_info", "log_warning", "log_error", "log_verbose_level", "log_format"])
            #expect(initial["log_info"]?.boolParam == true)
            #expect(initial["log_verbose_level"]?.uint32Param == 0)
            #expect(initial["log_format"]?.stringParam == "default")
            #expect(initial["log_file"]?.stringParam == "")

            var set = Inference_LogSettingsRequest()
            set.settings = ["log_verbose_level": value(.uint32Param(2)), "log_format": value(.stringParam("ISO8601")),
                            "log_info": value(.boolParam(false))]
            let updated = try await client.logSettings(set).settings
            #expect(updated["log_verbose_level"]?.uint32Param == 2)
            #expect(updated["log_format"]?.stringParam == "ISO8601")
            #expect(updated["log_info"]?.boolParam == false)
            #expect(updated["log_warning"]?.boolParam == true)
            // The log itself changed: info off, verbose on, ISO 8601 lines; each RPC is logged.
            #expect(log.settings.verboseLevel == 2 && !log.settings.info && log.settings.format == .iso8601)
            log.info("not written")
            _ = try await client.serverLive(Inference_ServerLiveRequest())
            let written = lines.withLock { $0 }
            #expect(!written.contains { $0.contains("not written") })
            let live = try #require(written.last { $0.contains("gRPC request: inference.GRPCInferenceService/ServerLive") })
            #expect(live.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ V "#, options: .regularExpression) != nil)

            var wrong = Inference_LogSettingsRequest()
            wrong.settings = ["log_info": value(.stringParam("yes")), "log_verbose_level": value(.uint32Param(5))]
            await expectCode(.invalidArgument, "expect boolean for 'log_info'") { try await client.logSettings(wrong) }
            wrong.settings = ["log_format": value(.stringParam("json"))]
            await expectCode(.invalidArgument, "invalid argument for log_format") { try await client.logSettings(wrong) }
            wrong.settings = ["log_file": value(.stringParam("/tmp/x.log"))]
            await expectCode(.unimplemented, "log file location") { try await client.logSettings(wrong) }
            // Nothing of a rejected request was applied.
            let after = try await client.logSettings(Inference_LogSettingsRequest()).settings
            #expect(after["log_verbose_level"]?.uint32Param == 2)
            #expect(log.settings.info == false)
        }
    }

    @Test func sharedMemoryAndTracingAreRefusedAsTritonDoesWithoutThem() async throws {
        try await withServer { client, _ in
            // No region is registered: status lists none, names none.
            let system = try await client.systemSharedMemoryStatus(Inference_SystemSharedMemoryStatusRequest())
            let cuda = try await client.cudaSharedMemoryStatus(Inference_CudaSharedMemoryStatusRequest())
            #expect(system.regions.isEmpty && cuda.regions.isEmpty)
            var named = Inference_SystemSharedMemoryStatusRequest()
            named.name = "r0"
            await expectCode(.invalidArgument, "Unable to find system shared memory region: 'r0'") {
                try await client.systemSharedMemoryStatus(named)
            }
            await expectCode(.unimplemented, "system shared memory is not supported") {
                try await client.systemSharedMemoryRegister(Inference_SystemSharedMemoryRegisterRequest())
            }
            await expectCode(.unimplemented, "system shared memory is not supported") {
                try await client.systemSharedMemoryUnregister(Inference_SystemSharedMemoryUnregisterRequest())
            }
            await expectCode(.unimplemented, "CUDA shared memory is not supported") {
                try await client.cudaSharedMemoryRegister(Inference_CudaSharedMemoryRegisterRequest())
            }
            await expectCode(.unimplemented, "CUDA shared memory is not supported") {
                try await client.cudaSharedMemoryUnregister(Inference_CudaSharedMemoryUnregisterRequest())
            }
            await expectCode(.unavailable, "the server does not support trace") {
                try await client.traceSetting(Inference_TraceSettingRequest())
            }
        }
    }

    @Test func largeMessagesPassTheDefaultLimit() async throws {
        try await withServer { client, _ in
            // 8 MiB input: over gRPC's usual 4 MiB default, well under Triton's (and Petrel's) 2 GiB.
            let n = 2 * 1024 * 1024
            var r = Inference_ModelInferRequest()
            r.modelName = "identity"
            r.inputs = [input("BIG", "INT32", [Int64(n)])]
            r.rawInputContents = [Data(repeating: 7, count: n * 4)]
            var options = CallOptions.defaults
            // The NIO client transport applies maxRequestMessageBytes to what it receives too.
            options.maxRequestMessageBytes = 64 * 1024 * 1024
            options.maxResponseMessageBytes = 64 * 1024 * 1024
            let response = try await client.modelInfer(r, options: options)
            #expect(response.rawOutputContents[0].count == n * 4)
        }
    }
}

@Suite("tensor coding")
struct TensorCodingTests {
    @Test func halfPrecisionConversions() {
        let cases: [(Float, UInt16)] = [
            (0, 0x0000), (-0.0, 0x8000), (1, 0x3c00), (-2, 0xc000), (65504, 0x7bff), (65520, 0x7c00),
            (.infinity, 0x7c00), (-.infinity, 0xfc00), (0x1p-24, 0x0001), (0x1p-25, 0x0000), (0x1.8p-25, 0x0001),
            (0x1p-14, 0x0400), (1.0009765625, 0x3c01), (1.00048828125, 0x3c00), (1.00146484375, 0x3c02),
        ]
        for (f, h) in cases {
            #expect(halfBits(f) == h, "\(f)")
        }
        for h: UInt16 in [0x0000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x3555, 0x7bff, 0x7c00, 0x8001, 0xc000, 0xfbff] {
            #expect(halfBits(halfToFloat(h)) == h, "\(h)")
        }
        #expect(halfToFloat(0x7e00).isNaN)
        #expect(halfBits(.nan) & 0x7c00 == 0x7c00)
        #expect(bfloat16Bits(1) == 0x3f80)
        #expect(bfloat16Bits(Float(bitPattern: 0x3f80_8000)) == 0x3f80)  // tie to even
        #expect(bfloat16Bits(Float(bitPattern: 0x3f81_8000)) == 0x3f82)
    }

    @Test func outputsOfAnotherFamilyAreConverted() throws {
        let asInt = InferTensor(name: "x", datatype: .int32, shape: [2], data: .floats([1.9, -2.5]))
        #expect(try TensorWire.encode(asInt) == raw([Int32(1), -2]))
        let asFloat = InferTensor(name: "x", datatype: .fp32, shape: [1], data: .ints([3]))
        #expect(try TensorWire.encode(asFloat) == raw([Float(3).bitPattern]))
        let asBool = InferTensor(name: "x", datatype: .bool, shape: [2], data: .ints([0, 5]))
        #expect(try TensorWire.encode(asBool) == Data([0, 1]))
        let notBytes = InferTensor(name: "x", datatype: .bytes, shape: [1], data: .ints([1]))
        #expect(throws: ServingError.self) { try TensorWire.encode(notBytes) }
    }
}
