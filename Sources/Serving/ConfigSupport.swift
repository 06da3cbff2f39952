// Reading a parsed config.pbtxt the way a backend needs it: `parameters` values with types,
// and load errors that name the file, the line and the field.
import Foundation
import TritonProtos

/// Why a model failed to load. Its description is the model's UNAVAILABLE reason.
struct ModelLoadError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The text a config came from, to point errors at lines.
struct ConfigSource: Sendable {
    /// The config.pbtxt path, or a label such as "load API config for 'm'".
    var path: String
    var text: String?

    /// 1-based line where `field` is first written as a field name (`field:`, `field {`,
    /// `field [`), or where the quoted string `"key"` appears (for parameters); 0 if not found.
    func line(ofField field: String) -> Int {
        guard let text else { return 0 }
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var rest = Substring(line.drop { $0 == " " || $0 == "\t" })
            if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
            guard rest.hasPrefix(field) else { continue }
            let after = rest.dropFirst(field.count).drop { $0 == " " || $0 == "\t" }
            if let c = after.first, c == ":" || c == "{" || c == "[" { return i + 1 }
        }
        return 0
    }

    func line(ofString value: String) -> Int {
        guard let text else { return 0 }
        let quoted = "\"\(value)\""
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where line.contains(quoted) {
            return i + 1
        }
        return 0
    }

    /// 1-based line of a dotted field path (`instance_group.kind`): each name is looked for
    /// as a field from the line of the one before, anywhere on a line (`{ count: 1 kind: KIND_GPU }`);
    /// 0 if not found.
    func line(ofPath fieldPath: String) -> Int {
        guard let text else { return 0 }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var from = 0
        for name in fieldPath.split(separator: ".") {
            guard let found = lines[from...].firstIndex(where: { Self.namesField($0, String(name)) }) else { return 0 }
            from = found
        }
        return from + 1
    }

    /// Whether `line` (comment removed) writes `name` as a field name: not inside a longer word,
    /// followed by `:`, `{` or `[`.
    private static func namesField(_ line: Substring, _ name: String) -> Bool {
        let code = line.firstIndex(of: "#").map { line[..<$0] } ?? line
        var search = code.startIndex
        while let r = code[search...].range(of: name) {
            let before = r.lowerBound == code.startIndex ? nil : code[code.index(before: r.lowerBound)]
            let after = code[r.upperBound...].drop { $0 == " " || $0 == "\t" }.first
            if !(before.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "\"" } ?? false),
               let c = after, c == ":" || c == "{" || c == "[" {
                return true
            }
            search = r.upperBound
        }
        return false
    }

    /// "path:line: field 'fieldPath': reason" (the line left out when unknown).
    func error(field fieldPath: String, line: Int? = nil, _ reason: String) -> ModelLoadError {
        let last = fieldPath.split(separator: ".").last.map(String.init) ?? fieldPath
        var n = line ?? self.line(ofPath: fieldPath)
        if n == 0 && line == nil { n = self.line(ofField: last) }
        return ModelLoadError("\(path)\(n > 0 ? ":\(n)" : ""): field '\(fieldPath)': \(reason)")
    }

    /// An error about `parameters { key: "key" ... }`.
    func parameterError(_ key: String, _ reason: String) -> ModelLoadError {
        error(field: "parameters.\(key)", line: line(ofString: key), reason)
    }
}

/// The `parameters` map of a config. Values still holding a TensorRT-LLM template placeholder
/// (`"${engine_dir}"`) count as unset, as TensorRT-LLM's backend treats them.
struct ModelParameters: Sendable {
    let values: [String: String]
    let source: ConfigSource

    init(_ config: Inference_ModelConfig, source: ConfigSource) {
        var v: [String: String] = [:]
        for (key, p) in config.parameters {
            let s = p.stringValue.trimmingCharacters(in: .whitespaces)
            if s.isEmpty || s.hasPrefix("${") { continue }
            v[key] = s
        }
        values = v
        self.source = source
    }

    func string(_ key: String) -> String? { values[key] }

    func string(_ keys: [String]) -> (key: String, value: String)? {
        for k in keys { if let v = values[k] { return (k, v) } }
        return nil
    }

    func bool(_ key: String, default value: Bool) throws -> Bool {
        guard let s = values[key] else { return value }
        switch s.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw source.parameterError(key, "'\(s)' is not a boolean (true or false)")
        }
    }

    func int(_ key: String) throws -> Int? {
        guard let s = values[key] else { return nil }
        guard let v = Int(s) else { throw source.parameterError(key, "'\(s)' is not an integer") }
        return v
    }

    func double(_ key: String) throws -> Double? {
        guard let s = values[key] else { return nil }
        guard let v = Double(s), v.isFinite else { throw source.parameterError(key, "'\(s)' is not a number") }
        return v
    }

    /// A path parameter: relative paths resolve against `directory` (the model's folder).
    func path(_ keys: [String], relativeTo directory: String) -> (key: String, path: String)? {
        guard let (k, v) = string(keys) else { return nil }
        return (k, resolvePath(v, relativeTo: directory))
    }
}

func resolvePath(_ path: String, relativeTo directory: String) -> String {
    var p = path
    if p.hasPrefix("~/") { p = FileManager.default.homeDirectoryForCurrentUser.path + p.dropFirst() }
    if p.hasPrefix("/") { return URL(fileURLWithPath: p).standardizedFileURL.path }
    return URL(fileURLWithPath: directory).appendingPathComponent(p).standardizedFileURL.path
}
