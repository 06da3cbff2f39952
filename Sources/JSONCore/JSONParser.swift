// JSONParser: RFC 8259 text -> JSON, in one pass over a byte buffer. Callers choose what a lone
// surrogate escape becomes and how deep nesting may go; everything else is strict: one value,
// no trailing commas or leading zeros, strings of valid UTF-8 (an error names the bad byte).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// Why the text is not JSON. `offset` is a byte offset into the parsed buffer.
public struct JSONParseError: Error, Equatable, CustomStringConvertible {
    public let offset: Int
    public let message: String
    public init(offset: Int, message: String) {
        self.offset = offset
        self.message = message
    }
    public var description: String { "\(message) at byte \(offset)" }
}

public struct JSONParser {
    public struct Options: Sendable {
        /// What a `\u` escape of a UTF-16 surrogate that is not half of a high-low pair becomes.
        public enum LoneSurrogate: Sendable {
            /// An error. RFC 8259 leaves such strings undefined; RapidJSON (Triton) and serde_json
            /// (Hugging Face tokenizers) reject them.
            case reject
            /// U+FFFD, and parsing goes on. Python's json accepts lone surrogates, which a Swift
            /// String cannot hold. A high surrogate followed by an escape that is not a low one
            /// becomes U+FFFD and that escape is read on its own.
            case replace
        }

        public var loneSurrogate: LoneSurrogate
        /// Arrays and objects nested deeper than this are an error, never recursed into.
        public var maxDepth: Int

        /// The defaults are strict: lone surrogates rejected, depth 100 (Triton's
        /// HTTP_MAX_JSON_NESTING_DEPTH).
        public init(loneSurrogate: LoneSurrogate = .reject, maxDepth: Int = 100) {
            self.loneSurrogate = loneSurrogate
            self.maxDepth = maxDepth
        }
    }

    private let s: UnsafeBufferPointer<UInt8>
    private let options: Options
    private var i = 0
    private var depth = 0

    /// Parses exactly one JSON value (surrounding whitespace and a leading UTF-8 BOM allowed).
    /// Throws JSONParseError.
    public static func parse(_ bytes: some Collection<UInt8>, options: Options = Options()) throws -> JSON {
        let result: JSON? = try bytes.withContiguousStorageIfAvailable { try parse(buffer: $0, options: options) }
        if let result { return result }
        return try Array(bytes).withUnsafeBufferPointer { try parse(buffer: $0, options: options) }
    }

    /// Parses exactly one JSON value (surrounding whitespace and a leading UTF-8 BOM allowed).
    /// Throws JSONParseError; the result does not refer to `buffer`.
    public static func parse(buffer: UnsafeBufferPointer<UInt8>, options: Options = Options()) throws -> JSON {
        var p = JSONParser(s: buffer, options: options)
        if buffer.count >= 3, buffer[0] == 0xEF, buffer[1] == 0xBB, buffer[2] == 0xBF { p.i = 3 }
        let v = try p.value()
        p.skipSpace()
        guard p.i == buffer.count else { throw p.fail("unexpected text after the JSON value") }
        return v
    }

    private init(s: UnsafeBufferPointer<UInt8>, options: Options) {
        self.s = s
        self.options = options
    }

    private func fail(_ message: String, at offset: Int? = nil) -> JSONParseError {
        JSONParseError(offset: offset ?? i, message: message)
    }

    private func truncated(_ inside: String) -> JSONParseError { fail("unexpected end of JSON\(inside) (truncated?)") }

    private mutating func skipSpace() {
        while i < s.count, s[i] == 0x20 || s[i] == 0x0A || s[i] == 0x0D || s[i] == 0x09 { i += 1 }
    }

    private mutating func value() throws -> JSON {
        skipSpace()
        guard i < s.count else { throw truncated("") }
        switch s[i] {
        case UInt8(ascii: "{"): return .object(try object())
        case UInt8(ascii: "["): return .array(try array())
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw unexpectedCharacter()
        }
    }

    /// The error for a byte that begins no JSON value. A byte of a multi-byte sequence is named
    /// as its character when the sequence is valid UTF-8, else as invalid UTF-8 (RFC 8259 §8.1:
    /// JSON text is UTF-8).
    private func unexpectedCharacter() -> JSONParseError {
        guard s[i] >= 0x80 else { return fail("unexpected character '\(Character(Unicode.Scalar(s[i])))'") }
        var parser = Unicode.UTF8.ForwardParser()
        var bytes = UnsafeBufferPointer(rebasing: s[i...]).makeIterator()
        guard case .valid(let encoded) = parser.parseScalar(from: &bytes) else { return fail("invalid UTF-8") }
        return fail("unexpected character '\(Character(UTF8.decode(encoded)))'")
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        for k in 0..<n {
            guard i + k < s.count else { throw truncated("") }
            guard s[i + k] == word.utf8Start[k] else { throw fail("invalid literal") }
        }
        i += n
    }

    private mutating func enter() throws {
        depth += 1
        if depth > options.maxDepth {
            throw fail("JSON nesting depth exceeds maximum allowed limit (\(options.maxDepth))")
        }
    }

