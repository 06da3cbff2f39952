// JSONValue: a small JSON parser for tokenizer files. Foundation's parsers store objects in
// String-keyed dictionaries, and Swift compares Strings by canonical equivalence, so a vocabulary
// holding both "é" and "e\u{301}" would lose a token; this parser keeps every key as written.

enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

/// Object members in file order; lookups compare keys byte for byte.
struct JSONObject: Sendable {
    var members: [(key: String, value: JSONValue)] = []

    subscript(key: String) -> JSONValue? {
        for m in members where m.key.utf8.elementsEqual(key.utf8) { return m.value }
        return nil
    }
}

struct JSONParseError: Error, CustomStringConvertible {
    let offset: Int
    let message: String
    var description: String { "\(message) at byte \(offset)" }
}

struct JSONParser {
    private let s: UnsafeBufferPointer<UInt8>
    private var i = 0
    private var depth = 0

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws -> JSONValue {
        var p = JSONParser(s: bytes)
        if p.s.count >= 3 && p.s[0] == 0xEF && p.s[1] == 0xBB && p.s[2] == 0xBF { p.i = 3 }  // BOM
        let v = try p.value()
        p.skipSpace()
        guard p.i == p.s.count else { throw p.fail("unexpected text after the JSON value") }
        return v
    }

    private init(s: UnsafeBufferPointer<UInt8>) { self.s = s }

    private func fail(_ message: String) -> JSONParseError { JSONParseError(offset: i, message: message) }

    private mutating func skipSpace() {
        while i < s.count, s[i] == 0x20 || s[i] == 0x0A || s[i] == 0x0D || s[i] == 0x09 { i += 1 }
    }

    private mutating func value() throws -> JSONValue {
        skipSpace()
        guard i < s.count else { throw fail("unexpected end of file (truncated?)") }
        switch s[i] {
        case UInt8(ascii: "{"): return .object(try object())
        case UInt8(ascii: "["): return .array(try array())
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw fail("unexpected character '\(Unicode.Scalar(s[i]))'")
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= s.count else { throw fail("unexpected end of file (truncated?)") }
        for k in 0..<n where s[i + k] != word.utf8Start[k] { throw fail("invalid literal") }
        i += n
    }

    private mutating func enter() throws {
        depth += 1
        guard depth <= 512 else { throw fail("nested too deeply") }
    }

    private mutating func object() throws -> JSONObject {
        try enter()
        defer { depth -= 1 }
        i += 1
        var o = JSONObject()
        skipSpace()
        if i < s.count && s[i] == UInt8(ascii: "}") { i += 1; return o }
        while true {
            skipSpace()
            guard i < s.count else { throw fail("unexpected end of file inside an object (truncated?)") }
            guard s[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try string()
            skipSpace()
            guard i < s.count, s[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            o.members.append((key, try value()))
            skipSpace()
            guard i < s.count else { throw fail("unexpected end of file inside an object (truncated?)") }
            if s[i] == UInt8(ascii: ",") { i += 1; continue }
            if s[i] == UInt8(ascii: "}") { i += 1; return o }
            throw fail("expected ',' or '}'")
        }
    }

    private mutating func array() throws -> [JSONValue] {
        try enter()
        defer { depth -= 1 }
        i += 1
        var a: [JSONValue] = []
        skipSpace()
        if i < s.count && s[i] == UInt8(ascii: "]") { i += 1; return a }
        while true {
            a.append(try value())
            skipSpace()
            guard i < s.count else { throw fail("unexpected end of file inside an array (truncated?)") }
            if s[i] == UInt8(ascii: ",") { i += 1; continue }
            if s[i] == UInt8(ascii: "]") { i += 1; return a }
            throw fail("expected ',' or ']'")
        }
    }

    private mutating func string() throws -> String {
        i += 1
        let start = i
        while i < s.count && s[i] != UInt8(ascii: "\"") && s[i] != UInt8(ascii: "\\") {
            guard s[i] >= 0x20 else { throw fail("control character in a string") }
            i += 1
        }
        guard i < s.count else { throw fail("unexpected end of file inside a string (truncated?)") }
        if s[i] == UInt8(ascii: "\"") {
            let out = String(decoding: UnsafeBufferPointer(rebasing: s[start..<i]), as: UTF8.self)
            i += 1
            return out
        }
        var bytes = Array(s[start..<i])
        while true {
            guard i < s.count else { throw fail("unexpected end of file inside a string (truncated?)") }
            let c = s[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c != UInt8(ascii: "\\") {
                guard c >= 0x20 else { throw fail("control character in a string") }
                bytes.append(c)
                i += 1
                continue
            }
            i += 1
            guard i < s.count else { throw fail("unexpected end of file inside a string (truncated?)") }
            let e = s[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): bytes.append(e)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                var v = try hex4()
                if v >= 0xD800 && v < 0xDC00 {
                    // A high surrogate should be followed by \u and a low surrogate.
                    if i + 1 < s.count && s[i] == UInt8(ascii: "\\") && s[i + 1] == UInt8(ascii: "u") {
                        let save = i
                        i += 2
                        let low = try hex4()
                        if low >= 0xDC00 && low < 0xE000 {
                            v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            i = save
                            v = 0xFFFD
                        }
                    } else {
                        v = 0xFFFD
                    }
                } else if v >= 0xDC00 && v < 0xE000 {
                    v = 0xFFFD
                }
                appendUTF8(v, &bytes)
            default:
                throw fail("invalid escape '\\\(Unicode.Scalar(e))'")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= s.count else { throw fail("unexpected end of file in a \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = s[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func number() throws -> Double {
        let start = i
        var integer = true
        var value: Int = 0
        var negative = false
        if s[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        let digitsStart = i
        while i < s.count, s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") {
            if i - digitsStart < 15 { value = value * 10 + Int(s[i] - UInt8(ascii: "0")) } else { integer = false }
            i += 1
        }
        guard i > digitsStart else { throw fail("invalid number") }
        while i < s.count, s[i] == UInt8(ascii: ".") || s[i] == UInt8(ascii: "e") || s[i] == UInt8(ascii: "E")
                || s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") || (s[i] >= UInt8(ascii: "0") && s[i] <= UInt8(ascii: "9")) {
            integer = false
            i += 1
        }
        if integer { return Double(negative ? -value : value) }
        guard let d = Double(String(decoding: UnsafeBufferPointer(rebasing: s[start..<i]), as: UTF8.self)) else {
            throw fail("invalid number")
        }
        return d
    }
}
