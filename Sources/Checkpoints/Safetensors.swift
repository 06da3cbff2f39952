// Safetensors: reader for Hugging Face .safetensors files, single or sharded through
// model.safetensors.index.json. Tensors are viewed in place in the mapped file: F32, F16, BF16 as
// weights (`tensor`), every other safetensors dtype (U8, I32, …: quantized checkpoints' packed
// codes, Petrel engines' weight-only rows) as raw bytes (`rawTensor`).
import Compute
import Foundation

public final class SafetensorsFile: Sendable {
    public struct Entry: Sendable {
        /// The float type, or nil for the integer and bool dtypes (read those with rawTensor).
        public let dtype: DType?
        /// As the header writes it: "F16", "U8", "I32", …
        public let dtypeName: String
        public let shape: [Int]
        public let begin: Int   // absolute file offsets
        public let end: Int
    }

    public let path: String
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let file: MappedFile

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.file = file
        self.path = path
        var c = ByteCursor(file.bytes, path: path)
        let headerLength = try c.read(UInt64.self, "the header length")
        guard headerLength <= UInt64(file.bytes.count - 8) else {
            throw CheckpointError(path, "truncated or not safetensors: header claims \(headerLength) bytes but the file has \(file.bytes.count)")
        }
        let header = try c.readBytes(Int(headerLength), "the JSON header")
        let dataStart = 8 + Int(headerLength)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: Data(header)) } catch {
            throw CheckpointError(path, "the JSON header is malformed (\(error.localizedDescription))")
        }
        guard let root = json as? [String: Any] else { throw CheckpointError(path, "the JSON header is not an object") }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in root {
            if name == "__metadata__" {
                for (k, v) in value as? [String: Any] ?? [:] { metadata[k] = v as? String ?? "\(v)" }
                continue
            }
            guard let obj = value as? [String: Any],
                  let dtypeName = obj["dtype"] as? String,
                  let shape = (obj["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  let offsets = (obj["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  offsets.count == 2 else {
                throw CheckpointError(path, "tensor '\(name)': header entry needs dtype, shape and data_offsets")
            }
            let dtype: DType? = ["F32": .f32, "F16": .f16, "BF16": .bf16][dtypeName]
            guard let size = Self.elementBytes[dtypeName] else {
                throw CheckpointError(path, "tensor '\(name)': dtype \(dtypeName) is not a safetensors dtype")
            }
            let count = shape.reduce(1, *)
            let begin = dataStart + offsets[0], end = dataStart + offsets[1]
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, end - begin == count * size else {
                throw CheckpointError(path, "tensor '\(name)': data_offsets \(offsets) do not match shape \(shape) of \(dtypeName)")
            }
            guard end <= file.bytes.count else {
                throw CheckpointError(path, "truncated: tensor '\(name)' ends at byte \(end) but the file has \(file.bytes.count)")
            }
            entries[name] = Entry(dtype: dtype, dtypeName: dtypeName, shape: shape, begin: begin, end: end)
        }
        self.entries = entries
        self.metadata = metadata
    }

    /// Bytes per element of every dtype the format defines.
    static let elementBytes: [String: Int] = ["F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U64": 8, "I32": 4, "U32": 4,
                                              "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1]

    public func tensor(_ name: String) throws -> HostTensor {
        guard let e = entries[name] else { throw CheckpointError(path, "no tensor named '\(name)'") }
        guard let dtype = e.dtype else {
            throw CheckpointError(path, "tensor '\(name)': dtype \(e.dtypeName) is not a weight type (F32, F16, BF16 are)")
        }
        return HostTensor(dtype: dtype, shape: e.shape, bytes: UnsafeRawBufferPointer(rebasing: file.bytes[e.begin..<e.end]), owner: file)
    }

    /// Any tensor's bytes as stored, with its dtype name and shape.
    public func rawTensor(_ name: String) throws -> RawTensor {
        guard let e = entries[name] else { throw CheckpointError(path, "no tensor named '\(name)'") }
        return RawTensor(file: path, name: name, dtypeName: e.dtypeName, shape: e.shape,
                         bytes: UnsafeRawBufferPointer(rebasing: file.bytes[e.begin..<e.end]), owner: file)
    }
}

/// A safetensors tensor of any dtype, as bytes (valid while `owner` lives).
public struct RawTensor: @unchecked Sendable {
    /// The shard it was read from, and its name there (for error messages).
    public let file: String
    public let name: String
    public let dtypeName: String
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer
    /// Unchecked Sendable: the mapped file, never written.
    public let owner: AnyObject
}

/// A source of named weights: one GGUF file, or a folder of safetensors shards.
public protocol WeightSource: AnyObject, Sendable {
    var path: String { get }
    var tensorNames: [String] { get }
    func tensor(_ name: String) throws -> HostTensor
    /// Any tensor's bytes as stored (AWQ / GPTQ packed I32 codes); a GGUF file throws.
    func rawTensor(_ name: String) throws -> RawTensor
}

extension WeightSource {
    public func has(_ name: String) -> Bool { tensorNames.contains(name) }

    public func rawTensor(_ name: String) throws -> RawTensor {
        throw CheckpointError(path, "tensor '\(name)': only safetensors checkpoints hold raw integer tensors")
    }
}

extension GGUFFile: WeightSource {
    public var tensorNames: [String] { tensors.map(\.name) }
}

/// All safetensors of a Hugging Face checkpoint folder: `model.safetensors`, or the shards
/// listed in `model.safetensors.index.json`.
public final class SafetensorsCheckpoint: WeightSource, Sendable {
    public let path: String
    private let files: [SafetensorsFile]
    private let owner: [String: Int]
    public let tensorNames: [String]

    public init(directory: String) throws {
        self.path = directory
        let fm = FileManager.default
        let indexPath = directory + "/model.safetensors.index.json"
        var shardNames: [String] = []
        if fm.fileExists(atPath: indexPath) {
            guard let data = fm.contents(atPath: indexPath) else { throw CheckpointError(indexPath, "cannot read file") }
            let json = try? JSONSerialization.jsonObject(with: data)
            guard let map = (json as? [String: Any])?["weight_map"] as? [String: String] else {
                throw CheckpointError(indexPath, "malformed index: expected an object with a \"weight_map\" of tensor name to file")
            }
            shardNames = Array(Set(map.values)).sorted()
        } else if fm.fileExists(atPath: directory + "/model.safetensors") {
            shardNames = ["model.safetensors"]
        } else {
            let all = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
            shardNames = all.filter { $0.hasSuffix(".safetensors") }.sorted()
            if shardNames.isEmpty { throw CheckpointError(directory, "no model.safetensors, model.safetensors.index.json or *.safetensors found") }
        }
        var files: [SafetensorsFile] = []
        var owner: [String: Int] = [:]
        for name in shardNames {
            let f = try SafetensorsFile(path: directory + "/" + name)
            for key in f.entries.keys { owner[key] = files.count }
            files.append(f)
        }
        self.files = files
        self.owner = owner
        self.tensorNames = owner.keys.sorted()
    }

    public func tensor(_ name: String) throws -> HostTensor {
        guard let i = owner[name] else { throw CheckpointError(path, "no tensor named '\(name)' in any shard") }
        return try files[i].tensor(name)
    }

    public func rawTensor(_ name: String) throws -> RawTensor {
        guard let i = owner[name] else { throw CheckpointError(path, "no tensor named '\(name)' in any shard") }
        return try files[i].rawTensor(name)
    }

    /// `__metadata__` of the shard holding `name`.
    public func metadata(ofShardHolding name: String) -> [String: String] {
        owner[name].map { files[$0].metadata } ?? [:]
    }
}
