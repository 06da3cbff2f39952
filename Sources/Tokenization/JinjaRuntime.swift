// JinjaRuntime: evaluates a parsed template. Scoping as Jinja: a for-loop iteration and a macro
// call open a scope (so `set` inside them does not leak), `if` does not; namespace() objects
// carry values out of loops. What templates can call (globals, methods, filters, tests) is in
// JinjaBuiltins.swift, Python string semantics in JinjaPyStrings.swift.
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
    var scopes: [[String: JinjaValue]]
    var output = ""
    private var steps = 0
    private static let maxSteps = 5_000_000
    private static let maxOutput = 64 << 20

    init(globals: [String: JinjaValue]) { scopes = [globals] }

    func render(_ nodes: [JinjaNode]) throws -> String {
        _ = try exec(nodes)
        return output
    }

    enum Flow { case normal, breakLoop, continueLoop }

    func fail(_ message: String) -> JinjaRenderError { JinjaRenderError(message: message, raised: false) }

    func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined(name)
    }

    private func assign(_ name: String, _ value: JinjaValue) { scopes[scopes.count - 1][name] = value }

    func exec(_ nodes: [JinjaNode]) throws -> Flow {
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

    func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
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

    func eval(_ e: JinjaExpr) throws -> JinjaValue {
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

    func member(_ base: JinjaValue, _ name: String, describe: String) throws -> JinjaValue {
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

    func number(_ v: JinjaValue) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
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

    func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
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

    func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
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
}
