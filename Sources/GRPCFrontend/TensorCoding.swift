// TensorCoding: Triton's gRPC tensor layouts <-> Serving's InferTensor.
//
// Inputs arrive either typed (`InferTensorContents`, one repeated field per datatype family)
// or raw (`raw_input_contents`, one entry per input in Serving's TensorWire layout). Outputs
// always leave as `raw_output_contents`, as Triton sends them.
import Foundation
import Serving
import TritonProtos

/// A request the frontend refuses before it reaches Serving (answered INVALID_ARGUMENT or
/// UNIMPLEMENTED, like Triton's own frontend checks).
struct RequestDecodingError: Error, CustomStringConvertible {
    var status: ServingError.Status
    var message: String
    init(_ message: String, status: ServingError.Status = .badRequest) {
        self.message = message
        self.status = status
    }
    var description: String { message }
    var servingError: ServingError { ServingError(status, message) }
}

enum TensorCoding {
    // MARK: requests

    /// The Serving request for one `ModelInferRequest`. `triton_*` request parameters are the
    /// frontend's (Triton consumes them before the core sees the request) and are dropped.
    static func inferRequest(from message: Inference_ModelInferRequest) throws -> InferRequest {
        let model = message.modelName
        if !message.rawInputContents.isEmpty && message.rawInputContents.count != message.inputs.count {
            throw RequestDecodingError(
                "expected \(message.inputs.count) raw_input_contents entries (one per input) for model '\(model)', got \(message.rawInputContents.count)")
        }
        var inputs: [InferTensor] = []
        inputs.reserveCapacity(message.inputs.count)
        var seen = Set<String>()
        for (index, input) in message.inputs.enumerated() {
            guard seen.insert(input.name).inserted else {
                throw RequestDecodingError("input '\(input.name)' is given more than once for model '\(model)'")
            }
            let raw = message.rawInputContents.isEmpty ? nil : message.rawInputContents[index]
            inputs.append(try tensor(from: input, raw: raw, model: model))
        }
        var outputs: [String] = []
        for output in message.outputs {
            for key in output.parameters.keys where key.hasPrefix("shared_memory") {
                throw RequestDecodingError(
                    "output '\(output.name)' for model '\(model)': shared memory ('\(key)') is not supported by Petrel",
                    status: .notImplemented)
            }
            if let classification = output.parameters["classification"], classification.int64Value != 0 {
                throw RequestDecodingError(
                    "output '\(output.name)' for model '\(model)': the 'classification' extension is not supported by Petrel",
                    status: .notImplemented)
            }
            outputs.append(output.name)
        }
        var parameters: [String: ParameterValue] = [:]
        for (key, value) in message.parameters where !key.hasPrefix("triton_") {
            if let v = parameterValue(value) { parameters[key] = v }
        }
        return InferRequest(modelName: model, modelVersion: message.modelVersion, id: message.id,
                            inputs: inputs, requestedOutputs: outputs, parameters: parameters)
    }

    static func tensor(from input: Inference_ModelInferRequest.InferInputTensor, raw: Data?, model: String) throws -> InferTensor {
        let name = input.name
        guard let datatype = TensorDataType(rawValue: input.datatype) else {
            throw RequestDecodingError("invalid datatype '\(input.datatype)' for input '\(name)' for model '\(model)'")
        }
        for key in input.parameters.keys where key.hasPrefix("shared_memory") {
            throw RequestDecodingError(
                "input '\(name)' for model '\(model)': shared memory ('\(key)') is not supported by Petrel; send the data in raw_input_contents",
                status: .notImplemented)
        }
        guard input.shape.allSatisfy({ $0 >= 0 }) else {
            throw RequestDecodingError("invalid shape \(input.shape) for input '\(name)' for model '\(model)': dimensions must be non-negative")
        }
        let shape = input.shape.map { Int($0) }
        guard let count = TensorWire.elementCount(shape) else {
            throw RequestDecodingError("shape \(input.shape) of input '\(name)' for model '\(model)' is too large")
        }
        let data: TensorData
        if let raw {
            if input.hasContents && !isEmpty(input.contents) {
                throw RequestDecodingError(
                    "contents field must not be specified when using raw_input_contents for input '\(name)' for model '\(model)'")
            }
            data = try decodeRaw(raw, datatype: datatype, count: count, name: name, model: model)
        } else {
            data = try decodeContents(input.contents, datatype: datatype, count: count, name: name, model: model)
        }
        return InferTensor(name: name, datatype: datatype, shape: shape, data: data)
    }

    static func isEmpty(_ c: Inference_InferTensorContents) -> Bool {
        c.boolContents.isEmpty && c.intContents.isEmpty && c.int64Contents.isEmpty && c.uintContents.isEmpty
            && c.uint64Contents.isEmpty && c.fp32Contents.isEmpty && c.fp64Contents.isEmpty && c.bytesContents.isEmpty
    }

