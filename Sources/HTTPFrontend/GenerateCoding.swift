// GenerateCoding: Triton's generate extension. A request is a flat JSON object whose keys are
// the model's inputs by name (a scalar or an array; datatype and shape come from the model),
// plus `id` and a nested `parameters` object mapped the same way; keys that are not inputs
// become request parameters. A response is a flat object: model_name, model_version, id, the
// response parameters and every output (one element as a scalar, else an array).
import JSONCore
import Serving

enum GenerateCoding {
    static func decodeRequest(_ json: JSON, inputs: [TensorMetadata], model: String,
                              version: String) throws -> InferRequest {
        guard case .object(let root) = json else { throw badRequest("generate request must be a JSON object") }
        var request = InferRequest(modelName: model, modelVersion: version, inputs: [])
        let byName = Dictionary(inputs.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        if let id = root["id"] {
            guard case .string(let s) = id else { throw badRequest("Unable to parse 'id'") }
            request.id = s
        }
        var seen = Set<String>()
        func map(_ object: JSONObject, nested: Bool) throws {
            for (key, value) in object.members where seen.insert(key).inserted {
                if !nested, key == "id" { continue }
                if !nested, key == "parameters" {
                    if byName[key] != nil {
                        throw badRequest("Keyword 'parameters' for nested schema also given as input tensor name")
                    }
                    guard case .object(let params) = value else {
                        throw badRequest("Expected JSON object for keyword: 'parameters'")
                    }
                    try map(params, nested: true)
                    continue
                }
                if let meta = byName[key] {
                    request.inputs.append(try tensor(meta, value))
                } else {
                    request.parameters[key] = try InferCoding.parameterValue(key, value)
                }
            }
        }
        try map(root, nested: false)
        return request
    }

    /// An input tensor from a generate value, shaped as Triton shapes it: fixed dimensions must
    /// divide the element count, the innermost variable dimension takes what remains and any
    /// other variable dimension is 1.
    static func tensor(_ meta: TensorMetadata, _ value: JSON) throws -> InferTensor {
        let data = try tensorData(fromJSON: value, datatype: meta.datatype, name: meta.name)
        var remaining = data.count
        var shape = meta.shape
        let fail = badRequest("The schema can not convert input '\(meta.name)' to tensor with proper shape")
        for d in shape.reversed() where d != -1 {
            guard d > 0, remaining % d == 0 else {
                if d == 0, remaining == 0 { continue }
                throw fail
            }
            remaining /= d
        }
        for k in shape.indices.reversed() where shape[k] == -1 {
            shape[k] = remaining
            remaining = 1
        }
        guard remaining == 1 || (remaining == 0 && data.count == 0) else { throw fail }
        return InferTensor(name: meta.name, datatype: meta.datatype, shape: shape, data: data)
    }

    /// The flat response object; keys in byte order as Triton writes them (a std::map).
    static func encodeResponse(_ response: InferResponse) throws -> [UInt8] {
        enum Item { case text(String), parameter(ParameterValue), output(InferTensor) }
        var items: [(key: String, item: Item)] = []
        var keys = Set<String>()
        func add(_ key: String, _ item: Item) { if keys.insert(key).inserted { items.append((key, item)) } }
        if !response.id.isEmpty { add("id", .text(response.id)) }
        add("model_name", .text(response.modelName))
        add("model_version", .text(response.modelVersion))
        for (k, v) in response.parameters { add(k, .parameter(v)) }
        for t in response.outputs { add(t.name, .output(t)) }
        items.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }

        var w = JSONWriter(capacity: 256)
        w.raw("{")
        for (k, entry) in items.enumerated() {
            if k > 0 { w.raw(",") }
            w.string(entry.key)
            w.raw(":")
            switch entry.item {
            case .text(let s): w.string(s)
            case .parameter(let v): InferCoding.writeParameterValue(v, into: &w)
            case .output(let t):
                if try TensorWire.checkedCount(t) == 1 {
                    try writeJSONElement(t, 0, into: &w)
                } else {
                    try writeJSONData(t, into: &w)
                }
            }
        }
        w.raw("}")
        return w.bytes
    }

    /// `{"error": message}` as Triton writes errors.
    static func errorJSON(_ message: String) -> [UInt8] {
        var w = JSONWriter(capacity: message.utf8.count + 16)
        w.raw("{\"error\":")
        w.string(message)
        w.raw("}")
        return w.bytes
    }
}
