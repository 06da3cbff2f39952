// Reading `config.pbtxt` (protobuf text format) with errors that say where.
//
// swift-protobuf's `TextFormatDecodingError` is a bare enum (`.unknownField`,
// `.unrecognizedEnumValue`, ...) with no position. Triton reports config errors with the
// file and the offending field, and users fix configs by line number, so on failure we
// locate the error ourselves:
//
//   1. a small scanner walks the text with the text-format grammar (no schema needed) and
//      records, in document order, every point where a field (or a list element, or the
//      opening of a nested message) is complete, with the closing brackets that would make
//      the text up to that point a whole message again;
//   2. the decoder itself is the oracle: `text[..<point] + closers` is decoded for each
//      point in order; the first failing point names the field, its line and column.
//      swift-protobuf rejects a map entry that lacks its key or its value (protoc's parser
//      and Triton default them), so a "malformed text" failure at a point inside a map entry
//      that has not yet seen both is not counted there; the entry's end point counts.
//
// The scanner also catches what the decoder cannot place at all, such as an unterminated
// string or a `${placeholder}` left in a TensorRT-LLM template.

import SwiftProtobuf

/// A text-format error with its place in the file.
public struct ConfigTextFormatError: Error, CustomStringConvertible {
    /// The file the text came from (as given to `decodeModelConfig(text:path:)`).
    public var path: String
    /// 1-based line of the offending field name (or of the scanner's failure); 0 if unknown.
    public var line: Int
    /// 1-based column, in UTF-8 bytes; 0 if unknown.
    public var column: Int
    /// Dotted path of the offending field from the top message, e.g.
    /// `dynamic_batching.max_queue_delay_microsecond`; empty if unknown.
    public var fieldPath: String
    /// What went wrong, in words.
    public var reason: String
    /// The decoder's error, when the decoder raised it.
    public var decodingError: TextFormatDecodingError?

    /// The last component of `fieldPath` (the field name as written in the file).
    public var field: String {
        fieldPath.split(separator: ".").last.map(String.init) ?? ""
    }

    public var description: String {
        var s = path
        if line > 0 { s += ":\(line):\(column)" }
        s += ": "
        if !fieldPath.isEmpty { s += "field '\(fieldPath)': " }
        return s + reason
    }
}

/// Where a text-format decoding error happened.
public struct TextFormatErrorLocation: Equatable, Sendable {
    public var line: Int
    public var column: Int
    /// Dotted path of the field from the top message.
    public var fieldPath: String
    /// The decoder's error for the smallest failing prefix, or nil when the scanner itself
    /// stopped (unterminated string, stray character, unfilled placeholder).
    public var decodingError: TextFormatDecodingError?
    /// Set when the scanner stopped: why.
    public var scanProblem: String?

    public var field: String {
        fieldPath.split(separator: ".").last.map(String.init) ?? ""
    }
}

/// Parses a Triton model configuration (`config.pbtxt`). Errors are `ConfigTextFormatError`
/// naming `path`, the line and the field.
public func decodeModelConfig(text: String, path: String) throws -> Inference_ModelConfig {
    do {
        return try Inference_ModelConfig(textFormatString: text)
    } catch {
        throw describeTextFormatError(error, in: text, path: path, messageType: Inference_ModelConfig.self)
    }
}

/// Turns any error from decoding `text` as `M` into a `ConfigTextFormatError` with a place.
public func describeTextFormatError<M: Message>(
    _ error: any Error, in text: String, path: String, messageType: M.Type
) -> ConfigTextFormatError {
    let decodingError = error as? TextFormatDecodingError
    guard let location = locateTextFormatError(in: text, error: error, messageType: messageType) else {
        return ConfigTextFormatError(
            path: path, line: 0, column: 0, fieldPath: "",
            reason: decodingError.map(explain) ?? "\(error)", decodingError: decodingError)
    }
    let cause = location.decodingError ?? decodingError
    var reason: String
    if let problem = location.scanProblem {
        reason = problem
    } else if let cause {
        reason = explain(cause)
    } else {
        reason = "\(error)"
    }
    if cause == .unknownField, !location.field.isEmpty {
        reason = "unknown field '\(location.field)'"
    }
    return ConfigTextFormatError(
        path: path, line: location.line, column: location.column, fieldPath: location.fieldPath,
        reason: reason, decodingError: cause)
}

