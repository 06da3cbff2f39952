// JinjaParser: the statements and expressions of the Jinja subset chat templates use, parsed into
// a tree that JinjaRuntime evaluates. Operator precedence follows Jinja2's parser.

indirect enum JinjaExpr: Sendable {
    case literal(JinjaValue)
    case name(String)
    case list([JinjaExpr])
    case tuple([JinjaExpr])
    case dict([(JinjaExpr, JinjaExpr)])
    case attribute(JinjaExpr, String)
    case index(JinjaExpr, JinjaExpr)
    case slice(JinjaExpr, JinjaExpr?, JinjaExpr?, JinjaExpr?)
    case call(JinjaExpr, [JinjaExpr], [(String, JinjaExpr)])
    case filter(JinjaExpr, String, [JinjaExpr], [(String, JinjaExpr)])
    case test(JinjaExpr, String, [JinjaExpr], negated: Bool)
    case not(JinjaExpr)
    case negate(JinjaExpr)
    case and(JinjaExpr, JinjaExpr)
    case or(JinjaExpr, JinjaExpr)
    case binary(String, JinjaExpr, JinjaExpr)
    case compare(JinjaExpr, [(String, JinjaExpr)])
    case conditional(then: JinjaExpr, condition: JinjaExpr, otherwise: JinjaExpr?)
}

indirect enum JinjaNode: Sendable {
    case text(String)
    case output(JinjaExpr)
    case ifBlock([(JinjaExpr, [JinjaNode])], otherwise: [JinjaNode])
    case forBlock(targets: [String], iterable: JinjaExpr, filter: JinjaExpr?, body: [JinjaNode], otherwise: [JinjaNode])
    case set(targets: [String], attribute: String?, JinjaExpr)
    case setBlock(String, [JinjaNode])
    case macro(name: String, parameters: [(String, JinjaExpr?)], body: [JinjaNode])
    case evaluate(JinjaExpr)
    case breakLoop
    case continueLoop
}

struct JinjaParser {
    private let chunks: [JinjaChunk]
    private var index = 0

    static func parse(_ source: String) throws -> [JinjaNode] {
        var p = JinjaParser(chunks: try JinjaLexer.chunks(source))
        let (nodes, end) = try p.body(until: [])
        if let (word, line) = end { throw JinjaSyntaxError(line: line, message: "unexpected '\(word)'") }
        return nodes
    }

    private init(chunks: [JinjaChunk]) { self.chunks = chunks }

    /// Parses nodes until a statement whose keyword is in `until`; returns that keyword's
    /// statement tokens in `current` (the caller reads them) or nil at the end of the template.
    private var current: [JinjaToken] = []
    private var currentLine = 0

    private mutating func body(until: Set<String>) throws -> ([JinjaNode], (String, Int)?) {
        var nodes: [JinjaNode] = []
        while index < chunks.count {
            let chunk = chunks[index]
            index += 1
            switch chunk {
            case .text(let t):
                nodes.append(.text(t))
            case .output(let tokens, let line):
                var e = ExprParser(tokens: tokens, line: line)
                let expr = try e.expression()
                try e.expectEnd()
                nodes.append(.output(expr))
            case .statement(let tokens, let line):
                guard case .name(let keyword)? = tokens.first else {
                    throw JinjaSyntaxError(line: line, message: "expected a statement keyword")
                }
                if until.contains(keyword) {
                    current = tokens
                    currentLine = line
                    return (nodes, (keyword, line))
                }
                nodes.append(try statement(keyword, tokens, line))
            }
        }
        if !until.isEmpty {
            throw JinjaSyntaxError(line: currentLine, message: "missing \(until.sorted().filter { $0.hasPrefix("end") }.joined(separator: " or "))")
        }
        return (nodes, nil)
    }

