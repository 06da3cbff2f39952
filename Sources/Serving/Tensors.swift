// Tensors inside Serving: datatype names, checking a request against a model's inputs
// (Triton's rules: datatypes, shapes with the batch dimension, required inputs), and small
// readers / builders the backends use.
import Foundation
import TritonProtos

extension TensorDataType {
    /// The KServe datatype of a config's `data_type` (TYPE_STRING is BYTES); nil for TYPE_INVALID.
    init?(_ type: Inference_DataType) {
        switch type {
        case .typeBool: self = .bool
        case .typeUint8: self = .uint8
        case .typeUint16: self = .uint16
        case .typeUint32: self = .uint32
        case .typeUint64: self = .uint64
        case .typeInt8: self = .int8
        case .typeInt16: self = .int16
        case .typeInt32: self = .int32
        case .typeInt64: self = .int64
        case .typeFp16: self = .fp16
        case .typeFp32: self = .fp32
        case .typeFp64: self = .fp64
        case .typeString: self = .bytes
        case .typeBf16: self = .bf16
        case .typeInvalid, .UNRECOGNIZED: return nil
        }
    }

    var configType: Inference_DataType {
        switch self {
        case .bool: .typeBool
        case .uint8: .typeUint8
        case .uint16: .typeUint16
        case .uint32: .typeUint32
        case .uint64: .typeUint64
        case .int8: .typeInt8
        case .int16: .typeInt16
        case .int32: .typeInt32
        case .int64: .typeInt64
        case .fp16: .typeFp16
        case .fp32: .typeFp32
        case .fp64: .typeFp64
        case .bytes: .typeString
        case .bf16: .typeBf16
        }
    }

    /// Integer range a value of this type may hold (nil for non-integer types).
    var integerRange: ClosedRange<Int64>? {
        switch self {
        case .uint8: 0...Int64(UInt8.max)
        case .uint16: 0...Int64(UInt16.max)
        case .uint32: 0...Int64(UInt32.max)
        case .uint64: Int64.min...Int64.max      // UINT64 travels as the Int64 bit pattern
        case .int8: Int64(Int8.min)...Int64(Int8.max)
        case .int16: Int64(Int16.min)...Int64(Int16.max)
        case .int32: Int64(Int32.min)...Int64(Int32.max)
        case .int64: Int64.min...Int64.max
        default: nil
        }
    }

    var isInteger: Bool { integerRange != nil }
    var isFloat: Bool { self == .fp16 || self == .fp32 || self == .fp64 || self == .bf16 }
}

/// A bad request input: answered with 400 and a message that names the input. The ensemble
/// renames the input to its own tensor name when the step input comes straight from it.
struct InputError: Error, CustomStringConvertible {
    var input: String
    var detail: String
    init(_ input: String, _ detail: String) {
        self.input = input
        self.detail = detail
    }
    /// "input 'max_tokens' must be >= 1, got -5"
    var description: String { "input '\(input)' \(detail)" }
}

/// What a model's execution needs besides the tensors.
struct RequestContext: Sendable {
    /// False on the non-streaming routes (infer, generate): decoupled models answer with one
    /// response, as if `streaming` / `stream` were false.
    var allowStreaming = true
    /// Set by the ensemble for the steps after a decoupled step: names one stream of chunks,
    /// so postprocessing can detokenize across chunks (UTF-8 safe).
    var streamKey: String?
    /// With streamKey: this request carries the stream's last chunk.
    var isFinalChunk = true
    /// Queue timeout asked by the request ("timeout" parameter, microseconds), if any.
    var timeoutMicroseconds: UInt64?
    /// Triton priority (0: the model's default level; 1 is the highest).
    var priority = 0
    /// DispatchTime nanoseconds when the request arrived.
    var arrivalNanoseconds = DispatchTime.now().uptimeNanoseconds
}

/// A request checked against its model's config: every input known, of the right datatype
/// and shape; with batching, every tensor has the leading batch dimension.
struct ModelRequest: Sendable {
    var id: String
    var inputs: [String: InferTensor]
    /// Output names to return (all of the model's when the request named none).
    var outputs: [String]
    /// The request's batch size (1 when the model does not batch).
    var batchSize: Int
    var parameters: [String: ParameterValue]
    var context: RequestContext

    func tensor(_ name: String) -> InferTensor? { inputs[name] }
    func has(_ name: String) -> Bool { inputs[name] != nil }
    func wants(_ output: String) -> Bool { outputs.contains(output) }
}

/// The inputs and outputs of a config, in the form requests are checked against.
struct TensorSpec: Sendable, Equatable {
    var name: String
    var datatype: TensorDataType
    var dims: [Int]
    var optional: Bool
}

