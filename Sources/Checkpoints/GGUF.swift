// GGUF: reader for llama.cpp's GGUF v2/v3 files (memory-mapped). Metadata of every value
// type; tensors of the types in DType. Shapes are converted to row-major, outermost first.
import Compute

/// One metadata value of a GGUF file.
public indirect enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array([GGUFValue])

    /// Any integer value as Int (nil for other types or out of range).
    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        case .bool(let v): return v ? 1 : 0
        default: return nil
        }
    }
    /// Any numeric value as Double.
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map(Double.init)
        }
    }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? {
        switch self {
        case .bool(let b): return b
        default: return int.map { $0 != 0 }
        }
    }
    public var array: [GGUFValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var stringArray: [String]? { array?.compactMap(\.string) }
    public var intArray: [Int]? { array?.compactMap(\.int) }
    public var floatArray: [Float]? { array?.compactMap { $0.double.map(Float.init) } }
}

/// Where one tensor lives in a GGUF file.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// nil for GGML types Petrel cannot compute with (the file still opens; reading fails).
    public let dtype: DType?
    /// GGML's type id as stored.
    public let ggmlType: Int
    /// Row-major shape, outermost first (GGUF stores dimensions innermost first).
    public let shape: [Int]
    /// Offset of the data from the start of the file.
    public let fileOffset: Int
    public let byteCount: Int
}