    /// Typed contents: the field that belongs to the datatype must hold exactly `count` elements.
    static func decodeContents(_ c: Inference_InferTensorContents, datatype: TensorDataType, count: Int,
                               name: String, model: String) throws -> TensorData {
        func check(_ n: Int, _ field: String) throws {
            guard n == count else {
                var message = "unexpected number of elements in \(field) for input '\(name)' for model '\(model)': expected \(count) (shape), got \(n)"
                if n == 0 && !isEmpty(c) {
                    message += "; \(datatype.rawValue) data belongs in \(field)"
                }
                throw RequestDecodingError(message)
            }
        }
        switch datatype {
        case .bool:
            try check(c.boolContents.count, "bool_contents")
            return .bools(c.boolContents)
        case .int8, .int16, .int32:
            try check(c.intContents.count, "int_contents")
            return .ints(c.intContents.map(Int64.init))
        case .int64:
            try check(c.int64Contents.count, "int64_contents")
            return .ints(c.int64Contents)
        case .uint8, .uint16, .uint32:
            try check(c.uintContents.count, "uint_contents")
            return .ints(c.uintContents.map(Int64.init))
        case .uint64:
            try check(c.uint64Contents.count, "uint64_contents")
            return .ints(c.uint64Contents.map { Int64(bitPattern: $0) })
        case .fp32:
            try check(c.fp32Contents.count, "fp32_contents")
            return .floats(c.fp32Contents.map(Double.init))
        case .fp64:
            try check(c.fp64Contents.count, "fp64_contents")
            return .floats(c.fp64Contents)
        case .bytes:
            try check(c.bytesContents.count, "bytes_contents")
            return .bytes(c.bytesContents)
        case .fp16, .bf16:
            if count == 0 { return .floats([]) }
            throw RequestDecodingError(
                "input '\(name)' for model '\(model)': \(datatype.rawValue) has no typed contents field; send it in raw_input_contents")
        }
    }

    /// Raw contents (Serving's TensorWire layout), with the errors worded as Triton's gRPC
    /// endpoint words them.
    static func decodeRaw(_ raw: Data, datatype: TensorDataType, count: Int, name: String, model: String) throws -> TensorData {
        do {
            return try TensorWire.decode(raw, datatype: datatype, count: count)
        } catch {
            switch error {
            case .byteSize(let expected, let actual):
                throw RequestDecodingError(
                    "input byte size mismatch for input '\(name)' for model '\(model)'. Expected \(expected.map(String.init) ?? "too many") bytes, got \(actual)")
            case .truncatedLength(let offset):
                throw RequestDecodingError(
                    "input '\(name)' for model '\(model)': truncated BYTES element at byte \(offset): each element needs a 4-byte length prefix")
            case .elementOverrun(let index, let length, let remaining):
                throw RequestDecodingError(
                    "input '\(name)' for model '\(model)': BYTES element \(index) declares \(length) bytes but only \(remaining) remain")
            case .elementCount(let expected, let actual):
                throw RequestDecodingError(
                    "unexpected number of string elements \(actual) for inference input '\(name)' for model '\(model)', expecting \(expected)")
            }
        }
    }

    static func parameterValue(_ p: Inference_InferParameter) -> ParameterValue? {
        switch p.parameterChoice {
        case .boolParam(let v)?: return .bool(v)
        case .int64Param(let v)?: return .int(v)
        case .uint64Param(let v)?: return .int(Int64(clamping: v))
        case .doubleParam(let v)?: return .double(v)
        case .stringParam(let v)?: return .string(v)
        case nil: return nil
        }
    }

    static func inferParameter(_ v: ParameterValue) -> Inference_InferParameter {
        var p = Inference_InferParameter()
        switch v {
        case .bool(let b): p.boolParam = b
        case .int(let i): p.int64Param = i
        case .double(let d): p.doubleParam = d
        case .string(let s): p.stringParam = s
        }
        return p
    }

    // MARK: responses

    /// Triton's gRPC response: every output's metadata in `outputs`, its data in
    /// `raw_output_contents` (same order). Empty id / model name / version fall back to the request's.
    static func inferResponse(from response: InferResponse, request: InferRequest) throws -> Inference_ModelInferResponse {
        var message = Inference_ModelInferResponse()
        message.modelName = response.modelName.isEmpty ? request.modelName : response.modelName
        message.modelVersion = response.modelVersion.isEmpty ? request.modelVersion : response.modelVersion
        message.id = response.id.isEmpty ? request.id : response.id
        for (key, value) in response.parameters {
            message.parameters[key] = inferParameter(value)
        }
        message.outputs.reserveCapacity(response.outputs.count)
        message.rawOutputContents.reserveCapacity(response.outputs.count)
        for output in response.outputs {
            var tensor = Inference_ModelInferResponse.InferOutputTensor()
            tensor.name = output.name
            tensor.datatype = output.datatype.rawValue
            tensor.shape = output.shape.map(Int64.init)
            message.outputs.append(tensor)
            message.rawOutputContents.append(try TensorWire.encode(output))
        }
        return message
    }
}

extension Inference_InferParameter {
    /// The parameter as an integer, whatever its kind (bools as 0 / 1).
    fileprivate var int64Value: Int64 {
        switch parameterChoice {
        case .int64Param(let v)?: return v
        case .uint64Param(let v)?: return Int64(clamping: v)
        case .boolParam(let v)?: return v ? 1 : 0
        case .doubleParam(let v)?: return Int64(exactly: v.rounded(.towardZero)) ?? 0
        case .stringParam(let v)?: return Int64(v) ?? 0
        case nil: return 0
        }
    }
}