    private mutating func object() throws -> JSONObject {
        try enter()
        defer { depth -= 1 }
        i += 1
        var o = JSONObject()
        skipSpace()
        if i < s.count, s[i] == UInt8(ascii: "}") { i += 1; return o }
        while true {
            skipSpace()
            guard i < s.count else { throw truncated(" inside an object") }
            guard s[i] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try string()
            skipSpace()
            guard i < s.count else { throw truncated(" inside an object") }
            guard s[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            o.members.append((key, try value()))
            skipSpace()
            guard i < s.count else { throw truncated(" inside an object") }
            if s[i] == UInt8(ascii: ",") { i += 1; continue }
            if s[i] == UInt8(ascii: "}") { i += 1; return o }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func array() throws -> [JSON] {
        try enter()
        defer { depth -= 1 }
        i += 1
        var a: [JSON] = []
        skipSpace()
        if i < s.count, s[i] == UInt8(ascii: "]") { i += 1; return a }
        while true {
            a.append(try value())
            skipSpace()
            guard i < s.count else { throw truncated(" inside an array") }
            if s[i] == UInt8(ascii: ",") { i += 1; continue }
            if s[i] == UInt8(ascii: "]") { i += 1; return a }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func string() throws -> String {
        i += 1
        let start = i
        // Fast path: no escapes, the text is the string.
        while i < s.count, s[i] != UInt8(ascii: "\""), s[i] != UInt8(ascii: "\\"), s[i] >= 0x20 { i += 1 }
        guard i < s.count else { throw truncated(" inside a string") }
        if s[i] == UInt8(ascii: "\"") {
            guard let str = Self.validString(UnsafeBufferPointer(rebasing: s[start..<i])) else { throw invalidUTF8(start..<i) }
            i += 1
            return str
        }
        var bytes = Array(s[start..<i])
        while true {
            guard i < s.count else { throw truncated(" inside a string") }
            let c = s[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") { bytes.append(c); i += 1; continue }
            i += 1
            guard i < s.count else { throw truncated(" inside a string") }
            let e = s[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): bytes.append(e)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"): UTF8.encode(try unicodeEscape()) { bytes.append($0) }
            default: throw fail("invalid escape '\\\(Character(Unicode.Scalar(e)))'", at: i - 2)
            }
        }
        // Escapes decode to valid UTF-8, so any invalid sequence is in the raw text.
        guard let str = bytes.withUnsafeBufferPointer(Self.validString) else { throw invalidUTF8(start..<(i - 1)) }
        return str
    }

    /// The scalar of a `\u` escape whose `\u` has been read; a surrogate pair is two escapes.
    private mutating func unicodeEscape() throws -> Unicode.Scalar {
        let escapeStart = i - 2
        let v = try hex4()
        if (0xD800..<0xDC00).contains(v) {
            if i + 1 < s.count, s[i] == UInt8(ascii: "\\"), s[i + 1] == UInt8(ascii: "u") {
                let save = i
                i += 2
                let low = try hex4()
                if (0xDC00..<0xE000).contains(low) {
                    return Unicode.Scalar(0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00))!
                }
                i = save
            }
            return try loneSurrogate(at: escapeStart)
        }
        if (0xDC00..<0xE000).contains(v) { return try loneSurrogate(at: escapeStart) }
        return Unicode.Scalar(v)!
    }

    private func loneSurrogate(at offset: Int) throws -> Unicode.Scalar {
        switch options.loneSurrogate {
        case .reject: throw fail("unpaired surrogate in a \\u escape", at: offset)
        case .replace: return "\u{FFFD}"
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= s.count else { throw truncated(" inside a \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = s[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit in a \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    /// `utf8` as a String, or nil when it is not valid UTF-8. String(decoding:) replaces invalid
    /// sequences, so its result has the same bytes exactly when the input is valid; this is
    /// several times faster than String(validating:as:).
    private static func validString(_ utf8: UnsafeBufferPointer<UInt8>) -> String? {
        var str = String(decoding: utf8, as: UTF8.self)
        let same = str.withUTF8 { out in
            out.count == utf8.count && (utf8.isEmpty || memcmp(out.baseAddress!, utf8.baseAddress!, utf8.count) == 0)
        }
        return same ? str : nil
    }

    /// The error for a string whose raw bytes in `range` are not valid UTF-8: it names the
    /// first byte of the first invalid sequence.
    private func invalidUTF8(_ range: Range<Int>) -> JSONParseError {
        var parser = Unicode.UTF8.ForwardParser()
        var bytes = UnsafeBufferPointer(rebasing: s[range]).makeIterator()
        var offset = range.lowerBound
        while case .valid(let scalar) = parser.parseScalar(from: &bytes) { offset += scalar.count }
        return fail("invalid UTF-8 in a string", at: offset)
    }

    private mutating func number() throws -> JSON {
        let start = i
        var negative = false
        if s[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        let intStart = i
        while i < s.count, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") { i += 1 }
        guard i > intStart else { throw fail("invalid number") }
        if s[intStart] == UInt8(ascii: "0"), i - intStart > 1 { throw fail("leading zero in a number", at: intStart) }
        var isInteger = true
        if i < s.count, s[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            let f = i
            while i < s.count, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") { i += 1 }
            guard i > f else { throw fail("invalid number") }
        }
        if i < s.count, s[i] == UInt8(ascii: "e") || s[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < s.count, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") { i += 1 }
            let e = i
            while i < s.count, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") { i += 1 }
            guard i > e else { throw fail("invalid number") }
        }
        if isInteger {
            // Accumulate the magnitude; past UInt64 it becomes a Double.
            var magnitude: UInt64 = 0
            var overflow = false
            for k in intStart..<i {
                let (m1, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (m2, o2) = m1.addingReportingOverflow(UInt64(s[k] - UInt8(ascii: "0")))
                if o1 || o2 { overflow = true; break }
                magnitude = m2
            }
            if !overflow {
                if !negative {
                    return magnitude <= UInt64(Int64.max) ? .int(Int64(magnitude)) : .uint(magnitude)
                }
                if magnitude <= UInt64(Int64.max) { return .int(-Int64(magnitude)) }
                if magnitude == UInt64(Int64.max) + 1 { return .int(Int64.min) }
            }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: s[start..<i]), as: UTF8.self)
        guard let d = Double(text) else { throw fail("invalid number", at: start) }
        return .double(d)
    }
}
