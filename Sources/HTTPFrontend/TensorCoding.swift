// TensorCoding: KServe v2 tensors on the HTTP wire, both ways. JSON `data` (flat or nested
// arrays) and Triton's binary tensor extension (raw little-endian elements after the JSON
// header; BYTES elements are a 4-byte little-endian length then the bytes).
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Compute
import JSONCore
import Serving

func badRequest(_ message: String) -> ServingError { ServingError(.badRequest, message) }

// MARK: - Shapes and element counts

/// Elements in `shape`, or nil when a dimension is negative or the product overflows.
func elementCount(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = p
    }
    return n
}

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

/// Decodes one input's raw bytes (the binary tensor extension).
func tensorData(fromBinary raw: UnsafeRawBufferPointer, datatype: TensorDataType, shape: [Int],
                name: String) throws -> TensorData {
    guard let count = elementCount(shape) else {
        throw badRequest("invalid shape for input '\(name)': shape \(shapeString(shape)) contains one or more invalid dimensions")
    }
    guard let size = datatype.elementSize else {
        var elements: [Data] = []
        elements.reserveCapacity(count)
        var offset = 0
        while offset < raw.count {
            guard offset + 4 <= raw.count else {
                throw badRequest("element byte size indicator exceeds the end of the buffer for input '\(name)'")
            }
            let length = Int(raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
            offset += 4
            guard offset + length <= raw.count else {
                throw badRequest("element byte size indicator exceeds the end of the buffer for input '\(name)'")
            }
            elements.append(Data(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + length)])))
            offset += length
        }
        guard elements.count == count else {
            throw badRequest("input '\(name)' has \(elements.count) BYTES elements, expecting \(count) for shape \(shapeString(shape))")
        }
        return .bytes(elements)
    }
    guard raw.count == count * size else {
        throw badRequest("input '\(name)' has unexpected byte size \(raw.count), expecting \(count * size) for shape \(shapeString(shape)) and datatype \(datatype.rawValue)")
    }
    func load<T: FixedWidthInteger>(_: T.Type) -> [T] {
        (0..<count).map { T(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * size, as: T.self)) }
    }
    switch datatype {
    case .bool: return .bools(load(UInt8.self).map { $0 != 0 })
    case .uint8: return .ints(load(UInt8.self).map { Int64($0) })
    case .uint16: return .ints(load(UInt16.self).map { Int64($0) })
    case .uint32: return .ints(load(UInt32.self).map { Int64($0) })
    case .uint64: return .ints(load(UInt64.self).map { Int64(bitPattern: $0) })
    case .int8: return .ints(load(Int8.self).map { Int64($0) })
    case .int16: return .ints(load(Int16.self).map { Int64($0) })
    case .int32: return .ints(load(Int32.self).map { Int64($0) })
    case .int64: return .ints(load(Int64.self))
    case .fp16: return .floats(load(UInt16.self).map { Double(halfToFloat($0)) })
    case .bf16: return .floats(load(UInt16.self).map { Double(Float(bitPattern: UInt32($0) << 16)) })
    case .fp32: return .floats(load(UInt32.self).map { Double(Float(bitPattern: $0)) })
    case .fp64: return .floats(load(UInt64.self).map { Double(bitPattern: $0) })
    case .bytes: fatalError("unreachable: BYTES has no fixed element size")
    }
}

// MARK: - TensorData -> JSON / binary (responses)

/// The output's elements as a JSON array (Triton's WriteDataToJson).
func writeJSONData(_ t: InferTensor, into w: inout JSONWriter) throws {
    let count = try checkedOutputCount(t)
    w.bytes.append(UInt8(ascii: "["))
    for k in 0..<count {
        if k > 0 { w.bytes.append(UInt8(ascii: ",")) }
        try writeJSONElement(t, k, into: &w)
    }
    w.bytes.append(UInt8(ascii: "]"))
}

/// One element as a JSON value (used directly by the generate extension for 1-element outputs).
func writeJSONElement(_ t: InferTensor, _ k: Int, into w: inout JSONWriter) throws {
    switch (t.datatype, t.data) {
    case (.bool, .bools(let v)): w.bool(v[k])
    case (.bool, .ints(let v)): w.bool(v[k] != 0)
    case (.uint64, .ints(let v)): w.uint(UInt64(bitPattern: v[k]))
    case (.uint8, .ints(let v)), (.uint16, .ints(let v)), (.uint32, .ints(let v)),
         (.int8, .ints(let v)), (.int16, .ints(let v)), (.int32, .ints(let v)), (.int64, .ints(let v)):
        w.int(v[k])
    case (.fp16, .floats(let v)), (.bf16, .floats(let v)), (.fp32, .floats(let v)), (.fp64, .floats(let v)):
        w.double(v[k])
    case (.fp16, .ints(let v)), (.bf16, .ints(let v)), (.fp32, .ints(let v)), (.fp64, .ints(let v)):
        w.double(Double(v[k]))
    case (.bytes, .bytes(let v)): w.string(bytes: v[k])
    default:
        throw ServingError(.internalError, "output '\(t.name)' of datatype \(t.datatype.rawValue) holds mismatched data")
    }
}

func checkedOutputCount(_ t: InferTensor) throws -> Int {
    guard let count = elementCount(t.shape), count == t.data.count else {
        throw ServingError(.internalError, "output tensor shape does not match size of output for '\(t.name)'")
    }
    return count
}

/// The output's elements in the binary tensor format.
func binaryData(_ t: InferTensor) throws -> [UInt8] {
    let count = try checkedOutputCount(t)
    var out: [UInt8] = []
    func put<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }
    func ints() throws -> [Int64] {
        switch t.data {
        case .ints(let v): return v
        case .bools(let v): return v.map { $0 ? 1 : 0 }
        default: throw ServingError(.internalError, "output '\(t.name)' of datatype \(t.datatype.rawValue) holds mismatched data")
        }
    }
    func floats() throws -> [Double] {
        switch t.data {
        case .floats(let v): return v
        case .ints(let v): return v.map(Double.init)
        default: throw ServingError(.internalError, "output '\(t.name)' of datatype \(t.datatype.rawValue) holds mismatched data")
        }
    }
    if let size = t.datatype.elementSize { out.reserveCapacity(count * size) }
    switch t.datatype {
    case .bool: for v in try ints() { put(UInt8(v != 0 ? 1 : 0)) }
    case .uint8: for v in try ints() { put(UInt8(truncatingIfNeeded: v)) }
    case .int8: for v in try ints() { put(Int8(truncatingIfNeeded: v)) }
    case .uint16: for v in try ints() { put(UInt16(truncatingIfNeeded: v)) }
    case .int16: for v in try ints() { put(Int16(truncatingIfNeeded: v)) }
    case .uint32: for v in try ints() { put(UInt32(truncatingIfNeeded: v)) }
    case .int32: for v in try ints() { put(Int32(truncatingIfNeeded: v)) }
    case .uint64, .int64: for v in try ints() { put(v) }
    case .fp16: for v in try floats() { put(halfBits(Float(v))) }
    case .bf16: for v in try floats() { put(bfloat16Bits(Float(v))) }
    case .fp32: for v in try floats() { put(Float(v).bitPattern) }
    case .fp64: for v in try floats() { put(v.bitPattern) }
    case .bytes:
        guard case .bytes(let elements) = t.data else {
            throw ServingError(.internalError, "output '\(t.name)' of datatype BYTES holds mismatched data")
        }
        for e in elements {
            put(UInt32(e.count))
            out.append(contentsOf: e)
        }
    }
    return out
}