/// Finds the line and field of a text-format error (see the top of this file for how).
/// Returns nil when `text` decodes as `M` without error.
public func locateTextFormatError<M: Message>(
    in text: String, error: (any Error)? = nil, messageType: M.Type = Inference_ModelConfig.self
) -> TextFormatErrorLocation? {
    let bytes = Array(text.utf8)
    var scanner = TextFormatScanner(bytes)
    let scanFailure: TextFormatScanner.Failure?
    do {
        try scanner.scanMessageBody(closer: nil, path: [], closers: [])
        scanFailure = nil
    } catch let failure as TextFormatScanner.Failure {
        scanFailure = failure
    } catch {
        scanFailure = nil
    }
    let points = scanner.points

    func failure(at index: Int) -> TextFormatDecodingError? {
        let point = points[index]
        var probe = String(decoding: bytes[0..<point.end], as: UTF8.self)
        for closer in point.closers {
            probe += " "
            probe.append(Character(Unicode.Scalar(closer)))
        }
        do {
            _ = try M(textFormatString: probe)
            return nil
        } catch let e as TextFormatDecodingError {
            return e
        } catch {
            return .malformedText
        }
    }

    // The first failing prefix. (Not a binary search: a point skipped for an incomplete map
    // entry would break monotonicity. Configs are small and this runs only on errors.)
    for index in points.indices {
        guard let e = failure(at: index) else { continue }
        let point = points[index]
        if e == .malformedText, point.insideIncompleteMapEntry { continue }
        return TextFormatErrorLocation(
            line: point.line, column: point.column, fieldPath: point.fieldPath,
            decodingError: e,
            scanProblem: e == .malformedText && point.endsIncompleteMapEntry
                ? "map entry needs both a key and a value" : nil)
    }
    if let scanFailure {
        return TextFormatErrorLocation(
            line: scanFailure.line, column: scanFailure.column, fieldPath: scanFailure.fieldPath,
            decodingError: error as? TextFormatDecodingError, scanProblem: scanFailure.message)
    }
    // Every prefix decodes and the scanner read everything: only the whole text can fail
    // (or nothing does).
    do {
        _ = try M(textFormatString: text)
        return nil
    } catch {
        let last = points.last
        return TextFormatErrorLocation(
            line: last?.line ?? 1, column: last?.column ?? 1, fieldPath: last?.fieldPath ?? "",
            decodingError: error as? TextFormatDecodingError, scanProblem: nil)
    }
}

private func explain(_ error: TextFormatDecodingError) -> String {
    switch error {
    case .malformedText: return "malformed text"
    case .malformedNumber: return "malformed number"
    case .trailingGarbage: return "unexpected text after the end of the message"
    case .truncated: return "unexpected end of text"
    case .invalidUTF8: return "string is not valid UTF-8"
    case .schemaMismatch: return "value does not match the field's type"
    case .missingFieldNames: return "field names were not compiled into the binary"
    case .unknownField: return "unknown field"
    case .unrecognizedEnumValue: return "unknown enum value"
    case .conflictingOneOf: return "conflicts with another field of the same oneof (e.g. two schedulers)"
    case .internalExtensionError: return "internal extension error"
    case .messageDepthLimit: return "messages nested too deeply"
    }
}

/// Grammar-only walk over protobuf text format, recording "complete points".
private struct TextFormatScanner {
    struct Point {
        var end: Int            // byte offset just past the complete piece
        var closers: [UInt8]    // brackets that close every open level, innermost first
        var line: Int           // of the field name
        var column: Int
        var fieldPath: String
        /// Some open nested message holds only `key` / `value` fields, not both yet.
        var insideIncompleteMapEntry: Bool
        /// This point closes a message that holds only one of `key` / `value`.
        var endsIncompleteMapEntry: Bool
    }

