// TensorWire: KServe's raw tensor layout <-> TensorData, the one codec behind HTTP's binary
// tensor extension and gRPC's raw_input_contents / raw_output_contents. Elements are row-major
// and little-endian: BOOL one byte (0 / 1), FP16 and BF16 their 16-bit patterns, BYTES each a
// 4-byte little-endian length then its bytes. Frontends keep their framing and their wording.
import Compute
import Foundation

public enum TensorWire {
    /// Why raw input bytes are not `count` elements of their datatype: facts, which each
    /// frontend words as its protocol's clients expect.
    public enum DecodeError: Error, Equatable, Sendable {
        /// Fixed-size datatype: `actual` bytes where `expected` (count × element size; nil when
        /// that overflows Int) were due.
        case byteSize(expected: Int?, actual: Int)
        /// BYTES: fewer than 4 bytes at `offset` for the next element's length.
        case truncatedLength(offset: Int)
        /// BYTES: element `index` declares `length` bytes but only `remaining` follow its length.
        case elementOverrun(index: Int, length: Int, remaining: Int)
        /// BYTES: the buffer ends after `actual` whole elements where `expected` were due.
        case elementCount(expected: Int, actual: Int)
    }

    /// Elements in `shape`, or nil when a dimension is negative or the product overflows Int.
    public static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        return n
    }

    // MARK: decoding (request inputs)

    /// Exactly `count` elements of `datatype` from `raw`; nothing may be left over.
    public static func decode(_ raw: some ContiguousBytes, datatype: TensorDataType, count: Int) throws(DecodeError) -> TensorData {
        try raw.withUnsafeBytes { buf in
            Result { () throws(DecodeError) in try decode(buffer: buf, datatype: datatype, count: count) }
        }.get()
    }

    private static func decode(buffer buf: UnsafeRawBufferPointer, datatype: TensorDataType, count: Int) throws(DecodeError) -> TensorData {
        guard let size = datatype.elementSize else { return .bytes(try decodeBytes(buf, count: count)) }
        let (expected, overflow) = count.multipliedReportingOverflow(by: size)
        guard !overflow, buf.count == expected else {
            throw .byteSize(expected: overflow ? nil : expected, actual: buf.count)
        }
        func load<T: FixedWidthInteger>(_: T.Type) -> [T] {
            (0..<count).map { T(littleEndian: buf.loadUnaligned(fromByteOffset: $0 * size, as: T.self)) }
        }
        switch datatype {
        case .bool: return .bools(load(UInt8.self).map { $0 != 0 })
        case .uint8: return .ints(load(UInt8.self).map { Int64($0) })
        case .uint16: return .ints(load(UInt16.self).map { Int64($0) })
        case .uint32: return .ints(load(UInt32.self).map { Int64($0) })
        case .uint64: return .ints(load(UInt64.self).map { Int64(bitPattern: $0) })  // UINT64 travels as its bit pattern
        case .int8: return .ints(load(Int8.self).map { Int64($0) })
        case .int16: return .ints(load(Int16.self).map { Int64($0) })
        case .int32: return .ints(load(Int32.self).map { Int64($0) })
        case .int64: return .ints(load(Int64.self))
        case .fp16: return .floats(load(UInt16.self).map { Double(halfToFloat($0)) })
        case .bf16: return .floats(load(UInt16.self).map { Double(Float(bitPattern: UInt32($0) << 16)) })
        case .fp32: return .floats(load(UInt32.self).map { Double(Float(bitPattern: $0)) })
        case .fp64: return .floats(load(UInt64.self).map { Double(bitPattern: $0) })
        case .bytes: return .bytes([])  // elementSize is nil: decoded above
        }
    }

    private static func decodeBytes(_ buf: UnsafeRawBufferPointer, count: Int) throws(DecodeError) -> [Data] {
        var elements: [Data] = []
        elements.reserveCapacity(min(count, 1 << 16))
        var offset = 0
        while offset < buf.count {
            guard buf.count - offset >= 4 else { throw .truncatedLength(offset: offset) }
            let length = Int(UInt32(littleEndian: buf.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            offset += 4
            guard buf.count - offset >= length else {
                throw .elementOverrun(index: elements.count, length: length, remaining: buf.count - offset)
            }
            elements.append(Data(UnsafeRawBufferPointer(rebasing: buf[offset..<(offset + length)])))
            offset += length
        }
        guard elements.count == count else { throw .elementCount(expected: count, actual: elements.count) }
        return elements
    }

    // MARK: encoding (response outputs)

    /// The element count of an output, checked against its data. A mismatch is the backend's
    /// bug: ServingError(.internalError), as Triton answers it.
    public static func checkedCount(_ t: InferTensor) throws -> Int {
        guard let count = elementCount(t.shape), count == t.data.count else {
            throw ServingError(.internalError, "output tensor shape does not match size of output for '\(t.name)'")
        }
        return count
    }

    /// The raw layout of an output's elements. Data of another family than the datatype is
    /// converted as `TensorData.int64(at:)` / `double(at:)` say; BYTES data and only BYTES data
    /// goes into a BYTES output. Throws ServingError(.internalError) otherwise, or when the
    /// shape does not hold the data.
    public static func encode(_ t: InferTensor) throws -> Data {
        let count = try checkedCount(t)
        guard let size = t.datatype.elementSize else {
            guard case .bytes(let elements) = t.data else { throw mismatch(t) }
            var out = Data(capacity: elements.reduce(0) { $0 + 4 + $1.count })
            for e in elements {
                withUnsafeBytes(of: UInt32(e.count).littleEndian) { out.append(contentsOf: $0) }
                out.append(e)
            }
            return out
        }
        if case .bytes = t.data { throw mismatch(t) }
        let datatype = t.datatype, data = t.data
        var out = Data(count: count * size)
        // The data is not BYTES (checked above), so the element readers never answer nil.
        out.withUnsafeMutableBytes { (buf: UnsafeMutableRawBufferPointer) in
            func store<T: FixedWidthInteger>(_ value: T, _ i: Int) {
                buf.storeBytes(of: value.littleEndian, toByteOffset: i * size, as: T.self)
            }
            switch datatype {
            case .fp16: for i in 0..<count { store(halfBits(Float(data.double(at: i)!)), i) }
            case .bf16: for i in 0..<count { store(bfloat16Bits(Float(data.double(at: i)!)), i) }
            case .fp32: for i in 0..<count { store(Float(data.double(at: i)!).bitPattern, i) }
            case .fp64: for i in 0..<count { store(data.double(at: i)!.bitPattern, i) }
            case .bool: for i in 0..<count { buf[i] = data.int64(at: i)! != 0 ? 1 : 0 }
            case .int8, .uint8: for i in 0..<count { buf[i] = UInt8(truncatingIfNeeded: data.int64(at: i)!) }
            case .int16, .uint16: for i in 0..<count { store(UInt16(truncatingIfNeeded: data.int64(at: i)!), i) }
            case .int32, .uint32: for i in 0..<count { store(UInt32(truncatingIfNeeded: data.int64(at: i)!), i) }
            case .int64, .uint64: for i in 0..<count { store(UInt64(bitPattern: data.int64(at: i)!), i) }
            case .bytes: break  // elementSize is nil: encoded above
            }
        }
        return out
    }

    /// The error for an output whose data cannot be written as its datatype.
    public static func mismatch(_ t: InferTensor) -> ServingError {
        ServingError(.internalError, "output '\(t.name)' of datatype \(t.datatype.rawValue) holds mismatched data")
    }
}

extension TensorData {
    /// Element `i` as an integer: bools as 0 / 1, floats rounded toward zero and clamped to
    /// Int64 (NaN and infinities as 0); nil for BYTES.
    public func int64(at i: Int) -> Int64? {
        switch self {
        case .ints(let v): return v[i]
        case .bools(let v): return v[i] ? 1 : 0
        case .floats(let v):
            let d = v[i]
            guard d.isFinite else { return 0 }
            return Int64(exactly: d.rounded(.towardZero)) ?? (d < 0 ? .min : .max)
        case .bytes: return nil
        }
    }

    /// Element `i` as a Double: integers converted, bools as 0 / 1; nil for BYTES.
    public func double(at i: Int) -> Double? {
        switch self {
        case .floats(let v): return v[i]
        case .ints(let v): return Double(v[i])
        case .bools(let v): return v[i] ? 1 : 0
        case .bytes: return nil
        }
    }
}
