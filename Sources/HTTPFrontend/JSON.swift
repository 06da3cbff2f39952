// JSON: the parser and writer for KServe v2 bodies. Numbers keep their integer-ness (INT64 and
// UINT64 tensors round-trip exactly; request parameters are int or double as written), object
// members keep their order, and the writer emits BYTES elements byte for byte as Triton does.

enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    /// An integer literal that fits Int64.
    case int(Int64)
    /// An integer literal above Int64.max (only UINT64 data needs these).
    case uint(UInt64)
    /// Any number written with a fraction or exponent, or too large for UInt64.
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)

    subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .uint, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

/// Object members in the order written; a repeated key answers its first occurrence.
struct JSONObject: Sendable, Equatable {
    var members: [(key: String, value: JSON)] = []

    init(_ members: [(key: String, value: JSON)] = []) { self.members = members }

    subscript(key: String) -> JSON? {
        for m in members where m.key == key { return m.value }
        return nil
    }

    static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.members.count == b.members.count
            && zip(a.members, b.members).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

struct JSONParseError: Error, CustomStringConvertible {
    let offset: Int
    let message: String
    var description: String { "\(message) at offset \(offset)" }
}

// MARK: - Parser

struct JSONParser {
    /// Triton's HTTP_MAX_JSON_NESTING_DEPTH is 100; deeper input is rejected, never recursed into.
    static let maxDepth = 100

    private let s: UnsafeBufferPointer<UInt8>
    private var i = 0
    private var depth = 0

    static func parse(_ bytes: some Collection<UInt8>) throws -> JSON {
        let result: JSON? = try bytes.withContiguousStorageIfAvailable { try parse(buffer: $0) }
        if let result { return result }
        return try Array(bytes).withUnsafeBufferPointer { try parse(buffer: $0) }
    }

    static func parse(buffer: UnsafeBufferPointer<UInt8>) throws -> JSON {
        var p = JSONParser(s: buffer)
        if buffer.count >= 3, buffer[0] == 0xEF, buffer[1] == 0xBB, buffer[2] == 0xBF { p.i = 3 }
        let v = try p.value()
        p.skipSpace()
        guard p.i == buffer.count else { throw p.fail("unexpected text after the JSON value") }
        return v
    }

    private init(s: UnsafeBufferPointer<UInt8>) { self.s = s }

    private func fail(_ message: String) -> JSONParseError { JSONParseError(offset: i, message: message) }

    private mutating func skipSpace() {
        while i < s.count, s[i] == 0x20 || s[i] == 0x0A || s[i] == 0x0D || s[i] == 0x09 { i += 1 }
    }

    private mutating func value() throws -> JSON {
        skipSpace()
        guard i < s.count else { throw fail("unexpected end of JSON") }
        switch s[i] {
        case UInt8(ascii: "{"): return .object(try object())
        case UInt8(ascii: "["): return .array(try array())
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected character '\(Character(Unicode.Scalar(s[i])))'")
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= s.count else { throw fail("invalid literal") }
        for k in 0..<n where s[i + k] != word.utf8Start[k] { throw fail("invalid literal") }
        i += n
    }

    private mutating func enter() throws {
        depth += 1
        if depth > JSONParser.maxDepth {
            throw fail("JSON nesting depth exceeds maximum allowed limit (\(JSONParser.maxDepth))")
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
            guard i < s.count, s[i] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try string()
            skipSpace()
            guard i < s.count, s[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            o.members.append((key, try value()))
            skipSpace()
            guard i < s.count else { throw fail("unterminated object") }
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
            guard i < s.count else { throw fail("unterminated array") }
            if s[i] == UInt8(ascii: ",") { i += 1; continue }
            if s[i] == UInt8(ascii: "]") { i += 1; return a }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func string() throws -> String {
        i += 1
        let start = i
        // Fast path: no escapes.
        while i < s.count, s[i] != UInt8(ascii: "\""), s[i] != UInt8(ascii: "\\"), s[i] >= 0x20 { i += 1 }
        guard i < s.count else { throw fail("unterminated string") }
        if s[i] == UInt8(ascii: "\"") {
            let str = String(decoding: UnsafeBufferPointer(rebasing: s[start..<i]), as: UTF8.self)
            i += 1
            return str
        }
        var bytes = Array(s[start..<i])
        while true {
            guard i < s.count else { throw fail("unterminated string") }
            let c = s[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { bytes.append(c); i += 1; continue }
            i += 1
            guard i < s.count else { throw fail("unterminated escape") }
            let e = s[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar) {
                    guard i + 1 < s.count, s[i] == UInt8(ascii: "\\"), s[i + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate in \\u escape")
                    }
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid low surrogate") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw fail("unpaired surrogate in \\u escape")
                }
                bytes.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
            default:
                throw fail("invalid escape")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= s.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = s[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            v = v * 16 + d
            i += 1
        }
        return v
    }

    private mutating func number() throws -> JSON {
        let start = i
        var negative = false
        if s[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        let intStart = i
        while i < s.count, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") { i += 1 }
        guard i > intStart else { throw fail("invalid number") }
        if s[intStart] == UInt8(ascii: "0"), i - intStart > 1 { throw fail("leading zero in number") }
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
            // Accumulate as a magnitude; fall back to Double on overflow.
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
        guard let d = Double(text) else { throw fail("invalid number") }
        return .double(d)
    }
}

// MARK: - Writer

/// Appends JSON text to a byte array. Strings are written as UTF-8 with only '"', '\' and
/// control characters escaped, so non-ASCII text (and BYTES elements that are not UTF-8) pass
/// through unchanged.
struct JSONWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    mutating func raw(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { string(bytes: $0) }
    }

    mutating func string<C: Collection>(bytes source: C) where C.Element == UInt8 {
        bytes.append(UInt8(ascii: "\""))
        for c in source {
            switch c {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case 0x0A: raw("\\n")
            case 0x0D: raw("\\r")
            case 0x09: raw("\\t")
            case 0x08: raw("\\b")
            case 0x0C: raw("\\f")
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                raw("\\u00")
                bytes.append(hex[Int(c >> 4)])
                bytes.append(hex[Int(c & 0xF)])
            default: bytes.append(c)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    mutating func int(_ v: Int64) { bytes.append(contentsOf: String(v).utf8) }
    mutating func uint(_ v: UInt64) { bytes.append(contentsOf: String(v).utf8) }
    mutating func bool(_ v: Bool) { if v { raw("true") } else { raw("false") } }

    /// Shortest round-trip form; integral values keep a ".0" as RapidJSON writes them. NaN and
    /// infinities (not JSON) are written as Python's json module reads them.
    mutating func double(_ v: Double) {
        if v.isNaN { raw("NaN"); return }
        if v.isInfinite { if v < 0 { raw("-Infinity") } else { raw("Infinity") }; return }
        bytes.append(contentsOf: v.description.utf8)
    }

    mutating func value(_ v: JSON) {
        switch v {
        case .null: raw("null")
        case .bool(let b): bool(b)
        case .int(let n): int(n)
        case .uint(let n): uint(n)
        case .double(let d): double(d)
        case .string(let s): string(s)
        case .array(let a):
            bytes.append(UInt8(ascii: "["))
            for (k, e) in a.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                value(e)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let o):
            bytes.append(UInt8(ascii: "{"))
            for (k, m) in o.members.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                string(m.key)
                bytes.append(UInt8(ascii: ":"))
                value(m.value)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    static func encode(_ v: JSON) -> [UInt8] {
        var w = JSONWriter()
        w.value(v)
        return w.bytes
    }
}
