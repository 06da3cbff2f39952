// The KServe v2 routes over a live socket against the fake service: JSON shapes and status
// codes as Triton answers them, JSON and binary tensors both ways, bad inputs that leave the
// server healthy, restricted APIs.
import Foundation
import HTTPFrontend
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Telemetry
import Testing
import Synchronization

@Suite struct MetadataAndHealthTests {
    @Test func serverMetadataAndHealth() async throws {
        let probe = FakeProbe()
        try await withApp(FakeService(probe: probe)) { client in
            let meta = try await client.execute(uri: "/v2", method: .get)
            #expect(meta.status == .ok)
            let o = try jsonObject(meta.body)
            #expect(o["name"] as? String == "triton")
            #expect(o["version"] as? String == "2.59.0")
            #expect(o["extensions"] as? [String] == ["classification", "binary_tensor_data", "statistics"])

            #expect(try await client.execute(uri: "/v2/health/live", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/v2/health/ready", method: .get).status == .ok)
            probe.state.withLock { $0.ready = false }
            #expect(try await client.execute(uri: "/v2/health/ready", method: .get).status == .badRequest)
            #expect(try await client.execute(uri: "/v2/health/live", method: .get).status == .ok)
        }
    }

    @Test func modelMetadataReadyConfigAndStats() async throws {
        try await withApp { client in
            for uri in ["/v2/models/ensemble", "/v2/models/ensemble/versions/1"] {
                let r = try await client.execute(uri: uri, method: .get)
                #expect(r.status == .ok)
                let o = try jsonObject(r.body)
                #expect(o["name"] as? String == "ensemble")
                #expect(o["versions"] as? [String] == ["1"])
                #expect(o["platform"] as? String == "ensemble")
                let inputs = try #require(o["inputs"] as? [[String: Any]])
                #expect(inputs.first?["name"] as? String == "text_input")
                #expect(inputs.first?["datatype"] as? String == "BYTES")
                #expect(inputs.first?["shape"] as? [Int] == [-1, 1])
                #expect((o["outputs"] as? [[String: Any]])?.first?["name"] as? String == "text_output")
            }
            #expect(try await client.execute(uri: "/v2/models/ensemble/ready", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/v2/models/ensemble/versions/1/ready", method: .get).status == .ok)
            let notReady = try await client.execute(uri: "/v2/models/nope/ready", method: .get)
            #expect(notReady.status == .badRequest)
            #expect(try errorMessage(notReady) == "Model version not ready")

            let config = try await client.execute(uri: "/v2/models/ensemble/config", method: .get)
            #expect(config.status == .ok)
            let c = try jsonObject(config.body)
            #expect(c["name"] as? String == "ensemble")
            #expect(c["max_batch_size"] as? Int == 64)
            #expect(c["backend"] as? String == "")  // defaults are present, as Triton prints them
            let input = try #require((c["input"] as? [[String: Any]])?.first)
            #expect(input["data_type"] as? String == "TYPE_STRING")
            #expect(input["dims"] as? [Int] == [1])  // int64 dims as numbers, not strings
            #expect(input["optional"] as? Bool == false)
            #expect(input["format"] as? String == "FORMAT_NONE")
            #expect((c["model_transaction_policy"] as? [String: Any])?["decoupled"] as? Bool == true)
            let identityConfig = try jsonObject(try await client.execute(uri: "/v2/models/identity/config", method: .get).body)
            #expect(identityConfig["max_batch_size"] as? Int == 0)
            #expect((identityConfig["input"] as? [[String: Any]])?.count == 6)

            let stats = try await client.execute(uri: "/v2/models/ensemble/stats", method: .get)
            #expect(stats.status == .ok)
            let s = try #require((try jsonObject(stats.body)["model_stats"] as? [[String: Any]])?.first)
            #expect(s["name"] as? String == "ensemble")
            #expect(s["version"] as? String == "1")
            #expect(s["last_inference"] as? Int == 1_700_000_000_000)
            #expect(s["inference_count"] as? Int == 3)
            #expect(s["execution_count"] as? Int == 2)
            let inference = try #require(s["inference_stats"] as? [String: Any])
            for key in ["success", "fail", "queue", "compute_input", "compute_infer", "compute_output"] {
                let d = try #require(inference[key] as? [String: Any], "\(key)")
                #expect(d["count"] is NSNumber && d["ns"] is NSNumber)
            }
            #expect((inference["success"] as? [String: Any])?["ns"] as? Int == 123_456_789)
            let all = try jsonObject(try await client.execute(uri: "/v2/models/stats", method: .get).body)
            #expect((all["model_stats"] as? [Any])?.count == 5)
        }
    }

