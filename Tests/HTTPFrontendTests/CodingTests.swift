// Pure parts of the frontend: route matching as Triton matches paths, the JSON reader and
// writer, half-precision conversion, and the generate extension's shape rule.
import Foundation
@testable import HTTPFrontend
@testable import Serving
import Compute
import JSONCore
import Testing

@Suite struct RouteTests {
    @Test func matchesTritonsPaths() {
        let cases: [(String, Route?)] = [
            ("/v2", .serverMetadata),
            ("/v2/health/live", .health(live: true)),
            ("/v2/health/ready", .health(live: false)),
            ("/v2/models/m", .modelMetadata(model: "m", version: "")),
            ("/v2/models/m/versions/12", .modelMetadata(model: "m", version: "12")),
            ("/v2/models/m/versions/12/ready", .modelReady(model: "m", version: "12")),
            ("/v2/models/m/config", .modelConfig(model: "m", version: "")),
            ("/v2/models/m/stats", .modelStats(model: "m", version: "")),
            ("/v2/models/stats", .modelStats(model: "", version: "")),
            ("/v2/models/m/infer", .infer(model: "m", version: "")),
            ("/v2/models/m/versions/1/generate", .generate(model: "m", version: "1", stream: false)),
            ("/v2/models/m/generate_stream", .generate(model: "m", version: "", stream: true)),
            ("/v2/models/my%20model/infer", .infer(model: "my model", version: "")),
            ("/v2/models/m/trace/setting", .modelTrace(model: "m")),
            ("/v2/repository/index", .repositoryIndex(repository: "")),
            ("/v2/repository/models/m/load", .repositoryLoad(repository: "", model: "m")),
            ("/v2/repository/models/m/unload", .repositoryUnload(repository: "", model: "m")),
            ("/v2/repository/r/models/m/load", .repositoryLoad(repository: "r", model: "m")),
            ("/v2/repository/models/index", .repositoryIndex(repository: "models")),
            ("/v2/logging", .logging),
            ("/v2/trace/setting", .trace),
            ("/v2/systemsharedmemory/status", .sharedMemory(cuda: false, region: "", action: .status)),
            ("/v2/cudasharedmemory/region/r0/unregister", .sharedMemory(cuda: true, region: "r0", action: .unregister)),
            ("/v2/", nil), ("/v2/models", nil), ("/v2/models/m/versions/x", nil), ("/v2/models/m/versions/1/trace/setting", nil),
            ("/v2/models/m/infer/extra", nil), ("/v3", nil), ("/", nil), ("/v2/health", nil), ("/v2/models/m%zz/infer", nil),
            ("/v2/repository/models/m/reload", nil),
        ]
        for (path, expected) in cases { #expect(Route(path: path) == expected, "\(path)") }
    }

    @Test func groupsAndMethods() {
        #expect(Route.repositoryIndex(repository: "").group == .modelRepository)
        #expect(Route.modelReady(model: "m", version: "").group == .health)
        #expect(Route.modelMetadata(model: "m", version: "").group == .metadata)
        #expect(Route.generate(model: "m", version: "", stream: true).group == .inference)
        #expect(Route.modelStats(model: "", version: "").group == .statistics)
        #expect(Route.infer(model: "m", version: "").allows(.post))
        #expect(!Route.infer(model: "m", version: "").allows(.get))
        #expect(Route.logging.allows(.get) && Route.logging.allows(.post))
    }
}

@Suite struct JSONTests {
    @Test func numbersKeepIntegerness() throws {
        let v = try JSONParser.parse(Array(#"[0, -1, 9223372036854775807, -9223372036854775808, 18446744073709551615, 18446744073709551616, 1.5, 1e3, -0.0]"#.utf8), options: .kserve)
        #expect(v == .array([.int(0), .int(-1), .int(Int64.max), .int(Int64.min), .uint(UInt64.max),
                             .double(18446744073709551616), .double(1.5), .double(1000), .double(-0.0)]))
    }

