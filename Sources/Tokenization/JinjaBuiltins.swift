// JinjaBuiltins: what a template can call — macros, the globals (range, namespace, dict,
// raise_exception, strftime_now, …), methods on strings, lists and dicts, and the filters and
// tests. Part of JinjaRenderer (JinjaRuntime.swift holds statements, expressions and operators).
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension JinjaRenderer {
    // MARK: calls

    func call(_ callee: JinjaExpr, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        if case .attribute(let baseExpr, let name) = callee {
            let base = try eval(baseExpr)
            if let v = try method(base, name, args, kwargs) { return v }
            if case .macro(let m) = try member(base, name, describe: name) { return try callMacro(m, args, kwargs) }
            throw fail("'\(base.typeName)' has no method '\(name)'")
        }
        if case .name(let name) = callee {
            let v = lookup(name)
            if case .macro(let m) = v { return try callMacro(m, args, kwargs) }
            if v.isUndefined { return try global(name, args, kwargs) }
        }
        throw fail("object is not callable")
    }

    private func callMacro(_ m: JinjaMacro, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        var scope: [String: JinjaValue] = [:]
        for (i, (p, d)) in m.parameters.enumerated() {
            if i < args.count { scope[p] = args[i] }
            else if let kw = kwargs.first(where: { $0.0 == p }) { scope[p] = kw.1 }
            else if let d = d { scope[p] = try eval(d) }
            else { scope[p] = .undefined(p) }
        }
        let saved = output
        output = ""
        scopes.append(scope)
        defer { scopes.removeLast() }
        _ = try exec(m.body)
        let result = output
        output = saved
        return .string(result)
    }

    private func global(_ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        switch name {
        case "raise_exception":
            throw JinjaRenderError(message: args.first?.text ?? "raise_exception called", raised: true)
        case "range":
            let ints = try args.map { v -> Int in
                guard case .int(let i) = v else { throw fail("range() takes integers, found \(v.typeName)") }
                return i
            }
            let (start, stop, step): (Int, Int, Int)
            switch ints.count {
            case 1: (start, stop, step) = (0, ints[0], 1)
            case 2: (start, stop, step) = (ints[0], ints[1], 1)
            case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
            default: throw fail("range() takes 1 to 3 arguments")
            }
            guard step != 0 else { throw fail("range() step must not be zero") }
            let r = stride(from: start, to: stop, by: step)
            guard r.underestimatedCount <= 1_000_000 else { throw fail("range() too large") }
            return .array(r.map { .int($0) })
        case "namespace":
            let ns = JinjaNamespace()
            if case .dict(let d)? = args.first { ns.values = d }
            for (k, v) in kwargs { ns.values[k] = v }
            return .namespace(ns)
        case "dict":
            var d = JinjaDict()
            for (k, v) in kwargs { d[k] = v }
            return .dict(d)
        case "strftime_now":
            return .string(strftimeNow(args.first?.text ?? "%Y-%m-%d"))
        default:
            throw fail("'\(name)' is undefined (called as a function)")
        }
    }

    /// Python str/dict methods; nil when `name` is not one.
    private func method(_ base: JinjaValue, _ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue? {
        func arg(_ i: Int, _ key: String) -> JinjaValue? { i < args.count ? args[i] : kwargs.first { $0.0 == key }?.1 }
        switch base {
        case .string(let s):
            switch name {
            case "strip": return .string(pyStrip(s, arg(0, "chars"), left: true, right: true))
            case "lstrip": return .string(pyStrip(s, arg(0, "chars"), left: true, right: false))
            case "rstrip": return .string(pyStrip(s, arg(0, "chars"), left: false, right: true))
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(pyTitle(s))
            case "capitalize": return .string(pyCapitalize(s))
            case "startswith", "endswith":
                let options: [JinjaValue]
                if case .array(let a)? = arg(0, "prefix") { options = a } else { options = arg(0, "prefix").map { [$0] } ?? [] }
                for o in options {
                    guard case .string(let p) = o else { throw fail("\(name)() takes strings") }
                    let ok = name == "startswith" ? s.unicodeScalars.starts(with: p.unicodeScalars)
                                                  : s.unicodeScalars.reversed().starts(with: p.unicodeScalars.reversed())
                    if ok { return .bool(true) }
                }
                return .bool(false)
            case "split":
                var maxSplit = -1
                if case .int(let m)? = arg(1, "maxsplit") { maxSplit = m }
                if case .string(let sep)? = arg(0, "sep") {
                    guard !sep.isEmpty else { throw fail("empty separator") }
                    return .array(pySplit(s, sep, maxSplit).map { .string($0) })
                }
                return .array(pySplitWhitespace(s, maxSplit).map { .string($0) })
            case "replace":
                guard case .string(let old)? = arg(0, "old"), case .string(let new)? = arg(1, "new") else {
                    throw fail("replace() takes two strings")
                }
                return .string(s.replacingAll(old, with: new))
            case "join":
                guard let items = arg(0, "iterable") else { throw fail("join() takes an iterable") }
                return .string(try iterate(items).map(\.text).joined(separator: s))
            case "count":
                guard case .string(let sub)? = arg(0, "sub"), !sub.isEmpty else { throw fail("count() takes a non-empty string") }
                return .int(pySplit(s, sub, -1).count - 1)
            case "find":
                guard case .string(let sub)? = arg(0, "sub") else { throw fail("find() takes a string") }
                let u = Array(s.unicodeScalars), p = Array(sub.unicodeScalars)
                if p.isEmpty { return .int(0) }
                if u.count >= p.count {
                    for i in 0...(u.count - p.count) where Array(u[i..<(i + p.count)]) == p { return .int(i) }
                }
                return .int(-1)
            case "isdigit": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType == .decimal })
            case "isspace": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isWhitespace })
            default: return nil
            }
        case .dict(let d):
            switch name {
            case "items": return .array(d.items.map { .array([.string($0.0), $0.1]) })
            case "keys": return .array(d.keys.map { .string($0) })
            case "values": return .array(d.items.map(\.1))
            case "get":
                guard case .string(let k)? = arg(0, "key") else { return arg(1, "default") ?? JinjaValue.none }
                return d[k] ?? arg(1, "default") ?? JinjaValue.none
            default: return nil
            }
        default:
            return nil
        }
    }

    // MARK: filters and tests

    func applyFilter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        func arg(_ i: Int, _ key: String) -> JinjaValue? { i < args.count ? args[i] : kwargs.first { $0.0 == key }?.1 }
        switch name {
        case "trim": return .string(pyStrip(v.text, arg(0, "chars"), left: true, right: true))
        case "upper": return .string(v.text.uppercased())
        case "lower": return .string(v.text.lowercased())
        case "capitalize": return .string(pyCapitalize(v.text))
        case "title": return .string(pyTitle(v.text))
        case "string": return .string(v.text)
        case "safe": return v
        case "e", "escape": return .string(htmlEscape(v.text))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.unicodeScalars.count)
            case .array(let a): return .int(a.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw fail("object of type '\(v.typeName)' has no len()")
            }
        case "default", "d":
            let boolean = arg(1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return arg(0, "default_value") ?? .string("") }
            return v
        case "first":
            let items = try iterate(v)
            return items.first ?? .undefined("first")
        case "last":
            let items = try iterate(v)
            return items.last ?? .undefined("last")
        case "join":
            var items = try iterate(v)
            if case .string(let attr)? = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                items = try items.map { try member($0, attr, describe: attr) }
            }
            let sep = arg(0, "d")?.text ?? ""
            return .string(items.map(\.text).joined(separator: sep))
        case "replace":
            guard case .string(let old)? = arg(0, "old"), let new = arg(1, "new") else { throw fail("replace needs two strings") }
            return .string(v.text.replacingAll(old, with: new.text))
        case "list": return .array(try iterate(v))
        case "reverse":
            if case .string(let s) = v { return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed()))) }
            return .array(try iterate(v).reversed())
        case "unique":
            var out: [JinjaValue] = []
            for x in try iterate(v) where !out.contains(where: { equal($0, x) }) { out.append(x) }
            return .array(out)
        case "sort":
            let items = try iterate(v)
            let attribute: String? = { if case .string(let a)? = kwargs.first(where: { $0.0 == "attribute" })?.1 { return a } else { return nil } }()
            let keyed = try items.map { item -> (JinjaValue, JinjaValue) in (item, try attribute.map { try member(item, $0, describe: $0) } ?? item) }
            var sortError: Error? = nil
            var sorted = keyed.sorted { l, r in
                do { return try compare("<", l.1, r.1) } catch { sortError = error; return false }
            }
            if let e = sortError { throw e }
            if arg(0, "reverse")?.truthy ?? false { sorted.reverse() }
            return .array(sorted.map(\.0))
        case "int":
            switch v {
            case .int: return v
            case .double(let d): return .int(Int(d))
            case .bool(let b): return .int(b ? 1 : 0)
            case .string(let s): return .int(Int(s.trimmingWhitespace()) ?? Double(s.trimmingWhitespace()).map { Int($0) } ?? 0)
            default: return .int(0)
            }
        case "float":
            switch v {
            case .string(let s): return .double(Double(s.trimmingWhitespace()) ?? 0)
            default: return .double(number(v) ?? 0)
            }
        case "abs":
            switch v {
            case .int(let i): return .int(abs(i))
            case .double(let d): return .double(abs(d))
            default: throw fail("bad operand for abs(): '\(v.typeName)'")
            }
        case "round":
            guard let x = number(v) else { throw fail("round needs a number") }
            var precision = 0
            if case .int(let p)? = arg(0, "precision") { precision = p }
            let scale = Foundation_pow(10, Double(precision))
            return .double((x * scale).rounded(.toNearestOrEven) / scale)
        case "items":
            guard case .dict(let d) = v else { throw fail("items needs a dict, found \(v.typeName)") }
            return .array(d.items.map { .array([.string($0.0), $0.1]) })
        case "tojson":
            var indent: Int? = nil
            if case .int(let i)? = arg(0, "indent") { indent = i }
            return .string(v.json(indent: indent))
        case "selectattr", "rejectattr":
            guard case .string(let attr)? = args.first else { throw fail("\(name) needs an attribute name") }
            let select = name == "selectattr"
            var out: [JinjaValue] = []
            for item in try iterate(v) {
                let value = try member(item, attr, describe: attr)
                let ok: Bool
                if args.count >= 2 {
                    ok = try applyTest(args[1].text, value, Array(args.dropFirst(2)))
                } else {
                    ok = value.truthy
                }
                if ok == select { out.append(item) }
            }
            return .array(out)
        case "select", "reject":
            let select = name == "select"
            var out: [JinjaValue] = []
            for item in try iterate(v) {
                let ok = args.isEmpty ? item.truthy : try applyTest(args[0].text, item, Array(args.dropFirst()))
                if ok == select { out.append(item) }
            }
            return .array(out)
        case "map":
            if case .string(let attr)? = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let d = kwargs.first(where: { $0.0 == "default" })?.1
                return .array(try iterate(v).map { item in
                    let m = try member(item, attr, describe: attr)
                    return m.isUndefined ? (d ?? m) : m
                })
            }
            guard case .string(let filter)? = args.first else { throw fail("map needs a filter name or attribute=") }
            return .array(try iterate(v).map { try applyFilter(filter, $0, Array(args.dropFirst()), []) })
        case "indent":
            var width = 4
            if case .int(let w)? = arg(0, "width") { width = w }
            let first = arg(1, "first")?.truthy ?? false
            let blank = arg(2, "blank")?.truthy ?? false
            let pad = String(repeating: " ", count: max(0, width))
            let lines = v.text.components(separatedByNewline: ())
            var out: [String] = []
            for (i, line) in lines.enumerated() {
                if i == 0 && !first { out.append(line); continue }
                out.append(line.isEmpty && !blank ? line : pad + line)
            }
            return .string(out.joined(separator: "\n"))
        case "min", "max":
            let items = try iterate(v)
            guard var best = items.first else { return .undefined(name) }
            for x in items.dropFirst() where try compare(name == "min" ? "<" : ">", x, best) { best = x }
            return best
        case "sum":
            var total: JinjaValue = .int(0)
            for x in try iterate(v) { total = try binary("+", total, x) }
            return total
        default:
            throw fail("unsupported filter '\(name)'")
        }
    }

    func applyTest(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws -> Bool {
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true } else { return false }
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "string": if case .string = v { return true } else { return false }
        case "number": switch v { case .int, .double: return true; default: return false }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "mapping": switch v { case .dict, .namespace: return true; default: return false }
        case "sequence", "iterable": switch v { case .array, .string, .dict: return true; default: return false }
        case "callable": if case .macro = v { return true } else { return false }
        case "even", "odd":
            guard case .int(let i) = v else { throw fail("\(name) test needs an integer") }
            return (i % 2 == 0) == (name == "even")
        case "divisibleby":
            guard case .int(let i) = v, case .int(let d)? = args.first, d != 0 else { throw fail("divisibleby needs integers") }
            return i % d == 0
        case "eq", "equalto", "==": return equal(v, args.first ?? .none)
        case "ne", "!=": return !equal(v, args.first ?? .none)
        case "lt", "<": return try compare("<", v, args.first ?? .none)
        case "le", "<=": return try compare("<=", v, args.first ?? .none)
        case "gt", ">": return try compare(">", v, args.first ?? .none)
        case "ge", ">=": return try compare(">=", v, args.first ?? .none)
        case "in": return try compare("in", v, args.first ?? .none)
        case "sameas":
            switch (v, args.first) {
            case (JinjaValue.none, JinjaValue.none?), (.undefined, .undefined?): return true
            case (.bool(let a), .bool(let b)?): return a == b
            case (.namespace(let a), .namespace(let b)?): return a === b
            default: return false
            }
        case "lower": return v.text == v.text.lowercased()
        case "upper": return v.text == v.text.uppercased()
        default: throw fail("unsupported test '\(name)'")
        }
    }
}
