// TensorCoding: Triton's gRPC tensor layouts <-> Serving's InferTensor.
//
// Inputs arrive either typed (`InferTensorContents`, one repeated field per datatype family)
// or raw (`raw_input_contents`, one entry per input: little-endian, row-major, BYTES elements
// each prefixed by a 4-byte little-endian length). Outputs always leave as
// `raw_output_contents`, as Triton sends them.
import Foundation
import Compute
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
        var shape: [Int] = []
        var count = 1
        for d in input.shape {
            guard d >= 0 else {
                throw RequestDecodingError("invalid shape \(input.shape) for input '\(name)' for model '\(model)': dimensions must be non-negative")
            }
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow else {
                throw RequestDecodingError("shape \(input.shape) of input '\(name)' for model '\(model)' is too large")
            }
            shape.append(Int(d))
            count = product
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

    /// Raw contents: little-endian elements; BYTES elements each with a 4-byte length prefix.
    static func decodeRaw(_ raw: Data, datatype: TensorDataType, count: Int, name: String, model: String) throws -> TensorData {
        guard let size = datatype.elementSize else {
            return .bytes(try decodeBytes(raw, count: count, name: name, model: model))
        }
        let (expected, overflow) = count.multipliedReportingOverflow(by: size)
        guard !overflow, raw.count == expected else {
            throw RequestDecodingError(
                "input byte size mismatch for input '\(name)' for model '\(model)'. Expected \(overflow ? "too many" : String(expected)) bytes, got \(raw.count)")
        }
        return raw.withUnsafeBytes { (buf: UnsafeRawBufferPointer) -> TensorData in
            func load<T: FixedWidthInteger>(_: T.Type, _ i: Int) -> T {
                T(littleEndian: buf.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
            }
            switch datatype {
            case .bool: return .bools((0..<count).map { buf[$0] != 0 })
            case .uint8: return .ints((0..<count).map { Int64(buf[$0]) })
            case .int8: return .ints((0..<count).map { Int64(Int8(bitPattern: buf[$0])) })
            case .uint16: return .ints((0..<count).map { Int64(load(UInt16.self, $0)) })
            case .int16: return .ints((0..<count).map { Int64(load(Int16.self, $0)) })
            case .uint32: return .ints((0..<count).map { Int64(load(UInt32.self, $0)) })
            case .int32: return .ints((0..<count).map { Int64(load(Int32.self, $0)) })
            case .uint64: return .ints((0..<count).map { Int64(bitPattern: load(UInt64.self, $0)) })
            case .int64: return .ints((0..<count).map { load(Int64.self, $0) })
            case .fp16: return .floats((0..<count).map { Double(halfToFloat(load(UInt16.self, $0))) })
            case .bf16: return .floats((0..<count).map { Double(Float(bitPattern: UInt32(load(UInt16.self, $0)) << 16)) })
            case .fp32: return .floats((0..<count).map { Double(Float(bitPattern: load(UInt32.self, $0))) })
            case .fp64: return .floats((0..<count).map { Double(bitPattern: load(UInt64.self, $0)) })
            case .bytes: return .bytes([])  // handled above
            }
        }
    }

    static func decodeBytes(_ raw: Data, count: Int, name: String, model: String) throws -> [Data] {
        var elements: [Data] = []
        elements.reserveCapacity(min(count, 1 << 16))
        var offset = raw.startIndex
        while offset < raw.endIndex {
            guard raw.endIndex - offset >= 4 else {
                throw RequestDecodingError(
                    "input '\(name)' for model '\(model)': truncated BYTES element at byte \(offset - raw.startIndex): each element needs a 4-byte length prefix")
            }
            var length: UInt32 = 0
            for k in 0..<4 { length |= UInt32(raw[offset + k]) << (8 * UInt32(k)) }
            offset += 4
            guard raw.endIndex - offset >= Int(length) else {
                throw RequestDecodingError(
                    "input '\(name)' for model '\(model)': BYTES element \(elements.count) declares \(length) bytes but only \(raw.endIndex - offset) remain")
            }
            elements.append(Data(raw[offset..<(offset + Int(length))]))
            offset += Int(length)
        }
        guard elements.count == count else {
            throw RequestDecodingError(
                "unexpected number of string elements \(elements.count) for inference input '\(name)' for model '\(model)', expecting \(count)")
        }
        return elements
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
            message.rawOutputContents.append(try encodeRaw(output))
        }
        return message
    }

    /// The raw little-endian layout of a tensor. Data of another family than the datatype is
    /// converted (ints to floats and back, bools to 0 / 1); BYTES needs bytes.
    static func encodeRaw(_ tensor: InferTensor) throws -> Data {
        let datatype = tensor.datatype
        if datatype == .bytes {
            guard case .bytes(let elements) = tensor.data else {
                throw ServingError(.internalError, "output '\(tensor.name)' is BYTES but holds non-byte data")
            }
            var out = Data(capacity: elements.reduce(0) { $0 + 4 + $1.count })
            for e in elements {
                var length = UInt32(e.count).littleEndian
                withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
                out.append(e)
            }
            return out
        }
        if case .bytes = tensor.data {
            throw ServingError(.internalError, "output '\(tensor.name)' is \(datatype.rawValue) but holds BYTES data")
        }
        let size = datatype.elementSize!
        let count = tensor.data.count
        var out = Data(count: count * size)
        out.withUnsafeMutableBytes { (buf: UnsafeMutableRawBufferPointer) in
            func store<T: FixedWidthInteger>(_ value: T, _ i: Int) {
                buf.storeBytes(of: value.littleEndian, toByteOffset: i * MemoryLayout<T>.size, as: T.self)
            }
            switch datatype {
            case .fp16, .bf16, .fp32, .fp64:
                for i in 0..<count {
                    let d = tensor.data.double(at: i)
                    switch datatype {
                    case .fp16: store(halfBits(Float(d)), i)
                    case .bf16: store(bfloat16Bits(Float(d)), i)
                    case .fp32: store(Float(d).bitPattern, i)
                    default: store(d.bitPattern, i)
                    }
                }
            default:
                for i in 0..<count {
                    let v = tensor.data.int64(at: i)
                    switch datatype {
                    case .bool: buf[i] = v != 0 ? 1 : 0
                    case .int8, .uint8: buf[i] = UInt8(truncatingIfNeeded: v)
                    case .int16, .uint16: store(UInt16(truncatingIfNeeded: v), i)
                    case .int32, .uint32: store(UInt32(truncatingIfNeeded: v), i)
                    default: store(UInt64(bitPattern: v), i)
                    }
                }
            }
        }
        return out
    }
}

extension TensorData {
    fileprivate func double(at i: Int) -> Double {
        switch self {
        case .floats(let v): return v[i]
        case .ints(let v): return Double(v[i])
        case .bools(let v): return v[i] ? 1 : 0
        case .bytes: return 0
        }
    }

    fileprivate func int64(at i: Int) -> Int64 {
        switch self {
        case .ints(let v): return v[i]
        case .bools(let v): return v[i] ? 1 : 0
        case .floats(let v):
            let d = v[i]
            return d.isFinite ? Int64(clamping: Int64(exactly: d.rounded(.towardZero)) ?? (d < 0 ? .min : .max)) : 0
        case .bytes: return 0
        }
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