    @Test func stringsAndEscapes() throws {
        let v = try JSONParser.parse(Array(#"{"a": "tab\there \u00e9 \ud83d\ude42 \"q\" \\ \/", "b": "日本"}"#.utf8), options: .kserve)
        #expect(v["a"] == .string("tab\there é 🙂 \"q\" \\ /"))
        #expect(v["b"] == .string("日本"))
        var w = JSONWriter()
        w.value(v)
        // Non-ASCII passes through unescaped; control characters are escaped.
        #expect(String(decoding: w.bytes, as: UTF8.self) == #"{"a":"tab\there é 🙂 \"q\" \\ /","b":"日本"}"#)
        var c = JSONWriter()
        c.string("\u{1}\n")
        #expect(String(decoding: c.bytes, as: UTF8.self) == #""\u0001\n""#)
    }

    @Test func rejectsMalformedInput() {
        for text in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"\\x\"", "\"\\ud800\"", "tru", "[1] 2", "{\"a\":1,}", "\"a\u{1}\""] {
            #expect(throws: JSONParseError.self, "\(text)") { try JSONParser.parse(Array(text.utf8), options: .kserve) }
        }
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(deep.utf8), options: .kserve) }
    }

    @Test func writesDoublesAsRapidJSONDoes() {
        var w = JSONWriter()
        w.value(.array([.double(1), .double(0.1), .double(-2.5e-8), .double(Double(Float(0.1))), .double(.nan)]))
        #expect(String(decoding: w.bytes, as: UTF8.self) == "[1.0,0.1,-2.5e-08,0.10000000149011612,NaN]")
    }
}

@Suite struct HalfPrecisionTests {
    @Test func roundTripsEveryHalfValue() {
        var wrong: [UInt16] = []
        for bits in UInt16.min...UInt16.max {
            let f = halfToFloat(bits)
            let ok = f.isNaN ? halfBits(f) & 0x7C00 == 0x7C00 && halfBits(f) & 0x3FF != 0 : halfBits(f) == bits
            if !ok { wrong.append(bits) }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(10))")
    }

    @Test func roundsToNearestEven() {
        #expect(halfBits(1.0) == 0x3C00)
        #expect(halfBits(65504) == 0x7BFF)
        #expect(halfBits(65520) == 0x7C00)  // rounds up to infinity
        #expect(halfBits(1 + 1.0 / 2048) == 0x3C00)  // a tie rounds to even
        #expect(halfBits(1 + 3.0 / 2048) == 0x3C02)
        #expect(halfBits(5.960464477539063e-08) == 0x0001)  // smallest subnormal
        #expect(bfloat16Bits(1.0) == 0x3F80)
        #expect(Float(bitPattern: UInt32(bfloat16Bits(3.140625)) << 16) == 3.140625)
    }
}

@Suite struct GenerateShapeTests {
    func meta(_ shape: [Int], _ type: TensorDataType = .int32) -> TensorMetadata {
        TensorMetadata(name: "x", datatype: type, shape: shape)
    }

    @Test func fillsVariableDimensionsLikeTriton() throws {
        #expect(try GenerateCoding.tensor(meta([-1, 1]), .int(5)).shape == [1, 1])
        #expect(try GenerateCoding.tensor(meta([-1, -1]), .array([.int(1), .int(2), .int(3)])).shape == [1, 3])
        #expect(try GenerateCoding.tensor(meta([-1, 2]), .array([.int(1), .int(2), .int(3), .int(4)])).shape == [2, 2])
        #expect(try GenerateCoding.tensor(meta([1]), .int(7)).shape == [1])
        #expect(try GenerateCoding.tensor(meta([]), .int(7)).shape == [])
        #expect(throws: ServingError.self) { try GenerateCoding.tensor(meta([-1, 2]), .array([.int(1), .int(2), .int(3)])) }
        #expect(throws: ServingError.self) { try GenerateCoding.tensor(meta([2]), .int(1)) }
        let text = try GenerateCoding.tensor(meta([-1, 1], .bytes), .string("héllo"))
        #expect(text.data == .bytes([Data("héllo".utf8)]))
    }

    @Test func responseKeysAreSortedAndSingleElementsAreScalars() throws {
        let r = InferResponse(modelName: "m", modelVersion: "1", id: "", outputs: [
            InferTensor(name: "text_output", datatype: .bytes, shape: [1, 1], data: .bytes([Data("hi".utf8)])),
            InferTensor(name: "cum_log_probs", datatype: .fp32, shape: [1], data: .floats([-0.5])),
            InferTensor(name: "output_ids", datatype: .int32, shape: [1, 3], data: .ints([4, 5, 6])),
        ], parameters: ["triton_final_response": .bool(true)])
        let text = String(decoding: try GenerateCoding.encodeResponse(r), as: UTF8.self)
        #expect(text == #"{"cum_log_probs":-0.5,"model_name":"m","model_version":"1","output_ids":[4,5,6],"text_output":"hi","triton_final_response":true}"#)
    }
}