    @Test func unknownModelsRoutesAndMethods() async throws {
        try await withApp { client in
            let unknown = try await client.execute(uri: "/v2/models/nope", method: .get)
            #expect(unknown.status == .notFound)
            #expect(try errorMessage(unknown).contains("unknown model"))
            #expect(try await client.execute(uri: "/v2/models/nope/config", method: .get).status == .notFound)
            let route = try await client.execute(uri: "/v2/nothing/here", method: .get)
            #expect(route.status == .notFound)
            #expect(try errorMessage(route) == "Not Found")
            #expect(try await client.execute(uri: "/", method: .get).status == .notFound)
            let method = try await client.execute(uri: "/v2/models/ensemble/infer", method: .get)
            #expect(method.status == .methodNotAllowed)
            #expect(try errorMessage(method) == "Method Not Allowed")
            #expect(try await client.execute(uri: "/v2/health/live", method: .post).status == .methodNotAllowed)
        }
    }

    @Test func repositoryIndexLoadAndUnload() async throws {
        let probe = FakeProbe()
        try await withApp(FakeService(probe: probe)) { client in
            let all = try jsonArray(try await post(client, "/v2/repository/index", "").body)
            #expect(all.count == 6)
            let broken = try #require(all.last as? [String: Any])
            #expect(broken["name"] as? String == "broken")
            #expect(broken["version"] == nil)  // absent when the model has no version
            #expect(broken["state"] as? String == "UNAVAILABLE")
            #expect(broken["reason"] as? String == "config.pbtxt:3: unknown field 'foo'")
            let first = try #require(all.first as? [String: Any])
            #expect(first["reason"] == nil)
            #expect(first["version"] as? String == "1")
            #expect(try jsonArray(try await post(client, "/v2/repository/index", #"{"ready": true}"#).body).count == 5)
            let badReady = try await post(client, "/v2/repository/index", #"{"ready": "yes"}"#)
            #expect(badReady.status == .badRequest)
            #expect(try errorMessage(badReady) == "Invalid value for 'ready': expected a boolean")

            #expect(try await post(client, "/v2/repository/models/identity/load", "").status == .ok)
            #expect(try await post(client, "/v2/repository/models/ensemble/load",
                                   #"{"parameters": {"config": "{\"max_batch_size\": 8}"}}"#).status == .ok)
            let failed = try await post(client, "/v2/repository/models/missing/load", "")
            #expect(failed.status == .badRequest)
            #expect(try errorMessage(failed).contains("failed to load 'missing'"))
            #expect(try await post(client, "/v2/repository/models/ensemble/unload",
                                   #"{"parameters": {"unload_dependents": true}}"#).status == .ok)
            #expect(try await post(client, "/v2/repository/models/identity/unload", "").status == .ok)
            #expect(try await post(client, "/v2/repository/models/identity/unload", "{not json").status == .badRequest)
            let named = try await post(client, "/v2/repository/myrepo/index", "")
            #expect(named.status == .notImplemented)
        }
        let (loads, unloads) = probe.state.withLock { ($0.loads, $0.unloads) }
        #expect(loads.map(\.0) == ["identity", "ensemble"])
        #expect(loads.map(\.1) == [nil, #"{"max_batch_size": 8}"#])
        #expect(unloads.map(\.0) == ["ensemble", "identity"])
        #expect(unloads.map(\.1) == [true, false])
    }

    @Test func loggingSettingsChangeTheLog() async throws {
        let lines = Mutex<[String]>([])
        var options = HTTPFrontendOptions()
        options.log = ServerLog(write: { line in lines.withLock { $0.append(line) } })
        let log = options.log
        try await withApp(options: options) { client in
            let initial = try jsonObject(try await client.execute(uri: "/v2/logging", method: .get).body)
            #expect(initial["log_info"] as? Bool == true)
            #expect(initial["log_verbose_level"] as? Int == 0)
            #expect(initial["log_format"] as? String == "default")
            #expect(initial["log_file"] as? String == "")
            _ = try await client.execute(uri: "/v2/health/live", method: .get)
            #expect(lines.withLock { $0.isEmpty })   // verbose 0: requests are not logged

            let updated = try await post(client, "/v2/logging", #"{"log_verbose_level": 1, "log_info": false, "log_format": "ISO8601", "log_error": null}"#)
            #expect(updated.status == .ok)
            let o = try jsonObject(updated.body)
            #expect(o["log_verbose_level"] as? Int == 1 && o["log_info"] as? Bool == false && o["log_error"] as? Bool == true)
            #expect(log.settings.verboseLevel == 1 && !log.settings.info && log.settings.format == .iso8601)
            _ = try await client.execute(uri: "/v2/health/live", method: .get)
            log.info("an info line")
            log.warning("a warning")
            let written = lines.withLock { $0 }
            #expect(!written.contains { $0.contains("an info line") })
            let request = try #require(written.first { $0.contains("HTTP request: GET /v2/health/live") })
            #expect(request.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ V \d+ KServeResponder.swift:\d+\] "#, options: .regularExpression) != nil)
            #expect(written.last?.contains(" W ") == true && written.last?.hasSuffix("] a warning\n") == true)

            // Refused requests change nothing.
            #expect(try await post(client, "/v2/logging", #"{"log_info": 3}"#).status == .badRequest)
            #expect(try await post(client, "/v2/logging", #"{"log_format": "json", "log_info": true}"#).status == .badRequest)
            let file = try await post(client, "/v2/logging", #"{"log_file": "/tmp/petrel.log"}"#)
            #expect(file.status == .notImplemented)
            #expect(try errorMessage(file).contains("log file location can not be updated"))
            #expect(log.settings.info == false && log.settings.file == "")
        }
    }

    @Test func tracingAndSharedMemoryAnswerAsTritonWithoutThem() async throws {
        try await withApp { client in
            for uri in ["/v2/trace/setting", "/v2/models/ensemble/trace/setting"] {
                let get = try await client.execute(uri: uri, method: .get)
                #expect(get.status == .serviceUnavailable)
                #expect(try errorMessage(get) == "the server does not support tracing")
                #expect(try await post(client, uri, #"{"trace_level": ["OFF"]}"#).status == .serviceUnavailable)
            }
            for kind in ["system", "cuda"] {
                let status = try await client.execute(uri: "/v2/\(kind)sharedmemory/status", method: .get)
                #expect(status.status == .ok && text(status.body) == "[]")
                for action in ["register", "unregister", "region/r0/unregister"] {
                    let r = try await post(client, "/v2/\(kind)sharedmemory/\(action)", "{}")
                    #expect(r.status == .notImplemented, "\(kind) \(action)")
                    #expect(try errorMessage(r).contains("shared memory is not supported"))
                }
            }
        }
    }
}

@Suite struct InferTests {
    @Test func jsonTensorsRoundTrip() async throws {
        let probe = FakeProbe()
        try await withApp(FakeService(probe: probe)) { client in
            let body = """
                {"id": "req-7", "parameters": {"priority": 1, "custom": "x", "ratio": 0.5, "flag": true},
                 "inputs": [
                   {"name": "INPUT0", "datatype": "INT32", "shape": [4], "data": [1, -2, 2147483647, -2147483648]},
                   {"name": "INPUT1", "datatype": "FP32", "shape": [2, 2], "data": [[0.5, 1], [2.25, -3]]},
                   {"name": "INPUT2", "datatype": "BYTES", "shape": [2], "data": ["héllo wörld", "日本\\n\\"q\\""]},
                   {"name": "INPUT3", "datatype": "BOOL", "shape": [3], "data": [true, false, true]},
                   {"name": "INPUT5", "datatype": "UINT64", "shape": [2], "data": [18446744073709551615, 0]}
                 ]}
                """
            let r = try await post(client, "/v2/models/identity/infer", body)
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "application/json")
            #expect(r.headers[HTTPField.Name("Inference-Header-Content-Length")!] == nil)
            let o = try jsonObject(r.body)
            #expect(o["id"] as? String == "req-7")
            #expect(o["model_name"] as? String == "identity")
            #expect(o["model_version"] as? String == "1")
            let params = try #require(o["parameters"] as? [String: Any])
            #expect(params["priority"] as? Int == 1)
            #expect(params["custom"] as? String == "x")
            #expect(params["ratio"] as? Double == 0.5)
            #expect(params["flag"] as? Bool == true)
            let outputs = try #require(o["outputs"] as? [[String: Any]])
            #expect(outputs.map { $0["name"] as? String } == ["OUTPUT0", "OUTPUT1", "OUTPUT2", "OUTPUT3", "OUTPUT5"])
            #expect(outputs[0]["datatype"] as? String == "INT32")
            #expect(outputs[0]["shape"] as? [Int] == [4])
            #expect(outputs[0]["data"] as? [Int] == [1, -2, 2147483647, -2147483648])
            #expect(outputs[1]["shape"] as? [Int] == [2, 2])
            #expect(outputs[1]["data"] as? [Double] == [0.5, 1, 2.25, -3])  // nested data arrives flat
            #expect(outputs[2]["data"] as? [String] == ["héllo wörld", "日本\n\"q\""])
            #expect(outputs[3]["data"] as? [Bool] == [true, false, true])
            #expect(outputs[4]["data"] as? [UInt64] == [UInt64.max, 0])
            // The service saw typed tensors and the parameters.
            let seen = try #require(probe.state.withLock { $0.lastRequest })
            #expect(seen.id == "req-7")
            #expect(seen.inputs[0].data == .ints([1, -2, 2147483647, -2147483648]))
            #expect(seen.inputs[4].data == .ints([-1, 0]))  // UINT64 above Int64.max: its bit pattern
            #expect(seen.parameters["ratio"] == .double(0.5))
        }
    }

    @Test func requestedOutputsFilterAndMixedFormats() async throws {
        try await withApp { client in
            let body = """
                {"inputs": [
                   {"name": "INPUT0", "datatype": "INT32", "shape": [2], "data": [7, 8]},
                   {"name": "INPUT2", "datatype": "BYTES", "shape": [1], "data": ["only"]}],
                 "outputs": [{"name": "OUTPUT2", "parameters": {"binary_data": true}}, {"name": "OUTPUT0"}]}
                """
            let r = try await post(client, "/v2/models/identity/infer", body)
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "application/octet-stream")
            let headerLength = try #require(r.headers[HTTPField.Name("Inference-Header-Content-Length")!].flatMap { Int($0) })
            let bytes = Array(r.body.readableBytesView)
            let o = try jsonObject(Array(bytes[..<headerLength]))
            let outputs = try #require(o["outputs"] as? [[String: Any]])
            #expect(outputs.count == 2)
            let out0 = try #require(outputs.first { $0["name"] as? String == "OUTPUT0" })
            #expect(out0["data"] as? [Int] == [7, 8])  // listed without binary_data: JSON
            let out2 = try #require(outputs.first { $0["name"] as? String == "OUTPUT2" })
            #expect(out2["data"] == nil)
            #expect((out2["parameters"] as? [String: Any])?["binary_data_size"] as? Int == 8)
            #expect(Array(bytes[headerLength...]) == bytesElements(["only"]))
        }
    }

    @Test func binaryTensorsBothWays() async throws {
        try await withApp { client in
            let int32 = le([Int32(3), -4, 5])
            let fp32 = le([Float(1.5), -2, 0.25, 1e-3].map(\.bitPattern))
            let strings = bytesElements(["a", "", "日本語 🙂"])
            let fp16 = le([UInt16(0x3C00), 0xC000, 0x7BFF])  // 1, -2, 65504
            let header = """
                {"inputs": [
                  {"name": "INPUT0", "datatype": "INT32", "shape": [3], "parameters": {"binary_data_size": \(int32.count)}},
                  {"name": "INPUT1", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": \(fp32.count)}},
                  {"name": "INPUT2", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": \(strings.count)}},
                  {"name": "INPUT4", "datatype": "FP16", "shape": [3], "parameters": {"binary_data_size": \(fp16.count)}}],
                 "parameters": {"binary_data_output": true}}
                """
            var body = ByteBuffer(string: header)
            body.writeBytes(int32 + fp32 + strings + fp16)
            let r = try await client.execute(uri: "/v2/models/identity/infer", method: .post,
                                             headers: [HTTPField.Name("Inference-Header-Content-Length")!: String(header.utf8.count)],
                                             body: body)
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == "application/octet-stream")
            let headerLength = try #require(r.headers[HTTPField.Name("Inference-Header-Content-Length")!].flatMap { Int($0) })
            let bytes = Array(r.body.readableBytesView)
            let outputs = try #require(try jsonObject(Array(bytes[..<headerLength]))["outputs"] as? [[String: Any]])
            let sizes = outputs.map { ($0["parameters"] as? [String: Any])?["binary_data_size"] as? Int }
            #expect(sizes == [int32.count, fp32.count, strings.count, fp16.count])
            #expect(outputs.allSatisfy { $0["data"] == nil })
            #expect(outputs[2]["shape"] as? [Int] == [3])
            // The binary sections follow the JSON in output order, byte for byte.
            #expect(Array(bytes[headerLength...]) == int32 + fp32 + strings + fp16)
        }
    }

