// JSONNode: typed reads from a parsed JSON file that fail with the file and field named.
import Foundation
import JSONCore

extension JSONParser.Options {
    /// Tokenizer files (tokenizer.json, tokenizer_config.json): a lone surrogate escape becomes
    /// U+FFFD, as Python's json (which transformers reads these files with) accepts one;
    /// tokenizers' own writer never makes one. Keys are compared byte for byte by JSONObject.
    static let tokenizerFile = JSONParser.Options(loneSurrogate: .replace, maxDepth: 512)
}

struct JSONNode {
    let file: String
    let field: String
    /// nil when the field is absent.
    let value: JSON?

    init(file: String, field: String = "", value: JSON?) {
        self.file = file
        self.field = field
        self.value = value
    }

    /// Reads and parses a JSON file.
    static func read(_ path: String) throws -> JSONNode {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError(path, "file not found")
        }
        guard !isDirectory.boolValue else { throw TokenizerError(path, "is a directory, expected a JSON file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw TokenizerError(path, "cannot read file") }
        do {
            let value = try data.withUnsafeBytes { raw in
                try JSONParser.parse(buffer: raw.bindMemory(to: UInt8.self), options: .tokenizerFile)
            }
            return JSONNode(file: path, value: value)
        } catch let e as JSONParseError {
            throw TokenizerError(path, "not valid JSON (\(data.count) bytes): \(e)")
        }
    }

    subscript(key: String) -> JSONNode {
        var v: JSON? = nil
        if case .object(let o)? = value { v = o[key] }
        return JSONNode(file: file, field: field.isEmpty ? key : "\(field).\(key)", value: v)
    }

    var isNull: Bool {
        switch value {
        case nil, .null?: return true
        default: return false
        }
    }

    var exists: Bool { value != nil }

    func error(_ message: String) -> TokenizerError { TokenizerError(file, field: field, message) }

    private func typeName() -> String {
        switch value {
        case nil: return "nothing (missing)"
        case .null?: return "null"
        case .bool?: return "a boolean"
        case .int?, .uint?, .double?: return "a number"
        case .string?: return "a string"
        case .array?: return "an array"
        case .object?: return "an object"
        }
    }

    func object() throws -> JSONObject {
        guard case .object(let o)? = value else { throw error("expected an object, found \(typeName())") }
        return o
    }

    func string() throws -> String {
        guard case .string(let s)? = value else { throw error("expected a string, found \(typeName())") }
        return s
    }

    /// nil when absent or null; an error when present with another type.
    func optionalString() throws -> String? {
        if isNull { return nil }
        return try string()
    }

    func bool(default d: Bool) throws -> Bool {
        if isNull { return d }
        guard case .bool(let b)? = value else { throw error("expected true or false, found \(typeName())") }
        return b
    }

    func int() throws -> Int {
        guard let d = value?.number else { throw error("expected an integer, found \(typeName())") }
        guard d.rounded() == d, abs(d) < 1e15 else { throw error("expected an integer, found \(d)") }
        return Int(d)
    }

    func optionalInt() throws -> Int? {
        if isNull { return nil }
        return try int()
    }

    func number() throws -> Double {
        guard let d = value?.number else { throw error("expected a number, found \(typeName())") }
        return d
    }

    func array() throws -> [JSONNode] {
        guard case .array(let a)? = value else { throw error("expected an array, found \(typeName())") }
        return a.enumerated().map { JSONNode(file: file, field: "\(field)[\($0.offset)]", value: $0.element) }
    }

    /// A token given as "text" or as {"content": "text", ...} (tokenizer_config.json style).
    func tokenContent() throws -> String? {
        if isNull { return nil }
        if case .string(let s)? = value { return s }
        return try self["content"].string()
    }
}
