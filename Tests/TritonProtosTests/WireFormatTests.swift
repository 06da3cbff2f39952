// Field numbers are the wire contract with Triton clients: a few hand-encoded bytes pin them
// (tag = field_number << 3 | wire_type), and the gRPC messages round-trip.
import Foundation
import SwiftProtobuf
import Testing
import TritonProtos

@Suite("wire format")
struct WireFormatTests {
    @Test func modelConfigFieldNumbers() throws {
        var c = Inference_ModelConfig()
        c.maxBatchSize = 8          // field 4, varint
        c.backend = "x"             // field 17, length-delimited: tag 138 = 0x8A 0x01
        c.modelTransactionPolicy.decoupled = true  // field 19 { field 1 }
        let bytes: [UInt8] = try c.serializedBytes()
        #expect(bytes == [0x20, 0x08, 0x8A, 0x01, 0x01, 0x78, 0x9A, 0x01, 0x02, 0x08, 0x01])
    }

    @Test func modelInputFieldNumbers() throws {
        var input = Inference_ModelInput()
        input.name = "a"            // 1
        input.dataType = .typeString  // 2 = 13
        input.dims = [-1]           // 4, packed
        input.optional = true       // 8
        let bytes: [UInt8] = try input.serializedBytes()
        #expect(bytes == [0x0A, 0x01, 0x61, 0x10, 0x0D, 0x22, 0x0A]
            + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01] + [0x40, 0x01])
    }

    @Test func inferRequestFieldNumbers() throws {
        var request = Inference_ModelInferRequest()
        request.modelName = "m"     // 1
        request.rawInputContents = [Data([1, 2])]  // 7
        let bytes: [UInt8] = try request.serializedBytes()
        #expect(bytes == [0x0A, 0x01, 0x6D, 0x3A, 0x02, 0x01, 0x02])

        var parameter = Inference_InferParameter()
        parameter.uint64Param = 5   // 5
        #expect(try parameter.serializedBytes() == [UInt8]([0x28, 0x05]))
    }

    @Test func inferRequestRoundTrip() throws {
        let request = Inference_ModelInferRequest.with {
            $0.modelName = "ensemble"
            $0.modelVersion = "1"
            $0.id = "req-1"
            $0.parameters["sequence_id"] = .with { $0.uint64Param = 42 }
            $0.parameters["priority"] = .with { $0.int64Param = 1 }
            $0.inputs = [
                .with {
                    $0.name = "text_input"
                    $0.datatype = "BYTES"
                    $0.shape = [1, 1]
                    $0.contents.bytesContents = [Data("What is Swift?".utf8)]
                },
                .with {
                    $0.name = "max_tokens"
                    $0.datatype = "INT32"
                    $0.shape = [1, 1]
                    $0.contents.intContents = [20]
                },
            ]
            $0.outputs = [.with { $0.name = "text_output" }]
        }
        let bytes: [UInt8] = try request.serializedBytes()
        let back = try Inference_ModelInferRequest(serializedBytes: bytes)
        #expect(back == request)
        #expect(back.parameters["sequence_id"]?.parameterChoice == .uint64Param(42))

        let streamed = Inference_ModelStreamInferResponse.with {
            $0.inferResponse = .with {
                $0.modelName = "ensemble"
                $0.parameters["triton_final_response"] = .with { $0.boolParam = true }
                $0.outputs = [.with { $0.name = "text_output"; $0.datatype = "BYTES"; $0.shape = [1] }]
                $0.rawOutputContents = [Data([5, 0, 0, 0]) + Data("Swift".utf8)]
            }
        }
        let streamedBytes: [UInt8] = try streamed.serializedBytes()
        #expect(try Inference_ModelStreamInferResponse(serializedBytes: streamedBytes) == streamed)
    }

    @Test func managementMessagesRoundTrip() throws {
        let config = try PbtxtFixtures.config("ensemble")
        let response = Inference_ModelConfigResponse.with { $0.config = config }
        let bytes: [UInt8] = try response.serializedBytes()
        #expect(try Inference_ModelConfigResponse(serializedBytes: bytes).config == config)

        let stats = Inference_ModelStatisticsResponse.with {
            $0.modelStats = [.with {
                $0.name = "tensorrt_llm"
                $0.version = "1"
                $0.inferenceCount = 3
                $0.inferenceStats.success = .with { $0.count = 3; $0.ns = 1_000 }
                $0.responseStats["0"] = .with { $0.computeInfer.count = 3 }
                $0.memoryUsage = [.with { $0.type = "GPU"; $0.id = 0; $0.byteSize = 1 << 30 }]
            }]
        }
        let statsBytes: [UInt8] = try stats.serializedBytes()
        #expect(try Inference_ModelStatisticsResponse(serializedBytes: statsBytes) == stats)

        let load = Inference_RepositoryModelLoadRequest.with {
            $0.modelName = "m"
            $0.parameters["config"] = .with { $0.stringParam = "{}" }
            $0.parameters["file:1/model.onnx"] = .with { $0.bytesParam = Data([0xAB]) }
        }
        let loadBytes: [UInt8] = try load.serializedBytes()
        #expect(try Inference_RepositoryModelLoadRequest(serializedBytes: loadBytes) == load)

        let log = Inference_LogSettingsRequest.with {
            $0.settings["log_verbose_level"] = .with { $0.uint32Param = 1 }
        }
        let logBytes: [UInt8] = try log.serializedBytes()
        #expect(try Inference_LogSettingsRequest(serializedBytes: logBytes) == log)
        #expect(Inference_TraceSettingRequest.with { $0.modelName = "m" }.modelName == "m")
        #expect(Inference_CudaSharedMemoryRegisterRequest.with { $0.deviceID = 1 }.deviceID == 1)
        #expect(Inference_SystemSharedMemoryStatusResponse().regions.isEmpty)
    }

    @Test func healthCheck() throws {
        let response = Grpc_Health_V1_HealthCheckResponse.with { $0.status = .serving }
        #expect(try response.serializedBytes() == [UInt8]([0x08, 0x01]))
        #expect(Grpc_Health_V1_HealthCheckResponse.ServingStatus.serviceUnknown.rawValue == 3)
        #expect(Grpc_Health_V1_HealthCheckRequest.protoMessageName == "grpc.health.v1.HealthCheckRequest")
        #expect(Inference_ModelConfig.protoMessageName == "inference.ModelConfig")
    }
}
