// InferCoding: the body of POST /v2/models/{m}/infer and its response, exactly as Triton's HTTP
// endpoint reads and writes them (JSON tensors, the binary tensor extension, request
// parameters). Model-level checks (input names, datatypes, shapes against the config) are the
// Serving layer's, as they are Triton core's.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSONCore
import Serving

extension JSONParser.Options {
    /// Every JSON body the HTTP endpoint reads, as Triton's RapidJSON reads it: a lone surrogate
    /// escape is an error (a KServe client never means one), nesting stops at Triton's
    /// HTTP_MAX_JSON_NESTING_DEPTH.
    static let kserve = JSONParser.Options(loneSurrogate: .reject, maxDepth: 100)
}

/// How the client asked to receive each output.
struct OutputFormat: Sendable, Equatable {
    /// `binary_data_output` request parameter: the format of outputs not listed in `outputs`.
    var defaultBinary = false
    /// `outputs[i].parameters.binary_data` for each listed output (absent means JSON).
    var binaryByName: [String: Bool] = [:]

    func isBinary(_ name: String) -> Bool { binaryByName[name] ?? defaultBinary }
}

enum InferCoding {
    /// Parses an infer request body. `headerLength` is the `Inference-Header-Content-Length`
    /// header: the JSON ends there and binary input data follows; nil when absent.
    static func decodeRequest(_ body: UnsafeRawBufferPointer, headerLength: Int?, model: String,
                              version: String) throws -> (InferRequest, OutputFormat) {
        if let headerLength, headerLength < 0 || headerLength > body.count {
            throw badRequest("inference header size should be in range (0, \(body.count)), got: \(headerLength)")
        }
        if headerLength == 0 {
            throw badRequest("raw binary requests (Inference-Header-Content-Length: 0) are not supported; send a JSON header")
        }
        let jsonEnd = headerLength ?? body.count
        let json: JSON
        do {
            json = try JSONParser.parse(buffer: UnsafeBufferPointer(start: body.baseAddress?.assumingMemoryBound(to: UInt8.self), count: jsonEnd),
                                      options: .kserve)
        } catch let e as JSONParseError {
            throw badRequest("failed to parse the request JSON buffer: \(e.message) at offset \(e.offset)")
        }
        guard case .object(let root) = json else { throw badRequest("request JSON must be an object") }

        var request = InferRequest(modelName: model, modelVersion: version, inputs: [])
        if let id = root["id"] {
            guard case .string(let s) = id else { throw badRequest("Unable to parse 'id'") }
            request.id = s
        }
        var format = OutputFormat()
        if let params = root["parameters"] {
            guard case .object(let o) = params else { throw badRequest("failed to get request params.") }
            for (key, value) in o.members {
                if key == "binary_data_output" {
                    guard case .bool(let b) = value else { throw badRequest("Unable to parse 'binary_data_output'") }
                    format.defaultBinary = b
                    continue
                }
                request.parameters[key] = try requestParameter(key, value)
            }
        }

        guard case .array(let inputs)? = root["inputs"] else { throw badRequest("Unable to parse 'inputs'") }
        var offset = jsonEnd
        for input in inputs {
            guard case .object(let io) = input else { throw badRequest("Unable to parse 'inputs'") }
            let (name, datatype, shape) = try tensorHeader(io, kind: "input")
            let params = io["parameters"]
            let binarySize = params?["binary_data_size"]
            let sharedMemory = params?["shared_memory_region"]
            let set = [io["data"] != nil, binarySize != nil, sharedMemory != nil].filter { $0 }.count
            if set != 1 {
                var message = "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But"
                if set == 0 { message += " no field is set" } else {
                    message += " set"
                    if io["data"] != nil { message += " 'data'" }
                    if binarySize != nil { message += " 'binary_data_size'" }
                    if sharedMemory != nil { message += " 'shared_memory_region'" }
                }
                throw badRequest(message)
            }
            if sharedMemory != nil {
                throw badRequest("input '\(name)': shared memory regions are not supported by this server")
            }
            let data: TensorData
            if let binarySize {
                guard headerLength != nil else {
                    throw badRequest("must specify valid 'Inference-Header-Content-Length' in request header and 'binary_data_size' when passing inputs in binary data format")
                }
                guard case .int(let size) = binarySize, size >= 0 else { throw badRequest("Unable to parse 'binary_data_size'") }
                guard offset + Int(size) <= body.count else {
                    throw badRequest("unexpected size for input '\(name)', expecting \(Int(size) - (body.count - offset)) additional bytes for model '\(model)'")
                }
                data = try tensorData(fromBinary: UnsafeRawBufferPointer(rebasing: body[offset..<(offset + Int(size))]),
                                      datatype: datatype, shape: shape, name: name)
                offset += Int(size)
            } else {
                guard case .array = io["data"]! else { throw badRequest("Unable to parse 'data'") }
                guard let count = TensorWire.elementCount(shape) else {
                    throw badRequest("invalid shape for input '\(name)': shape \(shapeString(shape)) contains one or more invalid dimensions")
                }
                data = try tensorData(fromJSON: io["data"]!, datatype: datatype, name: name)
                guard data.count == count else {
                    throw badRequest("Unable to parse 'data': shape does not match true shape of 'data' field for input '\(name)': shape \(shapeString(shape)) has \(count) elements, 'data' has \(data.count)")
                }
            }
            request.inputs.append(InferTensor(name: name, datatype: datatype, shape: shape, data: data))
        }
        if offset != body.count {
            throw badRequest("unexpected additional input data for model '\(model)'")
        }

        if let outputs = root["outputs"] {
            guard case .array(let list) = outputs else { throw badRequest("Unable to parse 'outputs'") }
            for output in list {
                guard case .object(let o) = output, case .string(let name)? = o["name"] else {
                    throw badRequest("Unable to parse 'name'")
                }
                if let params = o["parameters"] {
                    if params["shared_memory_region"] != nil {
                        throw badRequest("output '\(name)': shared memory regions are not supported by this server")
                    }
                    if let c = params["classification"], c != .int(0) {
                        throw ServingError(.notImplemented, "output '\(name)': classification outputs are not supported by this server")
                    }
                    if let b = params["binary_data"] {
                        guard case .bool(let binary) = b else { throw badRequest("Unable to parse 'binary_data'") }
                        format.binaryByName[name] = binary
                    }
                }
                if format.binaryByName[name] == nil { format.binaryByName[name] = false }
                request.requestedOutputs.append(name)
            }
        }
        return (request, format)
    }