    @Test func badInputsAnswerTheRightStatusAndLeaveTheServerHealthy() async throws {
        try await withApp(options: HTTPFrontendOptions(maxBodyBytes: 4096)) { client in
            let valid = #"{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1], "data": [1]}]}"#
            let cases: [(String, String, HTTPResponse.Status, String)] = [
                ("/v2/models/nope/infer", valid, .notFound, "unknown model"),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1], "data": [1]}]}"#,
                 .badRequest, "data-type is 'FP32'"),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [3], "data": [1, 2]}]}"#,
                 .badRequest, "shape does not match"),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 1], "data": [1]}]}"#,
                 .badRequest, "unexpected shape"),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1], "data": ["x"]}]}"#,
                 .badRequest, "expects integers"),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1], "data": [3000000000]}]}"#,
                 .badRequest, "out of range"),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT0", "datatype": "INT33", "shape": [1], "data": [1]}]}"#,
                 .badRequest, "invalid datatype"),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT2", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}"#,
                 .badRequest, "missing required input(s) [\"INPUT0\"]"),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1]}]}"#,
                 .badRequest, "no field is set"),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1], "data": [1]}"#,
                 .badRequest, "failed to parse the request JSON"),
                ("/v2/models/identity/infer", "", .badRequest, "failed to parse the request JSON"),
                ("/v2/models/identity/infer", #"{"inputs": {}}"#, .badRequest, "Unable to parse 'inputs'"),
                ("/v2/models/identity/infer", #"{"inputs": [], "parameters": {"triton_x": 1}}"#, .badRequest, "reserved"),
                ("/v2/models/identity/infer", #"{"inputs": [], "parameters": {"nested": {"a": 1}}}"#, .badRequest, "invalid type"),
                ("/v2/models/identity/infer", String(repeating: " ", count: 5000) + valid, .badRequest,
                 "exceeds the maximum allowed input size of 4096 bytes"),
                ("/v2/models/failing/infer", #"{"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]}]}"#,
                 .internalServerError, "exploded"),
            ]
            for (uri, body, status, fragment) in cases {
                let r = try await post(client, uri, body)
                #expect(r.status == status, "\(body.prefix(100))")
                let message = try errorMessage(r)
                #expect(message.contains(fragment), "\(message) lacks \(fragment)")
                #expect(try await client.execute(uri: "/v2/health/ready", method: .get).status == .ok)
            }
            // Binary sizes that disagree with the body.
            let header = #"{"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [2], "parameters": {"binary_data_size": 8}}]}"#
            for (extra, fragment) in [([UInt8](repeating: 0, count: 4), "expecting 4 additional bytes"),
                                      ([UInt8](repeating: 0, count: 12), "unexpected additional input data")] {
                var body = ByteBuffer(string: header)
                body.writeBytes(extra)
                let r = try await client.execute(uri: "/v2/models/identity/infer", method: .post,
                                                 headers: [HTTPField.Name("Inference-Header-Content-Length")!: String(header.utf8.count)],
                                                 body: body)
                #expect(r.status == .badRequest)
                #expect(try errorMessage(r).contains(fragment))
            }
            let noHeader = try await post(client, "/v2/models/identity/infer", header)
            #expect(try errorMessage(noHeader).contains("Inference-Header-Content-Length"))
            // Still serving.
            let ok = try await post(client, "/v2/models/identity/infer", valid)
            #expect(ok.status == .ok)
        }
    }
}