public final class GGUFFile: Sendable {
    public let path: String
    public let version: Int
    public let metadata: [String: GGUFValue]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    private let file: MappedFile
    private let index: [String: Int]

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        self.path = file.path
        var c = ByteCursor(file.bytes, path: file.path)
        let magic = try c.read(UInt32.self, "the magic number")
        guard magic == 0x4655_4747 else { // "GGUF" little-endian
            throw CheckpointError(path, "not a GGUF file (magic number is 0x\(String(magic, radix: 16)), expected 'GGUF')")
        }
        let version = Int(try c.read(UInt32.self, "the version"))
        guard version == 2 || version == 3 else { throw CheckpointError(path, "unsupported GGUF version \(version) (2 and 3 are supported)") }
        self.version = version
        let tensorCount = try c.read(UInt64.self, "the tensor count")
        let kvCount = try c.read(UInt64.self, "the metadata count")
        // Each entry needs at least a few bytes: reject absurd counts before allocating.
        guard tensorCount < UInt64(file.bytes.count), kvCount < UInt64(file.bytes.count) else {
            throw CheckpointError(path, "corrupt header: \(tensorCount) tensors and \(kvCount) metadata entries cannot fit in \(file.bytes.count) bytes")
        }
        var metadata: [String: GGUFValue] = [:]
        for i in 0..<Int(kvCount) {
            let key = try Self.readString(&c, "metadata key #\(i)")
            let type = try c.read(UInt32.self, "the type of '\(key)'")
            metadata[key] = try Self.readValue(&c, type: type, key: key, depth: 0)
        }
        self.metadata = metadata
        var infos: [(String, Int, [Int], UInt64)] = []
        for i in 0..<Int(tensorCount) {
            let name = try Self.readString(&c, "tensor name #\(i)")
            let dims = Int(try c.read(UInt32.self, "dimension count of '\(name)'"))
            guard dims >= 1 && dims <= 4 else { throw CheckpointError(path, "tensor '\(name)' has \(dims) dimensions (1 to 4 allowed)") }
            var shape: [Int] = []
            for d in 0..<dims {
                let v = try c.read(UInt64.self, "dimension \(d) of '\(name)'")
                guard v > 0, v < 1 << 40 else { throw CheckpointError(path, "tensor '\(name)' has invalid dimension \(v)") }
                shape.append(Int(v))
            }
            let rawType = try c.read(UInt32.self, "type of '\(name)'")
            let offset = try c.read(UInt64.self, "data offset of '\(name)'")
            infos.append((name, Int(rawType), shape.reversed(), offset))
        }
        let alignment = metadata["general.alignment"]?.int ?? 32
        guard alignment > 0 else { throw CheckpointError(path, "general.alignment must be positive") }
        self.alignment = alignment
        let dataStart = (c.offset + alignment - 1) / alignment * alignment
        var tensors: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        for (name, rawType, shape, offset) in infos {
            let count = shape.reduce(1, *)
            let dtype = DType(rawValue: rawType)
            guard let (blockSize, blockBytes) = dtype.map({ ($0.blockSize, $0.blockBytes) }) ?? Self.otherGGMLTypes[rawType] else {
                throw CheckpointError(path, "tensor '\(name)' has unknown GGML type \(rawType)")
            }
            guard shape.last! % blockSize == 0 else {
                throw CheckpointError(path, "tensor '\(name)' of GGML type \(rawType) has row length \(shape.last!), not a multiple of the block size \(blockSize)")
            }
            let bytes = count / blockSize * blockBytes
            let start = dataStart + Int(offset)
            guard offset < UInt64(Int.max / 2), start + bytes <= file.bytes.count else {
                throw CheckpointError(path, "truncated: tensor '\(name)' needs bytes \(start)..<\(start + bytes) but the file has \(file.bytes.count)")
            }
            index[name] = tensors.count
            tensors.append(GGUFTensorInfo(name: name, dtype: dtype, ggmlType: rawType, shape: shape, fileOffset: start, byteCount: bytes))
        }
        self.tensors = tensors
        self.index = index
    }

    public func tensorInfo(_ name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    /// The tensor's bytes, viewed in place in the mapped file.
    public func tensor(_ name: String) throws -> HostTensor {
        guard let info = tensorInfo(name) else { throw CheckpointError(path, "no tensor named '\(name)'") }
        guard let dtype = info.dtype else {
            throw CheckpointError(path, "tensor '\(name)' has GGML type \(info.ggmlType)\(Self.ggmlTypeNames[info.ggmlType].map { " (\($0))" } ?? ""), which Petrel does not support yet (F32, F16, BF16, Q8_0, Q4_0, Q4_1 are)")
        }
        let slice = UnsafeRawBufferPointer(rebasing: file.bytes[info.fileOffset..<(info.fileOffset + info.byteCount)])
        return HostTensor(dtype: dtype, shape: info.shape, bytes: slice, owner: file)
    }

    /// Block size and bytes of GGML types Petrel does not compute with, so files holding
    /// them still open (their offsets are checked) and errors can name them.
    static let otherGGMLTypes: [Int: (Int, Int)] = [
        6: (32, 22), 7: (32, 24), 9: (32, 36),                        // Q5_0, Q5_1, Q8_1
        10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292), // Q2_K..Q8_K
        24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),   // I8, I16, I32, I64, F64
    ]
    static let ggmlTypeNames: [Int: String] = [6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K",
                                               13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64"]

    // MARK: parsing

    private static func readString(_ c: inout ByteCursor, _ what: String) throws -> String {
        let n = try c.read(UInt64.self, "the length of \(what)")
        guard n <= UInt64(c.bytes.count) else { throw CheckpointError(c.path, "corrupt: \(what) claims \(n) bytes, more than the file holds") }
        let raw = try c.readBytes(Int(n), what)
        return String(decoding: raw, as: UTF8.self)
    }

    private static func readValue(_ c: inout ByteCursor, type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try c.read(UInt8.self, key))
        case 1: return .int8(try c.read(Int8.self, key))
        case 2: return .uint16(try c.read(UInt16.self, key))
        case 3: return .int16(try c.read(Int16.self, key))
        case 4: return .uint32(try c.read(UInt32.self, key))
        case 5: return .int32(try c.read(Int32.self, key))
        case 6: return .float32(try c.readFloat(key))
        case 7:
            let b = try c.read(UInt8.self, key)
            guard b <= 1 else { throw CheckpointError(c.path, "metadata '\(key)': bool value \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case 8: return .string(try readString(&c, "the value of '\(key)'"))
        case 9:
            guard depth < 8 else { throw CheckpointError(c.path, "metadata '\(key)': arrays nested too deeply") }
            let elementType = try c.read(UInt32.self, "the element type of '\(key)'")
            let count = try c.read(UInt64.self, "the element count of '\(key)'")
            guard count <= UInt64(c.bytes.count - c.offset) else {
                throw CheckpointError(c.path, "truncated: metadata '\(key)' claims \(count) elements, more than the file holds")
            }
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(count))
            for _ in 0..<Int(count) { values.append(try readValue(&c, type: elementType, key: key, depth: depth + 1)) }
            return .array(values)
        case 10: return .uint64(try c.read(UInt64.self, key))
        case 11: return .int64(try c.read(Int64.self, key))
        case 12: return .float64(try c.readDouble(key))
        default: throw CheckpointError(c.path, "metadata '\(key)' has unknown value type \(type)")
        }
    }
}