struct ModelSignature: Sendable {
    var inputs: [TensorSpec]
    var outputs: [TensorSpec]
    /// 0: the model does not batch; tensors have exactly `dims`.
    var maxBatchSize: Int

    init(_ config: Inference_ModelConfig) {
        inputs = config.input.map {
            TensorSpec(name: $0.name, datatype: TensorDataType($0.dataType) ?? .bytes, dims: $0.dims.map(Int.init), optional: $0.optional)
        }
        outputs = config.output.map {
            TensorSpec(name: $0.name, datatype: TensorDataType($0.dataType) ?? .bytes, dims: $0.dims.map(Int.init), optional: false)
        }
        maxBatchSize = Int(max(config.maxBatchSize, 0))
    }

    func input(_ name: String) -> TensorSpec? { inputs.first { $0.name == name } }
    func output(_ name: String) -> TensorSpec? { outputs.first { $0.name == name } }

    /// Shapes as model metadata shows them: a leading -1 when the model batches.
    func metadata(_ specs: [TensorSpec]) -> [TensorMetadata] {
        specs.map { TensorMetadata(name: $0.name, datatype: $0.datatype, shape: (maxBatchSize > 0 ? [-1] : []) + $0.dims) }
    }

    /// Checks `request` (Triton's rules) and returns it with every tensor carrying the batch
    /// dimension when the model batches. Leniency: a tensor whose rank equals the config's dims
    /// (no batch dimension, as the generate extension's JSON scalars come) is taken as batch 1.
    func check(_ request: InferRequest, modelName: String, context: RequestContext) throws -> ModelRequest {
        var tensors: [String: InferTensor] = [:]
        var batch: Int?
        var batchSource = ""
        for var t in request.inputs {
            guard let spec = input(t.name) else {
                throw ServingError(.badRequest, "unexpected inference input '\(t.name)' for model '\(modelName)'")
            }
            guard tensors[t.name] == nil else {
                throw InputError(t.name, "is given more than once")
            }
            guard t.datatype == spec.datatype else {
                throw InputError(t.name, "has data-type '\(t.datatype.rawValue)', but model '\(modelName)' expects '\(spec.datatype.rawValue)'")
            }
            guard t.shape.allSatisfy({ $0 >= 0 }) else {
                throw InputError(t.name, "has a negative dimension in shape \(t.shape)")
            }
            let elements = t.shape.reduce(1, *)
            guard elements == t.data.count else {
                throw InputError(t.name, "has shape \(t.shape), which holds \(elements) elements, but \(t.data.count) were given")
            }
            try checkValues(t)
            var itemBatch = 1
            if maxBatchSize > 0 {
                if t.shape.count == spec.dims.count && matches(t.shape, spec.dims) {
                    t.shape = [1] + t.shape
                } else if t.shape.count == spec.dims.count + 1 && matches(Array(t.shape.dropFirst()), spec.dims) {
                    itemBatch = t.shape[0]
                    guard itemBatch >= 1 && itemBatch <= maxBatchSize else {
                        throw InputError(t.name, "has batch size \(itemBatch), outside [1, \(maxBatchSize)] (max_batch_size of model '\(modelName)')")
                    }
                } else {
                    throw InputError(t.name, "has unexpected shape \(t.shape); model '\(modelName)' expects [-1] + \(spec.dims) (batch first)")
                }
                if let b = batch, b != itemBatch {
                    throw InputError(t.name, "has batch size \(itemBatch), but input '\(batchSource)' has \(b)")
                }
                batch = itemBatch
                batchSource = t.name
            } else {
                guard matches(t.shape, spec.dims) else {
                    throw InputError(t.name, "has unexpected shape \(t.shape); model '\(modelName)' expects \(spec.dims)")
                }
            }
            tensors[t.name] = t
        }
        if let missing = inputs.first(where: { !$0.optional && tensors[$0.name] == nil }) {
            throw InputError(missing.name, "is required by model '\(modelName)' but missing from the request")
        }
        var wanted: [String] = []
        for name in request.requestedOutputs {
            guard output(name) != nil else {
                throw ServingError(.badRequest, "unexpected inference output '\(name)' for model '\(modelName)'")
            }
            if !wanted.contains(name) { wanted.append(name) }
        }
        return ModelRequest(id: request.id, inputs: tensors, outputs: wanted.isEmpty ? outputs.map(\.name) : wanted,
                            batchSize: batch ?? 1, parameters: request.parameters, context: context)
    }

    private func matches(_ shape: [Int], _ dims: [Int]) -> Bool {
        shape.count == dims.count && zip(shape, dims).allSatisfy { $1 < 0 || $0 == $1 }
    }