    private mutating func statement(_ keyword: String, _ tokens: [JinjaToken], _ line: Int) throws -> JinjaNode {
        var e = ExprParser(tokens: Array(tokens.dropFirst()), line: line)
        switch keyword {
        case "if":
            var branches: [(JinjaExpr, [JinjaNode])] = []
            var condition = try e.expression()
            try e.expectEnd()
            while true {
                let (nodes, end) = try body(until: ["elif", "else", "endif"])
                branches.append((condition, nodes))
                switch end?.0 {
                case "elif":
                    var c = ExprParser(tokens: Array(current.dropFirst()), line: currentLine)
                    condition = try c.expression()
                    try c.expectEnd()
                case "else":
                    let (otherwise, _) = try body(until: ["endif"])
                    return .ifBlock(branches, otherwise: otherwise)
                default:
                    return .ifBlock(branches, otherwise: [])
                }
            }
        case "for":
            var targets = [try e.name()]
            while e.skip(.op(",")) { targets.append(try e.name()) }
            try e.expect(.name("in"))
            let iterable = try e.expression(allowConditional: false)
            var filter: JinjaExpr? = nil
            if e.skip(.name("if")) { filter = try e.expression(allowConditional: false) }
            _ = e.skip(.name("recursive"))
            try e.expectEnd()
            let (body, end) = try body(until: ["else", "endfor"])
            var otherwise: [JinjaNode] = []
            if end?.0 == "else" { (otherwise, _) = try self.body(until: ["endfor"]) }
            return .forBlock(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
        case "set":
            var targets = [try e.name()]
            var attribute: String? = nil
            if e.skip(.op(".")) {
                attribute = try e.name()
            } else {
                while e.skip(.op(",")) { targets.append(try e.name()) }
            }
            if e.atEnd {
                guard targets.count == 1, attribute == nil else { throw JinjaSyntaxError(line: line, message: "bad block set") }
                let (nodes, _) = try body(until: ["endset"])
                return .setBlock(targets[0], nodes)
            }
            try e.expect(.op("="))
            var value = try e.expression()
            if e.skip(.op(",")) {
                var items = [value]
                repeat { items.append(try e.expression()) } while e.skip(.op(","))
                value = .tuple(items)
            }
            try e.expectEnd()
            return .set(targets: targets, attribute: attribute, value)
        case "macro":
            let name = try e.name()
            try e.expect(.op("("))
            var parameters: [(String, JinjaExpr?)] = []
            if !e.skip(.op(")")) {
                repeat {
                    let p = try e.name()
                    var d: JinjaExpr? = nil
                    if e.skip(.op("=")) { d = try e.expression() }
                    parameters.append((p, d))
                } while e.skip(.op(","))
                try e.expect(.op(")"))
            }
            try e.expectEnd()
            let (nodes, _) = try body(until: ["endmacro"])
            return .macro(name: name, parameters: parameters, body: nodes)
        case "break":
            try e.expectEnd()
            return .breakLoop
        case "continue":
            try e.expectEnd()
            return .continueLoop
        case "do":
            let expr = try e.expression()
            try e.expectEnd()
            return .evaluate(expr)
        case "generation":
            // transformers' AssistantTracker marks assistant text; rendering ignores the marks.
            try e.expectEnd()
            let (nodes, _) = try body(until: ["endgeneration"])
            return .ifBlock([(.literal(.bool(true)), nodes)], otherwise: [])
        default:
            throw JinjaSyntaxError(line: line, message: "unsupported statement '\(keyword)'")
        }
    }
}

/// Recursive descent over the tokens of one tag.
struct ExprParser {
    private let tokens: [JinjaToken]
    private var i = 0
    private let line: Int

    init(tokens: [JinjaToken], line: Int) {
        self.tokens = tokens
        self.line = line
    }

    var atEnd: Bool { i >= tokens.count }

    private func fail(_ message: String) -> JinjaSyntaxError { JinjaSyntaxError(line: line, message: message) }

    private var peek: JinjaToken? { i < tokens.count ? tokens[i] : nil }