    /// name, datatype and shape of a request tensor.
    static func tensorHeader(_ io: JSONObject, kind: String) throws -> (String, TensorDataType, [Int]) {
        guard case .string(let name)? = io["name"] else { throw badRequest("Unable to parse 'name'") }
        guard case .string(let dt)? = io["datatype"] else { throw badRequest("Unable to parse 'datatype'") }
        guard let datatype = TensorDataType(rawValue: dt) else {
            throw badRequest("invalid datatype '\(dt)' for \(kind) '\(name)'")
        }
        guard case .array(let dims)? = io["shape"] else { throw badRequest("Unable to parse 'shape'") }
        let shape: [Int] = try dims.map {
            guard case .int(let d) = $0, d >= 0 else {
                throw badRequest("Unable to parse 'shape' of \(kind) '\(name)'")
            }
            return Int(d)
        }
        return (name, datatype, shape)
    }

    /// A request-level parameter, typed as Triton's HTTP endpoint types it.
    static func requestParameter(_ key: String, _ value: JSON) throws -> ParameterValue {
        if key.hasPrefix("triton_") {
            throw badRequest("parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified.")
        }
        switch (key, value) {
        case ("sequence_id", .int(let n)) where n >= 0: return .int(n)
        case ("sequence_id", .string(let s)): return .string(s)
        case ("sequence_id", _): throw badRequest("Unable to parse 'sequence_id'")
        case ("sequence_start", .bool(let b)), ("sequence_end", .bool(let b)): return .bool(b)
        case ("sequence_start", _), ("sequence_end", _): throw badRequest("Unable to parse '\(key)'")
        case ("priority", .int(let n)) where n >= 0, ("timeout", .int(let n)) where n >= 0: return .int(n)
        case ("priority", _), ("timeout", _): throw badRequest("Unable to parse '\(key)'")
        default: return try parameterValue(key, value)
        }
    }

    static func parameterValue(_ key: String, _ value: JSON) throws -> ParameterValue {
        switch value {
        case .string(let s): return .string(s)
        case .int(let n): return .int(n)
        case .bool(let b): return .bool(b)
        case .double(let d): return .double(d)
        case .uint(let u): return .double(Double(u))
        default:
            throw badRequest("parameter '\(key)' has invalid type. It should be either 'int', 'bool', or 'string'.")
        }
    }

    /// The response body; `headerLength` is set when binary outputs follow the JSON.
    static func encodeResponse(_ response: InferResponse, format: OutputFormat) throws -> (body: [UInt8], headerLength: Int?) {
        var w = JSONWriter(capacity: 512)
        var binary: [Data] = []
        w.raw("{")
        if !response.id.isEmpty {
            w.raw("\"id\":")
            w.string(response.id)
            w.raw(",")
        }
        w.raw("\"model_name\":")
        w.string(response.modelName)
        w.raw(",\"model_version\":")
        w.string(response.modelVersion)
        if !response.parameters.isEmpty {
            w.raw(",\"parameters\":")
            writeParameters(response.parameters, into: &w)
        }
        w.raw(",\"outputs\":[")
        for (k, t) in response.outputs.enumerated() {
            if k > 0 { w.raw(",") }
            w.raw("{\"name\":")
            w.string(t.name)
            w.raw(",\"datatype\":")
            w.string(t.datatype.rawValue)
            w.raw(",\"shape\":[")
            for (j, d) in t.shape.enumerated() {
                if j > 0 { w.raw(",") }
                w.int(Int64(d))
            }
            w.raw("]")
            if format.isBinary(t.name) {
                let bytes = try TensorWire.encode(t)
                w.raw(",\"parameters\":{\"binary_data_size\":")
                w.int(Int64(bytes.count))
                w.raw("}")
                if !bytes.isEmpty { binary.append(bytes) }
            } else {
                w.raw(",\"data\":")
                try writeJSONData(t, into: &w)
            }
            w.raw("}")
        }
        w.raw("]}")
        if binary.isEmpty { return (w.bytes, nil) }
        let headerLength = w.bytes.count
        var body = w.bytes
        body.reserveCapacity(headerLength + binary.reduce(0) { $0 + $1.count })
        for b in binary { body.append(contentsOf: b) }
        return (body, headerLength)
    }

    /// Parameters in key order (the dictionary has none of its own).
    static func writeParameters(_ parameters: [String: ParameterValue], into w: inout JSONWriter) {
        w.raw("{")
        for (k, key) in parameters.keys.sorted().enumerated() {
            if k > 0 { w.raw(",") }
            w.string(key)
            w.raw(":")
            writeParameterValue(parameters[key]!, into: &w)
        }
        w.raw("}")
    }

    static func writeParameterValue(_ v: ParameterValue, into w: inout JSONWriter) {
        switch v {
        case .bool(let b): w.bool(b)
        case .int(let n): w.int(n)
        case .double(let d): w.double(d)
        case .string(let s): w.string(s)
        }
    }
}