    /// Element kinds agree with the datatype, and integers fit it.
    private func checkValues(_ t: InferTensor) throws {
        switch (t.data, t.datatype) {
        case (.bools, .bool), (.bytes, .bytes): return
        case (.floats, let d) where d.isFloat: return
        case (.ints, let d) where d.isFloat: return
        case (.ints(let v), let d) where d.isInteger:
            if let range = d.integerRange, let bad = v.first(where: { !range.contains($0) }) {
                throw InputError(t.name, "holds \(bad), which does not fit \(d.rawValue)")
            }
        default:
            throw InputError(t.name, "holds elements that do not match its datatype \(t.datatype.rawValue)")
        }
    }
}

// MARK: reading inputs

extension InferTensor {
    var elementCount: Int { data.count }

    /// Elements of batch item `item` (the tensor's leading dimension is the batch of `batchSize`).
    func row(_ item: Int, of batchSize: Int) -> Range<Int> {
        let per = batchSize > 0 ? data.count / batchSize : data.count
        return item * per..<(item + 1) * per
    }

    var ints: [Int64]? {
        switch data {
        case .ints(let v): return v
        case .bools(let v): return v.map { $0 ? 1 : 0 }
        default: return nil
        }
    }

    var doubles: [Double]? {
        switch data {
        case .floats(let v): return v
        case .ints(let v): return v.map(Double.init)
        default: return nil
        }
    }

    var bools: [Bool]? {
        switch data {
        case .bools(let v): return v
        case .ints(let v): return v.map { $0 != 0 }
        default: return nil
        }
    }

    var byteStrings: [Data]? {
        if case .bytes(let v) = data { return v }
        return nil
    }

    /// Nothing a backend has to act on: empty, or every element zero / false / empty.
    var isTrivial: Bool {
        switch data {
        case .bools(let v): return !v.contains(true)
        case .ints(let v): return !v.contains { $0 != 0 }
        case .floats(let v): return !v.contains { $0 != 0 }
        case .bytes(let v): return !v.contains { !$0.isEmpty }
        }
    }
}

extension ModelRequest {
    /// The first element of `name` in batch item `item`, or nil when the input is absent (or empty).
    func int(_ name: String, item: Int) throws -> Int64? {
        guard let t = inputs[name] else { return nil }
        guard let v = t.ints else { throw InputError(name, "must hold integers") }
        let r = t.row(item, of: batchSize)
        return r.isEmpty ? nil : v[r.lowerBound]
    }

    func double(_ name: String, item: Int) throws -> Double? {
        guard let t = inputs[name] else { return nil }
        guard let v = t.doubles else { throw InputError(name, "must hold numbers") }
        let r = t.row(item, of: batchSize)
        return r.isEmpty ? nil : v[r.lowerBound]
    }

    func bool(_ name: String, item: Int) throws -> Bool? {
        guard let t = inputs[name] else { return nil }
        guard let v = t.bools else { throw InputError(name, "must hold booleans") }
        let r = t.row(item, of: batchSize)
        return r.isEmpty ? nil : v[r.lowerBound]
    }

    func ints(_ name: String, item: Int) throws -> ArraySlice<Int64>? {
        guard let t = inputs[name] else { return nil }
        guard let v = t.ints else { throw InputError(name, "must hold integers") }
        return v[t.row(item, of: batchSize)]
    }

    func strings(_ name: String, item: Int) throws -> [String]? {
        guard let t = inputs[name] else { return nil }
        guard let v = t.byteStrings else { throw InputError(name, "must hold BYTES") }
        return try v[t.row(item, of: batchSize)].map {
            guard let s = String(data: $0, encoding: .utf8) else { throw InputError(name, "is not valid UTF-8 text") }
            return s
        }
    }

    /// The row length of batch item tensors (elements per item).
    func rowLength(_ name: String) -> Int? {
        guard let t = inputs[name] else { return nil }
        return t.row(0, of: batchSize).count
    }
}

// MARK: building outputs

extension InferTensor {
    static func int32(_ name: String, _ shape: [Int], _ values: [Int32]) -> InferTensor {
        InferTensor(name: name, datatype: .int32, shape: shape, data: .ints(values.map(Int64.init)))
    }

    static func fp32(_ name: String, _ shape: [Int], _ values: [Float]) -> InferTensor {
        InferTensor(name: name, datatype: .fp32, shape: shape, data: .floats(values.map(Double.init)))
    }

    static func text(_ name: String, _ shape: [Int], _ values: [String]) -> InferTensor {
        InferTensor(name: name, datatype: .bytes, shape: shape, data: .bytes(values.map { Data($0.utf8) }))
    }

    /// The same tensor under another name.
    func renamed(_ name: String) -> InferTensor {
        var t = self
        t.name = name
        return t
    }
}