    struct Failure: Error {
        var line: Int
        var column: Int
        var fieldPath: String
        var message: String
    }

    let b: [UInt8]
    var i = 0
    var line = 1
    var lineStart = 0
    var points: [Point] = []
    /// Field names seen in each open message body, outermost (the top message) first.
    var bodies: [Set<String>] = [[]]

    init(_ bytes: [UInt8]) { b = bytes }

    var column: Int { i - lineStart + 1 }

    mutating func skipSpaceAndComments() {
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\n") {
                i += 1
                line += 1
                lineStart = i
            } else if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r")
                || c == 0x0B || c == 0x0C
            {
                i += 1
            } else if c == UInt8(ascii: "#") {
                while i < b.count, b[i] != UInt8(ascii: "\n") { i += 1 }
            } else {
                return
            }
        }
    }

    static func isWordByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "_")
            || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
    }

    func fail(_ message: String, path: [String], line: Int? = nil, column: Int? = nil) -> Failure {
        Failure(line: line ?? self.line, column: column ?? self.column,
                fieldPath: path.joined(separator: "."), message: message)
    }

    func unexpected(_ what: String, path: [String]) -> Failure {
        guard i < b.count else { return fail("unexpected end of text, expected \(what)", path: path) }
        if b[i] == UInt8(ascii: "$"), i + 1 < b.count, b[i + 1] == UInt8(ascii: "{") {
            var j = i
            while j < b.count, b[j] != UInt8(ascii: "}"), b[j] != UInt8(ascii: "\n") { j += 1 }
            let placeholder = String(decoding: b[i..<min(j + 1, b.count)], as: UTF8.self)
            return fail("template placeholder \(placeholder) was not filled in", path: path)
        }
        let ch = String(decoding: [b[i]], as: UTF8.self)
        return fail("unexpected '\(ch)', expected \(what)", path: path)
    }

    mutating func scanWord() -> String {
        let start = i
        while i < b.count, Self.isWordByte(b[i]) { i += 1 }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    /// Reads the fields of a message up to and including `closer` (or to the end of text).
    mutating func scanMessageBody(closer: UInt8?, path: [String], closers: [UInt8]) throws {
        while true {
            skipSpaceAndComments()
            if i >= b.count {
                if closer == nil { return }
                throw fail("unexpected end of text, expected '\(Character(Unicode.Scalar(closer!)))'", path: path)
            }
            if let closer, b[i] == closer {
                i += 1
                return
            }
            let nameLine = line
            let nameColumn = column
            var name: String
            if b[i] == UInt8(ascii: "[") {
                // Extension or Any type URL: [pkg.ext] / [type.googleapis.com/pkg.Msg]
                let start = i
                while i < b.count, b[i] != UInt8(ascii: "]"), b[i] != UInt8(ascii: "\n") { i += 1 }
                guard i < b.count, b[i] == UInt8(ascii: "]") else {
                    throw fail("unterminated '[' in field name", path: path)
                }
                i += 1
                name = String(decoding: b[start..<i], as: UTF8.self)
            } else {
                name = scanWord()
                if name.isEmpty { throw unexpected("a field name", path: path) }
            }
            bodies[bodies.count - 1].insert(name)
            let fieldPath = path + [name]
            skipSpaceAndComments()
            if i < b.count, b[i] == UInt8(ascii: ":") {
                i += 1
                skipSpaceAndComments()
            }
            try scanValue(path: fieldPath, closers: closers, line: nameLine, column: nameColumn)
            skipSpaceAndComments()
            if i < b.count, b[i] == UInt8(ascii: ";") || b[i] == UInt8(ascii: ",") { i += 1 }
        }
    }

    static func isIncompleteMapEntry(_ names: Set<String>) -> Bool {
        names.isSubset(of: ["key", "value"]) && names.count < 2
    }

    mutating func record(_ closers: [UInt8], _ path: [String], _ line: Int, _ column: Int,
                         closing closed: Set<String>? = nil) {
        points.append(Point(
            end: i, closers: closers, line: line, column: column,
            fieldPath: path.joined(separator: "."),
            insideIncompleteMapEntry: bodies.dropFirst().contains(where: Self.isIncompleteMapEntry),
            endsIncompleteMapEntry: closed.map { !$0.isEmpty && Self.isIncompleteMapEntry($0) } ?? false))
    }

    static func closer(for opener: UInt8) -> UInt8? {
        switch opener {
        case UInt8(ascii: "{"): return UInt8(ascii: "}")
        case UInt8(ascii: "<"): return UInt8(ascii: ">")
        default: return nil
        }
    }

    /// A nested message: records its opening (as an empty message) and its end.
    mutating func scanMessage(path: [String], closers: [UInt8], line: Int, column: Int) throws {
        let close = Self.closer(for: b[i])!
        i += 1
        bodies.append([])
        record([close] + closers, path, line, column)
        try scanMessageBody(closer: close, path: path, closers: [close] + closers)
        let closed = bodies.removeLast()
        record(closers, path, line, column, closing: closed)
    }

    mutating func scanValue(path: [String], closers: [UInt8], line: Int, column: Int) throws {
        guard i < b.count else { throw unexpected("a value", path: path) }
        if Self.closer(for: b[i]) != nil {
            try scanMessage(path: path, closers: closers, line: line, column: column)
            return
        }
        if b[i] == UInt8(ascii: "[") {
            i += 1
            let inList = [UInt8(ascii: "]")] + closers
            skipSpaceAndComments()
            if i < b.count, b[i] == UInt8(ascii: "]") {
                i += 1
                record(closers, path, line, column)
                return
            }
            while true {
                skipSpaceAndComments()
                guard i < b.count else { throw unexpected("a list element", path: path) }
                if Self.closer(for: b[i]) != nil {
                    try scanMessage(path: path, closers: inList, line: line, column: column)
                } else {
                    try scanScalar(path: path)
                    record(inList, path, line, column)
                }
                skipSpaceAndComments()
                guard i < b.count else { throw unexpected("',' or ']'", path: path) }
                if b[i] == UInt8(ascii: ",") {
                    i += 1
                    continue
                }
                if b[i] == UInt8(ascii: "]") {
                    i += 1
                    record(closers, path, line, column)
                    return
                }
                throw unexpected("',' or ']'", path: path)
            }
        }
        try scanScalar(path: path)
        record(closers, path, line, column)
    }

    /// A string (adjacent strings concatenate), a number, an identifier or `-identifier`.
    mutating func scanScalar(path: [String]) throws {
        guard i < b.count else { throw unexpected("a value", path: path) }
        let c = b[i]
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
            while i < b.count, b[i] == UInt8(ascii: "\"") || b[i] == UInt8(ascii: "'") {
                try scanString(path: path)
                let save = (i, line, lineStart)
                skipSpaceAndComments()
                if !(i < b.count && (b[i] == UInt8(ascii: "\"") || b[i] == UInt8(ascii: "'"))) {
                    (i, line, lineStart) = save
                    return
                }
            }
            return
        }
        if scanWord().isEmpty { throw unexpected("a value", path: path) }
    }

    mutating func scanString(path: [String]) throws {
        let quote = b[i]
        let startLine = line
        let startColumn = column
        i += 1
        while i < b.count {
            let c = b[i]
            if c == quote {
                i += 1
                return
            }
            if c == UInt8(ascii: "\n") { break }
            i += c == UInt8(ascii: "\\") ? 2 : 1
        }
        throw fail("unterminated string", path: path, line: startLine, column: startColumn)
    }
}