    mutating func skip(_ t: JinjaToken) -> Bool {
        if peek == t { i += 1; return true }
        return false
    }

    mutating func expect(_ t: JinjaToken) throws {
        guard skip(t) else { throw fail("expected \(describe(t)), found \(peek.map(describe) ?? "end of tag")") }
    }

    func expectEnd() throws {
        if let t = peek { throw fail("unexpected \(describe(t))") }
    }

    private func describe(_ t: JinjaToken) -> String {
        switch t {
        case .name(let s): return "'\(s)'"
        case .string(let s): return "string '\(s)'"
        case .int(let v): return "\(v)"
        case .float(let v): return "\(v)"
        case .op(let s): return "'\(s)'"
        }
    }

    mutating func name() throws -> String {
        guard case .name(let s)? = peek else { throw fail("expected a name, found \(peek.map(describe) ?? "end of tag")") }
        i += 1
        return s
    }

    mutating func expression(allowConditional: Bool = true) throws -> JinjaExpr {
        var e = try or()
        while allowConditional && skip(.name("if")) {
            let condition = try or()
            var otherwise: JinjaExpr? = nil
            if skip(.name("else")) { otherwise = try expression() }
            e = .conditional(then: e, condition: condition, otherwise: otherwise)
        }
        return e
    }

    private mutating func or() throws -> JinjaExpr {
        var e = try and()
        while skip(.name("or")) { e = .or(e, try and()) }
        return e
    }

    private mutating func and() throws -> JinjaExpr {
        var e = try not()
        while skip(.name("and")) { e = .and(e, try not()) }
        return e
    }

    private mutating func not() throws -> JinjaExpr {
        if skip(.name("not")) { return .not(try not()) }
        return try compare()
    }

    private mutating func compare() throws -> JinjaExpr {
        let first = try math1()
        var rest: [(String, JinjaExpr)] = []
        while true {
            if case .op(let o)? = peek, ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                i += 1
                rest.append((o, try math1()))
            } else if skip(.name("in")) {
                rest.append(("in", try math1()))
            } else if peek == .name("not"), i + 1 < tokens.count, tokens[i + 1] == .name("in") {
                i += 2
                rest.append(("not in", try math1()))
            } else {
                break
            }
        }
        return rest.isEmpty ? first : .compare(first, rest)
    }

    private mutating func math1() throws -> JinjaExpr {
        var e = try concat()
        while case .op(let o)? = peek, o == "+" || o == "-" {
            i += 1
            e = .binary(o, e, try concat())
        }
        return e
    }

    private mutating func concat() throws -> JinjaExpr {
        var e = try math2()
        while skip(.op("~")) { e = .binary("~", e, try math2()) }
        return e
    }

    private mutating func math2() throws -> JinjaExpr {
        var e = try pow()
        while case .op(let o)? = peek, o == "*" || o == "/" || o == "//" || o == "%" {
            i += 1
            e = .binary(o, e, try pow())
        }
        return e
    }

    private mutating func pow() throws -> JinjaExpr {
        var e = try unary(withFilter: true)
        while skip(.op("**")) { e = .binary("**", e, try unary(withFilter: true)) }
        return e
    }

    private mutating func unary(withFilter: Bool) throws -> JinjaExpr {
        var e: JinjaExpr
        if skip(.op("-")) {
            e = .negate(try unary(withFilter: false))
        } else if skip(.op("+")) {
            e = try unary(withFilter: false)
        } else {
            e = try postfix(try primary())
        }
        if withFilter { e = try filters(e) }
        return e
    }

