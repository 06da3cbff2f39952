// TensorCoding: KServe v2 tensors on the HTTP wire, both ways. JSON `data` (flat or nested
// arrays) and Triton's binary tensor extension (after the JSON header, each tensor's elements
// in Serving's TensorWire layout; this file words its errors as Triton's HTTP endpoint does).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSONCore
import Serving

func badRequest(_ message: String) -> ServingError { ServingError(.badRequest, message) }

// MARK: - Shapes

func shapeString(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ",") + "]" }

// MARK: - JSON data -> TensorData

/// Flattens `data` (any nesting) and converts its leaves to `datatype`.
func tensorData(fromJSON data: JSON, datatype: TensorDataType, name: String) throws -> TensorData {
    var leaves: [JSON] = []
    func flatten(_ v: JSON) {
        if case .array(let a) = v { for e in a { flatten(e) } } else { leaves.append(v) }
    }
    flatten(data)

    func mismatch(_ v: JSON, _ expected: String) -> ServingError {
        badRequest("Unable to parse 'data': input '\(name)' of datatype \(datatype.rawValue) expects \(expected), got \(v.typeName) \(leafText(v))")
    }

    switch datatype {
    case .bool:
        return .bools(try leaves.map { v in
            guard case .bool(let b) = v else { throw mismatch(v, "JSON booleans") }
            return b
        })
    case .int8, .int16, .int32, .int64, .uint8, .uint16, .uint32, .uint64:
        let range = integerRange(datatype)
        return .ints(try leaves.map { v in
            switch v {
            case .int(let n):
                guard n >= range.min, UInt64(bitPattern: n) <= range.max || n < 0 else {
                    throw badRequest("Unable to parse 'data': value \(n) is out of range for \(datatype.rawValue) input '\(name)'")
                }
                return n
            case .uint(let u) where datatype == .uint64:
                return Int64(bitPattern: u)  // UINT64 above Int64.max travels as its bit pattern
            case .uint(let u):
                throw badRequest("Unable to parse 'data': value \(u) is out of range for \(datatype.rawValue) input '\(name)'")
            default:
                throw mismatch(v, "integers")
            }
        })
    case .fp16, .bf16, .fp32, .fp64:
        return .floats(try leaves.map { v in
            switch v {
            case .double(let d): return d
            case .int(let n): return Double(n)
            case .uint(let u): return Double(u)
            default: throw mismatch(v, "numbers")
            }
        })
    case .bytes:
        return .bytes(try leaves.map { v in
            guard case .string(let s) = v else { throw mismatch(v, "strings") }
            return Data(s.utf8)
        })
    }
}

private func leafText(_ v: JSON) -> String {
    let text = String(decoding: JSONWriter.encode(v), as: UTF8.self)
    return text.count > 40 ? String(text.prefix(40)) + "…" : text
}

/// Inclusive bounds of an integer datatype; `max` is compared as UInt64 for non-negative values.
private func integerRange(_ t: TensorDataType) -> (min: Int64, max: UInt64) {
    switch t {
    case .int8: return (Int64(Int8.min), UInt64(Int8.max))
    case .int16: return (Int64(Int16.min), UInt64(Int16.max))
    case .int32: return (Int64(Int32.min), UInt64(Int32.max))
    case .int64: return (Int64.min, UInt64(Int64.max))
    case .uint8: return (0, UInt64(UInt8.max))
    case .uint16: return (0, UInt64(UInt16.max))
    case .uint32: return (0, UInt64(UInt32.max))
    case .uint64: return (0, UInt64.max)
    default: return (Int64.min, UInt64.max)
    }
}

// MARK: - Binary bytes -> TensorData

/// Decodes one input's raw bytes (the binary tensor extension), with Triton's HTTP wording.
func tensorData(fromBinary raw: UnsafeRawBufferPointer, datatype: TensorDataType, shape: [Int],
                name: String) throws -> TensorData {
    guard let count = TensorWire.elementCount(shape) else {
        throw badRequest("invalid shape for input '\(name)': shape \(shapeString(shape)) contains one or more invalid dimensions")
    }
    do {
        return try TensorWire.decode(raw, datatype: datatype, count: count)
    } catch {
        switch error {
        case .byteSize(let expected, let actual):
            throw badRequest("input '\(name)' has unexpected byte size \(actual), expecting \(expected.map(String.init) ?? "more than \(Int.max)") for shape \(shapeString(shape)) and datatype \(datatype.rawValue)")
        case .truncatedLength, .elementOverrun:
            throw badRequest("element byte size indicator exceeds the end of the buffer for input '\(name)'")
        case .elementCount(let expected, let actual):
            throw badRequest("input '\(name)' has \(actual) BYTES elements, expecting \(expected) for shape \(shapeString(shape))")
        }
    }
}

// MARK: - TensorData -> JSON (responses; the binary format is TensorWire.encode)

/// The output's elements as a JSON array (Triton's WriteDataToJson).
func writeJSONData(_ t: InferTensor, into w: inout JSONWriter) throws {
    let count = try TensorWire.checkedCount(t)
    w.bytes.append(UInt8(ascii: "["))
    for k in 0..<count {
        if k > 0 { w.bytes.append(UInt8(ascii: ",")) }
        try writeJSONElement(t, k, into: &w)
    }
    w.bytes.append(UInt8(ascii: "]"))
}

/// One element as a JSON value (used directly by the generate extension for 1-element outputs).
/// Data of another family than the datatype is converted as in the binary format (TensorWire).
func writeJSONElement(_ t: InferTensor, _ k: Int, into w: inout JSONWriter) throws {
    switch t.datatype {
    case .bytes:
        guard case .bytes(let v) = t.data else { throw TensorWire.mismatch(t) }
        w.string(bytes: v[k])
    case .bool:
        guard let v = t.data.int64(at: k) else { throw TensorWire.mismatch(t) }
        w.bool(v != 0)
    case .uint64:
        guard let v = t.data.int64(at: k) else { throw TensorWire.mismatch(t) }
        w.uint(UInt64(bitPattern: v))
    case .uint8, .uint16, .uint32, .int8, .int16, .int32, .int64:
        guard let v = t.data.int64(at: k) else { throw TensorWire.mismatch(t) }
        w.int(v)
    case .fp16, .bf16, .fp32, .fp64:
        guard let v = t.data.double(at: k) else { throw TensorWire.mismatch(t) }
        w.double(v)
    }
}