@Suite struct InvalidUTF8Tests {
    /// RFC 8259: JSON text is UTF-8. Every JSON route answers 400 naming the first bad byte.
    @Test func invalidUTF8InAnyJSONBodyIs400NamingTheByte() async throws {
        try await withApp { client in
            func body(_ prefix: String, _ suffix: String) -> ByteBuffer {
                var b = ByteBuffer(string: prefix)
                b.writeBytes([0xFF, 0xFE])
                b.writeString(suffix)
                return b
            }
            let cases: [(String, String, String, Int)] = [
                ("/v2/models/ensemble/generate", #"{"text_input": ""#, #"", "max_tokens": 4}"#, 16),
                ("/v2/models/ensemble/generate_stream", #"{"text_input": ""#, #"", "max_tokens": 4}"#, 16),
                ("/v2/models/identity/infer", #"{"inputs": [{"name": "INPUT2", "datatype": "BYTES", "shape": [1], "data": [""#, #""]}]}"#, 76),
                ("/v2/logging", #"{"log_format": ""#, #""}"#, 16),
                ("/v2/repository/index", #"{"ready": "#, "}", 10),
                ("/v1/completions", #"{"model": "ensemble", "prompt": ""#, #""}"#, 33),
                ("/v1/chat/completions", #"{"model": "ensemble", "messages": [{"role": "user", "content": ""#, #""}]}"#, 64),
            ]
            for (uri, prefix, suffix, offset) in cases {
                let r = try await client.execute(uri: uri, method: .post, body: body(prefix, suffix))
                #expect(r.status == .badRequest, "\(uri)")
                let text = String(buffer: r.body)
                #expect(text.contains("invalid UTF-8") && text.contains("offset \(offset)"), "\(uri): \(text)")
                #expect(try await client.execute(uri: "/v2/health/ready", method: .get).status == .ok)
            }
        }
    }
}

@Suite struct RestrictedAPITests {
    @Test func parsesTritonsFlag() throws {
        let r = try RestrictedAPI(parsing: "model-repository,logging:admin-key=s3cr=t")
        #expect(r.groups == [.modelRepository, .logging])
        #expect(r.headerName == "admin-key")
        #expect(r.headerValue == "s3cr=t")
        #expect(throws: (any Error).self) { try RestrictedAPI(parsing: "model-repo:admin-key=x") }
        #expect(throws: (any Error).self) { try RestrictedAPI(parsing: "logging") }
    }

    @Test func protectedRoutesNeedTheHeader() async throws {
        let options = HTTPFrontendOptions(restrictedAPIs: [try RestrictedAPI(parsing: "model-repository,statistics:Admin-Key=secret")])
        try await withApp(options: options) { client in
            let denied = try await post(client, "/v2/repository/index", "")
            #expect(denied.status == .forbidden)
            #expect(try errorMessage(denied) == "This API is restricted, expecting header 'Admin-Key'")
            #expect(try await post(client, "/v2/repository/models/x/unload", "").status == .forbidden)
            #expect(try await client.execute(uri: "/v2/models/ensemble/stats", method: .get).status == .forbidden)
            let wrong = try await post(client, "/v2/repository/index", "", headers: [HTTPField.Name("admin-key")!: "nope"])
            #expect(wrong.status == .forbidden)
            // Header names are case-insensitive; the value must match exactly.
            let allowed = try await post(client, "/v2/repository/index", "", headers: [HTTPField.Name("admin-key")!: "secret"])
            #expect(allowed.status == .ok)
            #expect(try await client.execute(uri: "/v2/models/ensemble/stats", method: .get,
                                             headers: [HTTPField.Name("ADMIN-KEY")!: "secret"]).status == .ok)
            // Other groups are open.
            #expect(try await client.execute(uri: "/v2/models/ensemble", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/v2/health/ready", method: .get).status == .ok)
        }
    }
}