    private mutating func primary() throws -> JinjaExpr {
        guard let t = peek else { throw fail("expected an expression, found end of tag") }
        i += 1
        switch t {
        case .string(var s):
            while case .string(let more)? = peek { s += more; i += 1 }  // adjacent literals concatenate
            return .literal(.string(s))
        case .int(let v): return .literal(.int(v))
        case .float(let v): return .literal(.double(v))
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            if skip(.op(")")) { return .tuple([]) }
            let e = try expression()
            if skip(.op(",")) {
                var items = [e]
                while !skip(.op(")")) {
                    items.append(try expression())
                    if !skip(.op(",")) { try expect(.op(")")); break }
                }
                return .tuple(items)
            }
            try expect(.op(")"))
            return e
        case .op("["):
            var items: [JinjaExpr] = []
            while !skip(.op("]")) {
                items.append(try expression())
                if !skip(.op(",")) { try expect(.op("]")); break }
            }
            return .list(items)
        case .op("{"):
            var items: [(JinjaExpr, JinjaExpr)] = []
            while !skip(.op("}")) {
                let k = try expression()
                try expect(.op(":"))
                items.append((k, try expression()))
                if !skip(.op(",")) { try expect(.op("}")); break }
            }
            return .dict(items)
        default:
            throw fail("unexpected \(describe(t))")
        }
    }

    private mutating func postfix(_ base: JinjaExpr) throws -> JinjaExpr {
        var e = base
        while true {
            if skip(.op(".")) {
                if case .int(let v)? = peek {
                    i += 1
                    e = .index(e, .literal(.int(v)))
                } else {
                    e = .attribute(e, try name())
                }
            } else if skip(.op("[")) {
                var parts: [JinjaExpr?] = [nil]
                var isSlice = false
                while true {
                    if skip(.op("]")) { break }
                    if skip(.op(":")) {
                        isSlice = true
                        parts.append(nil)
                        continue
                    }
                    guard parts[parts.count - 1] == nil else { throw fail("expected ']'") }
                    parts[parts.count - 1] = try expression()
                }
                if isSlice {
                    guard parts.count <= 3 else { throw fail("bad slice") }
                    e = .slice(e, parts[0], parts.count > 1 ? parts[1] : nil, parts.count > 2 ? parts[2] : nil)
                } else {
                    guard let index = parts[0] else { throw fail("empty subscript") }
                    e = .index(e, index)
                }
            } else if peek == .op("(") {
                i += 1
                let (args, kwargs) = try arguments()
                e = .call(e, args, kwargs)
            } else {
                return e
            }
        }
    }

    /// Call arguments after '(' up to and including ')'.
    private mutating func arguments() throws -> ([JinjaExpr], [(String, JinjaExpr)]) {
        var args: [JinjaExpr] = []
        var kwargs: [(String, JinjaExpr)] = []
        while !skip(.op(")")) {
            if case .name(let n)? = peek, i + 1 < tokens.count, tokens[i + 1] == .op("=") {
                i += 2
                kwargs.append((n, try expression()))
            } else {
                args.append(try expression())
            }
            if !skip(.op(",")) { try expect(.op(")")); break }
        }
        return (args, kwargs)
    }

    private mutating func filters(_ base: JinjaExpr) throws -> JinjaExpr {
        var e = base
        while true {
            if skip(.op("|")) {
                var name = try name()
                while skip(.op(".")) { name += "." + (try self.name()) }
                var args: [JinjaExpr] = [], kwargs: [(String, JinjaExpr)] = []
                if skip(.op("(")) { (args, kwargs) = try arguments() }
                e = .filter(e, name, args, kwargs)
            } else if skip(.name("is")) {
                let negated = skip(.name("not"))
                let test = try name()
                var args: [JinjaExpr] = []
                if skip(.op("(")) {
                    (args, _) = try arguments()
                } else if let t = peek, startsPrimary(t) {
                    args = [try postfix(try primary())]
                }
                e = .test(e, test, args, negated: negated)
            } else {
                return e
            }
        }
    }

    private func startsPrimary(_ t: JinjaToken) -> Bool {
        switch t {
        case .string, .int, .float: return true
        case .name(let n): return !["and", "or", "if", "else", "in", "not", "is"].contains(n)
        case .op(let o): return o == "[" || o == "{"
        }
    }
}
