// JSON: the project's one JSON value type. Integers keep their integer-ness (INT64 and UINT64
// round-trip exactly), object members keep their order, and strings and keys compare byte for
// byte (never by Unicode canonical equivalence, which would merge "é" and "e\u{301}").

public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    /// An integer literal that fits Int64.
    case int(Int64)
    /// An integer literal above Int64.max that fits UInt64.
    case uint(UInt64)
    /// Any number written with a fraction or exponent, or outside Int64.min...UInt64.max.
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)

    /// The member `key` of an object; nil for a missing key or a value that is not an object.
    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// Any number as a Double (integers beyond 2^53 round to the nearest Double); nil otherwise.
    public var number: Double? {
        switch self {
        case .int(let n): return Double(n)
        case .uint(let n): return Double(n)
        case .double(let d): return d
        default: return nil
        }
    }

    /// "null", "boolean", "number", "string", "array" or "object".
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .uint, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Same case and payload; strings compare byte for byte, numbers by case (1 and 1.0 differ).
    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.uint(let x), .uint(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.string(let x), .string(let y)): return x.utf8.elementsEqual(y.utf8)
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)): return x == y
        default: return false
        }
    }
}

/// Object members in the order written. Lookups compare keys byte for byte; a repeated key
/// answers its first occurrence (as RapidJSON's FindMember does).
public struct JSONObject: Sendable, Equatable {
    public var members: [(key: String, value: JSON)]

    public init(_ members: [(key: String, value: JSON)] = []) { self.members = members }

    public subscript(key: String) -> JSON? {
        for m in members where m.key.utf8.elementsEqual(key.utf8) { return m.value }
        return nil
    }

    /// Same members in the same order.
    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.members.count == b.members.count
            && zip(a.members, b.members).allSatisfy { $0.key.utf8.elementsEqual($1.key.utf8) && $0.value == $1.value }
    }
}
