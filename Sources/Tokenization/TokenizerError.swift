// TokenizerError: every failure to load a tokenizer names the file and the field at fault.

/// A tokenizer file that cannot be used: `path` is the file, `field` the JSON path or GGUF key
/// (empty when the whole file is at fault), `message` what is wrong.
public struct TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    public let path: String
    public let field: String
    public let message: String

    public init(_ path: String, field: String = "", _ message: String) {
        self.path = path
        self.field = field
        self.message = message
    }

    public var description: String {
        field.isEmpty ? "\(path): \(message)" : "\(path): \(field): \(message)"
    }
}
