// JinjaValue: the values a chat template computes with, and how Python/Jinja print them.

enum JinjaValue: Sendable {
    case undefined(String)  // the missing name, for error messages
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case dict(JinjaDict)
    case namespace(JinjaNamespace)
    case macro(JinjaMacro)
}

/// A Python dict with string keys, in insertion order.
struct JinjaDict: Sendable {
    private(set) var keys: [String] = []
    private var values: [String: JinjaValue] = [:]

    init() {}

    init(_ pairs: [(String, JinjaValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    subscript(key: String) -> JinjaValue? {
        get { values[key] }
        set {
            if values[key] == nil, newValue != nil { keys.append(key) }
            if newValue == nil, values[key] != nil { keys.removeAll { $0 == key } }
            values[key] = newValue
        }
    }

    var count: Int { keys.count }
    var items: [(String, JinjaValue)] { keys.map { ($0, values[$0]!) } }
}

/// `namespace(...)`: the one mutable object templates have (assignments inside loops escape through it).
final class JinjaNamespace: @unchecked Sendable {  // used by one render at a time
    var values = JinjaDict()
}

struct JinjaMacro: Sendable {
    let name: String
    let parameters: [(String, JinjaExpr?)]
    let body: [JinjaNode]
}

extension JinjaValue {
    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// Python truthiness.
    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let v): return v != 0
        case .double(let v): return v != 0
        case .string(let s): return !s.isEmpty
        case .array(let a): return !a.isEmpty
        case .dict(let d): return d.count > 0
        case .namespace, .macro: return true
        }
    }

    /// Python str(): what `{{ value }}` prints.
    var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python repr(), used inside printed lists and dicts.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let v): return String(v)
        case .double(let v): return pythonFloat(v)
        case .string(let s): return pythonRepr(s)
        case .array(let a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.items.map { pythonRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace(let n): return "<Namespace " + JinjaValue.dict(n.values).repr + ">"
        case .macro(let m): return "<Macro '\(m.name)'>"
        }
    }

    var typeName: String {
        switch self {
        case .undefined(let n): return "undefined ('\(n)')"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .macro: return "Macro"
        }
    }

    /// JSON as Python's json.dumps(ensure_ascii=False) writes it (transformers' tojson).
    func json(indent: Int?, level: Int = 0) -> String {
        switch self {
        case .undefined, .none, .macro: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let v): return String(v)
        case .double(let v): return v.isFinite ? pythonFloat(v) : (v.isNaN ? "NaN" : (v > 0 ? "Infinity" : "-Infinity"))
        case .string(let s): return jsonString(s)
        case .array(let a):
            if a.isEmpty { return "[]" }
            return container(a.map { $0.json(indent: indent, level: level + 1) }, "[", "]", indent, level)
        case .dict(let d):
            if d.count == 0 { return "{}" }
            return container(d.items.map { jsonString($0.0) + ": " + $0.1.json(indent: indent, level: level + 1) }, "{", "}", indent, level)
        case .namespace(let n): return JinjaValue.dict(n.values).json(indent: indent, level: level)
        }
    }

    private func container(_ items: [String], _ open: String, _ close: String, _ indent: Int?, _ level: Int) -> String {
        guard let w = indent else { return open + items.joined(separator: ", ") + close }
        let inner = "\n" + String(repeating: " ", count: w * (level + 1))
        let outer = "\n" + String(repeating: " ", count: w * level)
        return open + inner + items.joined(separator: "," + inner) + outer + close
    }
}

func pythonFloat(_ v: Double) -> String {
    if v.isNaN { return "nan" }
    if v.isInfinite { return v > 0 ? "inf" : "-inf" }
    if v == v.rounded() && abs(v) < 1e16 { return String(Int(v)) + ".0" }
    return "\(v)"
}

func pythonRepr(_ s: String) -> String {
    let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
    var out = String(quote)
    for c in s.unicodeScalars {
        switch c {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if Character(c) == quote { out += "\\" + String(quote) }
            else if c.value < 0x20 || c.value == 0x7F { out += "\\x" + hex(c.value, 2) }
            else { out.unicodeScalars.append(c) }
        }
    }
    out.append(quote)
    return out
}

func jsonString(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if c.value < 0x20 { out += "\\u" + hex(c.value, 4) } else { out.unicodeScalars.append(c) }
        }
    }
    return out + "\""
}

private func hex(_ v: UInt32, _ width: Int) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, width - s.count)) + s
}
