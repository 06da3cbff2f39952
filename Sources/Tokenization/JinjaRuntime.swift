// JinjaRuntime: evaluates a parsed template. Scoping as Jinja: a for-loop iteration and a macro
// call open a scope (so `set` inside them does not leak), `if` does not; namespace() objects
// carry values out of loops.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct JinjaRenderError: Error, CustomStringConvertible {
    let message: String
    /// Raised by the template itself (raise_exception): the input is at fault, not the template.
    let raised: Bool
    var description: String { message }
}

final class JinjaRenderer {
    private var scopes: [[String: JinjaValue]]
    private var output = ""
    private var steps = 0
    private static let maxSteps = 5_000_000
    private static let maxOutput = 64 << 20

    init(globals: [String: JinjaValue]) { scopes = [globals] }

    func render(_ nodes: [JinjaNode]) throws -> String {
        _ = try exec(nodes)
        return output
    }

    private enum Flow { case normal, breakLoop, continueLoop }

    private func fail(_ message: String) -> JinjaRenderError { JinjaRenderError(message: message, raised: false) }

    private func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined(name)
    }

    private func assign(_ name: String, _ value: JinjaValue) { scopes[scopes.count - 1][name] = value }

    private func exec(_ nodes: [JinjaNode]) throws -> Flow {
        for node in nodes {
            steps += 1
            guard steps < Self.maxSteps, output.utf8.count < Self.maxOutput else { throw fail("template runs too long") }
            switch node {
            case .text(let t):
                output += t
            case .output(let e):
                output += try eval(e).text
            case .ifBlock(let branches, let otherwise):
                var taken = false
                for (condition, body) in branches where try eval(condition).truthy {
                    taken = true
                    let f = try exec(body)
                    if f != .normal { return f }
                    break
                }
                if !taken {
                    let f = try exec(otherwise)
                    if f != .normal { return f }
                }
            case .forBlock(let targets, let iterable, let filter, let body, let otherwise):
                let f = try runFor(targets, iterable, filter, body, otherwise)
                if f != .normal { return f }
            case .set(let targets, let attribute, let e):
                let value = try eval(e)
                if let attr = attribute {
                    guard case .namespace(let ns) = lookup(targets[0]) else {
                        throw fail("cannot set '\(attr)' on '\(targets[0])', which is not a namespace")
                    }
                    ns.values[attr] = value
                } else if targets.count == 1 {
                    assign(targets[0], value)
                } else {
                    let items = try iterate(value)
                    guard items.count == targets.count else { throw fail("cannot unpack \(items.count) values into \(targets.count) names") }
                    for (t, v) in zip(targets, items) { assign(t, v) }
                }
            case .setBlock(let name, let body):
                let saved = output
                output = ""
                _ = try exec(body)
                let captured = output
                output = saved
                assign(name, .string(captured))
            case .macro(let name, let parameters, let body):
                assign(name, .macro(JinjaMacro(name: name, parameters: parameters, body: body)))
            case .evaluate(let e):
                _ = try eval(e)
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            }
        }
        return .normal
    }

    private func runFor(_ targets: [String], _ iterable: JinjaExpr, _ filter: JinjaExpr?, _ body: [JinjaNode],
                        _ otherwise: [JinjaNode]) throws -> Flow {
        var items = try iterate(try eval(iterable))
        if let f = filter {
            var kept: [JinjaValue] = []
            for item in items {
                scopes.append([:])
                try bind(targets, item)
                let keep = try eval(f).truthy
                scopes.removeLast()
                if keep { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty { return try exec(otherwise) }
        let n = items.count
        for (i, item) in items.enumerated() {
            var loop = JinjaDict()
            loop["index"] = .int(i + 1)
            loop["index0"] = .int(i)
            loop["revindex"] = .int(n - i)
            loop["revindex0"] = .int(n - i - 1)
            loop["first"] = .bool(i == 0)
            loop["last"] = .bool(i == n - 1)
            loop["length"] = .int(n)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined("loop.previtem")
            loop["nextitem"] = i + 1 < n ? items[i + 1] : .undefined("loop.nextitem")
            scopes.append(["loop": .dict(loop)])
            try bind(targets, item)
            let f = try exec(body)
            scopes.removeLast()
            if f == .breakLoop { break }
        }
        return .normal
    }

    private func bind(_ targets: [String], _ item: JinjaValue) throws {
        if targets.count == 1 {
            assign(targets[0], item)
            return
        }
        let parts = try iterate(item)
        guard parts.count == targets.count else { throw fail("cannot unpack \(parts.count) values into \(targets.count) names") }
        for (t, v) in zip(targets, parts) { assign(t, v) }
    }

    private func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v {
        case .undefined: return []
        case .array(let a): return a
        case .dict(let d): return d.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        case .namespace(let n): return n.values.keys.map { .string($0) }
        default: throw fail("'\(v.typeName)' object is not iterable")
        }
    }

    // MARK: expressions

    private func eval(_ e: JinjaExpr) throws -> JinjaValue {
        switch e {
        case .literal(let v): return v
        case .name(let n): return lookup(n)
        case .list(let items): return .array(try items.map(eval))
        case .tuple(let items): return .array(try items.map(eval))
        case .dict(let pairs):
            var d = JinjaDict()
            for (k, v) in pairs {
                let key = try eval(k)
                guard case .string(let s) = key else { throw fail("dict keys must be strings, found \(key.typeName)") }
                d[s] = try eval(v)
            }
            return .dict(d)
        case .attribute(let base, let name):
            return try member(try eval(base), name, describe: name)
        case .index(let base, let key):
            return try subscriptValue(try eval(base), try eval(key))
        case .slice(let base, let a, let b, let c):
            return try slice(try eval(base), try a.map(eval), try b.map(eval), try c.map(eval))
        case .call(let callee, let args, let kwargs):
            return try call(callee, try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) })
        case .filter(let base, let name, let args, let kwargs):
            return try applyFilter(name, try eval(base), try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) })
        case .test(let base, let name, let args, let negated):
            let r = try applyTest(name, try eval(base), try args.map(eval))
            return .bool(r != negated)
        case .not(let x): return .bool(!(try eval(x).truthy))
        case .negate(let x):
            switch try eval(x) {
            case .int(let v): return .int(-v)
            case .double(let v): return .double(-v)
            case let v: throw fail("bad operand type for unary -: '\(v.typeName)'")
            }
        case .and(let a, let b):
            let l = try eval(a)
            return l.truthy ? try eval(b) : l
        case .or(let a, let b):
            let l = try eval(a)
            return l.truthy ? l : try eval(b)
        case .binary(let op, let a, let b):
            return try binary(op, try eval(a), try eval(b))
        case .compare(let first, let rest):
            var left = try eval(first)
            for (op, expr) in rest {
                let right = try eval(expr)
                guard try compare(op, left, right) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let then, let condition, let otherwise):
            if try eval(condition).truthy { return try eval(then) }
            return try otherwise.map(eval) ?? .undefined("conditional")
        }
    }

    private func member(_ base: JinjaValue, _ name: String, describe: String) throws -> JinjaValue {
        switch base {
        case .dict(let d): return d[name] ?? .undefined(describe)
        case .namespace(let n): return n.values[name] ?? .undefined(describe)
        case .undefined(let n): throw fail("'\(n)' is undefined (reading '\(name)')")
        default: return .undefined(describe)
        }
    }

    private func subscriptValue(_ base: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch (base, key) {
        case (.dict, .string(let k)), (.namespace, .string(let k)): return try member(base, k, describe: k)
        case (.array(let a), .int(let i)):
            let j = i < 0 ? a.count + i : i
            return j >= 0 && j < a.count ? a[j] : .undefined("index \(i)")
        case (.string(let s), .int(let i)):
            let u = Array(s.unicodeScalars)
            let j = i < 0 ? u.count + i : i
            return j >= 0 && j < u.count ? .string(String(u[j])) : .undefined("index \(i)")
        case (.undefined(let n), _): throw fail("'\(n)' is undefined (indexing with \(key.repr))")
        default: return .undefined("\(key.repr)")
        }
    }

    private func slice(_ base: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?) throws -> JinjaValue {
        func int(_ v: JinjaValue?) throws -> Int? {
            switch v {
            case nil, .none?: return nil
            case .int(let i)?: return i
            case let x?: throw fail("slice indices must be integers, found \(x.typeName)")
            }
        }
        let step = try int(c) ?? 1
        guard step != 0 else { throw fail("slice step cannot be zero") }
        func indices(_ count: Int) throws -> [Int] {
            func clamp(_ v: Int?, _ d: Int) -> Int {
                guard var i = v else { return d }
                if i < 0 { i += count }
                return step > 0 ? min(max(i, 0), count) : min(max(i, -1), count - 1)
            }
            let start = clamp(try int(a), step > 0 ? 0 : count - 1)
            let stop = clamp(try int(b), step > 0 ? count : -1)
            return Array(stride(from: start, to: stop, by: step))
        }
        switch base {
        case .array(let arr): return .array(try indices(arr.count).map { arr[$0] })
        case .string(let s):
            let u = Array(s.unicodeScalars)
            var v = String.UnicodeScalarView()
            for i in try indices(u.count) { v.append(u[i]) }
            return .string(String(v))
        default: throw fail("'\(base.typeName)' object cannot be sliced")
        }
    }

    // MARK: operators

    private func number(_ v: JinjaValue) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    private func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        if op == "~" { return .string(a.text + b.text) }
        if case .undefined(let n) = a { throw fail("'\(n)' is undefined (in '\(op)')") }
        if case .undefined(let n) = b { throw fail("'\(n)' is undefined (in '\(op)')") }
        switch (op, a, b) {
        case ("+", .string(let x), .string(let y)): return .string(x + y)
        case ("+", .array(let x), .array(let y)): return .array(x + y)
        case ("*", .string(let s), .int(let n)), ("*", .int(let n), .string(let s)):
            return .string(String(repeating: s, count: max(0, min(n, 1 << 20))))
        case ("*", .array(let s), .int(let n)), ("*", .int(let n), .array(let s)):
            return .array(Array([[JinjaValue]](repeating: s, count: max(0, min(n, 1 << 16))).joined()))
        default: break
        }
        if case .int(let x) = a, case .int(let y) = b {
            switch op {
            case "+": return .int(x &+ y)
            case "-": return .int(x &- y)
            case "*": return .int(x &* y)
            case "//", "%":
                guard y != 0 else { throw fail("integer division or modulo by zero") }
                var q = x / y
                if (x % y != 0) && ((x < 0) != (y < 0)) { q -= 1 }
                return op == "//" ? .int(q) : .int(x - q * y)
            default: break
            }
        }
        guard let x = number(a), let y = number(b) else {
            throw fail("unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'")
        }
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/":
            guard y != 0 else { throw fail("division by zero") }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw fail("division by zero") }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw fail("modulo by zero") }
            return .double(x - y * (x / y).rounded(.down))
        case "**":
            if case .int(let i) = a, case .int(let j) = b, j >= 0 {
                var r = 1
                for _ in 0..<min(j, 64) { r = r &* i }
                return .int(r)
            }
            return .double(Foundation_pow(x, y))
        default: throw fail("unknown operator \(op)")
        }
    }

    private func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && x.items.allSatisfy { k, v in y[k].map { equal(v, $0) } ?? false }
        case (.namespace(let x), .namespace(let y)): return x === y
        default:
            if let x = number(a), let y = number(b) { return x == y }
            return false
        }
    }

    private func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        switch op {
        case "==": return equal(a, b)
        case "!=": return !equal(a, b)
        case "in", "not in":
            let found: Bool
            switch b {
            case .string(let s):
                guard case .string(let x) = a else { throw fail("'in <string>' requires a string, found \(a.typeName)") }
                found = x.isEmpty || s.contains(x)
            case .array(let arr): found = arr.contains { equal($0, a) }
            case .dict(let d):
                if case .string(let k) = a { found = d[k] != nil } else { found = false }
            case .undefined: found = false
            default: throw fail("argument of type '\(b.typeName)' is not iterable")
            }
            return op == "in" ? found : !found
        default:
            let order: Int
            if let x = number(a), let y = number(b) {
                order = x < y ? -1 : (x > y ? 1 : 0)
            } else if case .string(let x) = a, case .string(let y) = b {
                order = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : (x.unicodeScalars.elementsEqual(y.unicodeScalars) ? 0 : 1)
            } else {
                throw fail("'\(op)' not supported between '\(a.typeName)' and '\(b.typeName)'")
            }
            switch op {
            case "<": return order < 0
            case "<=": return order <= 0
            case ">": return order > 0
            default: return order >= 0
            }
        }
    }

    // MARK: calls

    private func call(_ callee: JinjaExpr, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
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

    private func applyFilter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
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

    private func applyTest(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws -> Bool {
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

// MARK: Python string helpers

private func isPyWhitespace(_ c: Unicode.Scalar) -> Bool {
    c.properties.isWhitespace || (c.value >= 0x1C && c.value <= 0x1F)
}

func pyStrip(_ s: String, _ chars: JinjaValue?, left: Bool, right: Bool) -> String {
    let u = Array(s.unicodeScalars)
    let strip: (Unicode.Scalar) -> Bool
    if case .string(let set)? = chars {
        let members = Set(set.unicodeScalars)
        strip = { members.contains($0) }
    } else {
        strip = isPyWhitespace
    }
    var a = 0, b = u.count
    if left { while a < b && strip(u[a]) { a += 1 } }
    if right { while b > a && strip(u[b - 1]) { b -= 1 } }
    return String(String.UnicodeScalarView(u[a..<b]))
}

private func pySplit(_ s: String, _ sep: String, _ maxSplit: Int) -> [String] {
    let u = Array(s.unicodeScalars), p = Array(sep.unicodeScalars)
    var out: [String] = []
    var start = 0, i = 0
    while i + p.count <= u.count && (maxSplit < 0 || out.count < maxSplit) {
        if Array(u[i..<(i + p.count)]) == p {
            out.append(String(String.UnicodeScalarView(u[start..<i])))
            i += p.count
            start = i
        } else {
            i += 1
        }
    }
    out.append(String(String.UnicodeScalarView(u[start...])))
    return out
}

private func pySplitWhitespace(_ s: String, _ maxSplit: Int) -> [String] {
    let u = Array(s.unicodeScalars)
    var out: [String] = []
    var i = 0
    while i < u.count {
        while i < u.count && isPyWhitespace(u[i]) { i += 1 }
        if i >= u.count { break }
        if maxSplit >= 0 && out.count == maxSplit {
            var end = u.count
            while end > i && isPyWhitespace(u[end - 1]) { end -= 1 }
            out.append(String(String.UnicodeScalarView(u[i..<end])))
            break
        }
        let start = i
        while i < u.count && !isPyWhitespace(u[i]) { i += 1 }
        out.append(String(String.UnicodeScalarView(u[start..<i])))
    }
    return out
}

private func pyCapitalize(_ s: String) -> String {
    guard let f = s.unicodeScalars.first else { return s }
    return String(f).uppercased() + String(String.UnicodeScalarView(s.unicodeScalars.dropFirst())).lowercased()
}

private func pyTitle(_ s: String) -> String {
    var out = ""
    var previousCased = false
    for c in s.unicodeScalars {
        let cased = c.properties.isCased
        out += previousCased ? String(c).lowercased() : String(c).uppercased()
        previousCased = cased
    }
    return out
}

private func htmlEscape(_ s: String) -> String {
    var out = ""
    for c in s.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&#34;"
        case "'": out += "&#39;"
        default: out.unicodeScalars.append(c)
        }
    }
    return out
}

extension String {
    func trimmingWhitespace() -> String { pyStrip(self, nil, left: true, right: true) }

    func components(separatedByNewline: ()) -> [String] {
        var out: [String] = []
        var current = String.UnicodeScalarView()
        for c in unicodeScalars {
            if c == "\n" { out.append(String(current)); current = .init() } else { current.append(c) }
        }
        out.append(String(current))
        return out
    }
}

private func Foundation_pow(_ x: Double, _ y: Double) -> Double { pow(x, y) }

private func strftimeNow(_ format: String) -> String {
    var t = time(nil)
    var tm = tm()
    localtime_r(&t, &tm)
    var buffer = [Int8](repeating: 0, count: 256)
    let n = strftime(&buffer, buffer.count, format, &tm)
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
