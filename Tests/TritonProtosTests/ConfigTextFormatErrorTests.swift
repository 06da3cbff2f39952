// Errors from decodeModelConfig must name the file, the line and the field.
import SwiftProtobuf
import Testing
import TritonProtos

@Suite("config.pbtxt errors")
struct ConfigTextFormatErrorTests {
    /// Decodes `text` and returns the located error (fails the test if it decodes).
    func error(_ text: String, path: String = "m/config.pbtxt") -> ConfigTextFormatError? {
        do {
            let config = try decodeModelConfig(text: text, path: path)
            Issue.record("expected an error, decoded \(config)")
            return nil
        } catch let error as ConfigTextFormatError {
            return error
        } catch {
            Issue.record("unexpected error type \(type(of: error)): \(error)")
            return nil
        }
    }

    /// The tensorrt_llm fixture with `line` inserted before its line `before` (1-based).
    func fixture(inserting line: String, before: Int) throws -> String {
        var lines = try PbtxtFixtures.text("tensorrt_llm").components(separatedBy: "\n")
        lines.insert(line, at: before - 1)
        return lines.joined(separator: "\n")
    }

    @Test func unknownFieldDeepInAFixture() throws {
        // line 13 of the fixture is `    default_queue_policy { max_queue_size: 1024 }`
        let text = try fixture(inserting: "    max_queue_delay_microsecond: 100", before: 13)
        let e = try #require(error(text, path: "repo/tensorrt_llm/config.pbtxt"))
        #expect(e.path == "repo/tensorrt_llm/config.pbtxt")
        #expect(e.line == 13)
        #expect(e.column == 5)
        #expect(e.field == "max_queue_delay_microsecond")
        #expect(e.fieldPath == "dynamic_batching.max_queue_delay_microsecond")
        #expect(e.decodingError == .unknownField)
        #expect(e.description
            == "repo/tensorrt_llm/config.pbtxt:13:5: field 'dynamic_batching.max_queue_delay_microsecond': unknown field 'max_queue_delay_microsecond'")
    }

    @Test func unknownFieldInsideAListOfInputs() throws {
        // line 22 of the fixture is `  },`, the end of input_ids
        let text = try fixture(inserting: "    allow_ragged_batches: true", before: 22)
        let e = try #require(error(text))
        #expect(e.line == 22)
        #expect(e.fieldPath == "input.allow_ragged_batches")
        #expect(e.decodingError == .unknownField)
    }

    @Test func unknownMessageFieldAtTopLevel() throws {
        let e = try #require(error("""
            name: "m"
            max_batch_size: 8
            # a comment
            dynamic_batchin {
              max_queue_delay_microseconds: 10
            }
            """))
        #expect(e.line == 4)
        #expect(e.column == 1)
        #expect(e.field == "dynamic_batchin")
        #expect(e.description.hasPrefix("m/config.pbtxt:4:1: field 'dynamic_batchin': unknown field"))
    }

    @Test func unknownFieldInAMapValue() throws {
        let e = try #require(error("""
            parameters {
              key: "batch_scheduler_policy"
              value: { string_valu: "max_utilization" }
            }
            """))
        #expect(e.line == 3)
        #expect(e.fieldPath == "parameters.value.string_valu")
    }

    @Test func unknownEnumValue() throws {
        let e = try #require(error("""
            name: "m"
            input [
              { name: "a" data_type: TYPE_INT32 dims: [ 1 ] },
              { name: "b"
                data_type: TYPE_INT33
                dims: [ 1 ] }
            ]
            """))
        #expect(e.line == 5)
        #expect(e.fieldPath == "input.data_type")
        #expect(e.decodingError == .unrecognizedEnumValue)
    }

    @Test func wrongValueType() throws {
        let e = try #require(error("name: \"m\"\nmax_batch_size: \"eight\"\n"))
        #expect(e.line == 2)
        #expect(e.field == "max_batch_size")
        #expect(e.decodingError != nil)
    }

    @Test func twoSchedulers() throws {
        let e = try #require(error("""
            name: "m"
            dynamic_batching { }
            ensemble_scheduling {
              step [ { model_name: "a" } ]
            }
            """))
        #expect(e.line == 3)
        #expect(e.field == "ensemble_scheduling")
        #expect(e.decodingError == .conflictingOneOf)
    }

    @Test func unfilledTemplatePlaceholder() throws {
        // TensorRT-LLM's templates are filled by a script; a forgotten one looks like this.
        let e = try #require(error("""
            name: "tensorrt_llm"
            backend: "tensorrtllm"
            max_batch_size: ${triton_max_batch_size}
            """))
        #expect(e.line == 3)
        #expect(e.column == 17)
        #expect(e.field == "max_batch_size")
        #expect(e.reason == "template placeholder ${triton_max_batch_size} was not filled in")
    }

    @Test func unterminatedString() throws {
        let e = try #require(error("name: \"m\"\nbackend: \"python\n"))
        #expect(e.line == 2)
        #expect(e.column == 10)
        #expect(e.field == "backend")
        #expect(e.reason == "unterminated string")
    }

    @Test func missingClosingBrace() throws {
        let e = try #require(error("name: \"m\"\nmodel_transaction_policy {\n  decoupled: true\n"))
        #expect(e.fieldPath == "model_transaction_policy")
        #expect(e.reason.contains("end of text"))
    }

    @Test func strayClosingBrace() throws {
        let e = try #require(error("name: \"m\"\n}\n"))
        #expect(e.line == 2)
        #expect(e.column == 1)
    }

    @Test func validTextHasNoLocation() throws {
        #expect(locateTextFormatError(in: try PbtxtFixtures.text("ensemble")) == nil)
        #expect(locateTextFormatError(in: "") == nil)
    }

    @Test func locatorWorksForOtherMessages() throws {
        let text = "model_name: \"m\"\ninputs { name: \"x\" shape: [1] datatyp: \"INT32\" }\n"
        let location = try #require(
            locateTextFormatError(in: text, messageType: Inference_ModelInferRequest.self))
        #expect(location.line == 2)
        #expect(location.fieldPath == "inputs.datatyp")
        #expect(location.decodingError == .unknownField)
    }

    @Test func unknownFieldsCanBeSkippedExplicitly() throws {
        var options = TextFormatDecodingOptions()
        options.ignoreUnknownFields = true
        let c = try Inference_ModelConfig(
            textFormatString: "name: \"m\"\nfuture_field { x: 1 }\nmax_batch_size: 4\n", options: options)
        #expect(c.name == "m")
        #expect(c.maxBatchSize == 4)
    }
}

@Suite("config.pbtxt map entries")
struct MapEntryTests {
    @Test func mapEntryWithoutValue() throws {
        // protoc's parser (and so Triton) would default the value; swift-protobuf rejects it,
        // and the error must say so and where.
        do {
            _ = try decodeModelConfig(text: """
                name: "m"
                parameters { key: "a" value { string_value: "1" } }
                parameters {
                  key: "b"
                }
                """, path: "m/config.pbtxt")
            Issue.record("expected an error")
        } catch let e as ConfigTextFormatError {
            #expect(e.line == 3)
            #expect(e.field == "parameters")
            #expect(e.reason == "map entry needs both a key and a value")
        }
    }

    @Test func valueBeforeKeyIsFine() throws {
        let c = try decodeModelConfig(
            text: "parameters { value { string_value: \"v\" } key: \"k\" }", path: "p")
        #expect(c.parameters["k"]?.stringValue == "v")
        #expect(locateTextFormatError(in: "parameters { value { string_value: \"v\" } key: \"k\" }") == nil)
    }
}
