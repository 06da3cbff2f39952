// JinjaLexer: splits a Jinja template into text, {{ output }} and {% statement %} chunks, applying
// whitespace control as transformers renders chat templates: `-` trims, trim_blocks drops the
// newline after a block or comment tag, lstrip_blocks drops the indentation before one (`+` keeps it).

enum JinjaToken: Equatable, Sendable {
    case name(String)
    case string(String)
    case int(Int)
    case float(Double)
    case op(String)
}

enum JinjaChunk: Sendable {
    case text(String)
    case output([JinjaToken], line: Int)
    case statement([JinjaToken], line: Int)
}

struct JinjaSyntaxError: Error, CustomStringConvertible {
    let line: Int
    let message: String
    var description: String { "line \(line): \(message)" }
}

enum JinjaLexer {
    static func chunks(_ source: String) throws -> [JinjaChunk] {
        let s = Array(source.unicodeScalars)
        let n = s.count
        var out: [JinjaChunk] = []
        var pos = 0
        var line = 1
        var trimNextText = false      // the previous tag ended with `-`
        var dropNextNewline = false   // trim_blocks after the previous block/comment tag

        func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }

        func emitText(_ start: Int, _ end: Int, tagKind: Unicode.Scalar?, tagTrimsLeft: Bool, tagKeepsIndent: Bool) {
            var a = start, b = end
            if trimNextText {
                while a < b && isSpace(s[a]) { a += 1 }
            } else if dropNextNewline {
                if a < b && s[a] == "\n" { a += 1 } else if a + 1 < b && s[a] == "\r" && s[a + 1] == "\n" { a += 2 }
            }
            if tagTrimsLeft {
                while b > a && isSpace(s[b - 1]) { b -= 1 }
            } else if let k = tagKind, k != "{", !tagKeepsIndent {
                // lstrip_blocks: only spaces and tabs between the line start and the tag.
                var c = b
                while c > start && (s[c - 1] == " " || s[c - 1] == "\t") { c -= 1 }
                if c == 0 || (c > 0 && s[c - 1] == "\n") { b = max(a, c) }
            }
            if b > a { out.append(.text(String(String.UnicodeScalarView(s[a..<b])))) }
            trimNextText = false
            dropNextNewline = false
        }

        while pos < n {
            // Find the next tag opener.
            var k = pos
            while k + 1 < n && !(s[k] == "{" && (s[k + 1] == "{" || s[k + 1] == "%" || s[k + 1] == "#")) { k += 1 }
            if k + 1 >= n {
                emitText(pos, n, tagKind: nil, tagTrimsLeft: false, tagKeepsIndent: false)
                break
            }
            for c in s[pos..<k] where c == "\n" { line += 1 }
            let kind = s[k + 1]
            var p = k + 2
            let trimsLeft = p < n && s[p] == "-"
            let keepsIndent = p < n && s[p] == "+"
            if trimsLeft || keepsIndent { p += 1 }
            emitText(pos, k, tagKind: kind, tagTrimsLeft: trimsLeft, tagKeepsIndent: keepsIndent)
            let tagLine = line
            if kind == "#" {
                // Comment: up to `#}`.
                var e = p
                while e + 1 < n && !(s[e] == "#" && s[e + 1] == "}") { e += 1 }
                guard e + 1 < n else { throw JinjaSyntaxError(line: tagLine, message: "unclosed comment") }
                for c in s[p..<e] where c == "\n" { line += 1 }
                trimNextText = e > p && s[e - 1] == "-"
                dropNextNewline = !trimNextText && !(e > p && s[e - 1] == "+")
                pos = e + 2
                continue
            }
            let closer: Unicode.Scalar = kind == "{" ? "}" : "%"
            var tokens: [JinjaToken] = []
            var closed = false
            while p < n {
                let c = s[p]
                if c == "\n" { line += 1 }
                if isSpace(c) { p += 1; continue }
                // Closing delimiter, with an optional - or + before it.
                if (c == "-" || c == "+") && p + 2 < n && s[p + 1] == closer && s[p + 2] == "}" {
                    trimNextText = c == "-"
                    dropNextNewline = false
                    p += 3
                    closed = true
                    break
                }
                if c == closer && p + 1 < n && s[p + 1] == "}" {
                    dropNextNewline = kind == "%"
                    p += 2
                    closed = true
                    break
                }
                tokens.append(try lexToken(s, &p, line))
            }
            guard closed else { throw JinjaSyntaxError(line: tagLine, message: kind == "{" ? "unclosed '{{'" : "unclosed '{%'") }
            out.append(kind == "{" ? .output(tokens, line: tagLine) : .statement(tokens, line: tagLine))
            pos = p
        }
        return out
    }

    private static let twoCharOps: Set<String> = ["==", "!=", "<=", ">=", "//", "**"]
    private static let oneCharOps: Set<Unicode.Scalar> = ["+", "-", "*", "/", "%", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "="]

    private static func lexToken(_ s: [Unicode.Scalar], _ p: inout Int, _ line: Int) throws -> JinjaToken {
        let n = s.count
        let c = s[p]
        if c == "'" || c == "\"" {
            var out = String.UnicodeScalarView()
            var i = p + 1
            while i < n && s[i] != c {
                if s[i] == "\\" && i + 1 < n {
                    i += 1
                    switch s[i] {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "r": out.append("\r")
                    case "\\": out.append("\\")
                    case "'": out.append("'")
                    case "\"": out.append("\"")
                    default:
                        out.append("\\")
                        out.append(s[i])
                    }
                } else {
                    out.append(s[i])
                }
                i += 1
            }
            guard i < n else { throw JinjaSyntaxError(line: line, message: "unterminated string") }
            p = i + 1
            return .string(String(out))
        }
        if c.properties.isAlphabetic || c == "_" {
            var i = p
            while i < n && (s[i].properties.isAlphabetic || s[i] == "_" || ("0"..."9").contains(s[i])) { i += 1 }
            let name = String(String.UnicodeScalarView(s[p..<i]))
            p = i
            return .name(name)
        }
        if ("0"..."9").contains(c) {
            var i = p
            while i < n && (("0"..."9").contains(s[i]) || s[i] == "_") { i += 1 }
            var isFloat = false
            if i + 1 < n && s[i] == "." && ("0"..."9").contains(s[i + 1]) {
                isFloat = true
                i += 1
                while i < n && ("0"..."9").contains(s[i]) { i += 1 }
            }
            if i < n && (s[i] == "e" || s[i] == "E") {
                var j = i + 1
                if j < n && (s[j] == "+" || s[j] == "-") { j += 1 }
                if j < n && ("0"..."9").contains(s[j]) {
                    isFloat = true
                    i = j
                    while i < n && ("0"..."9").contains(s[i]) { i += 1 }
                }
            }
            let text = String(String.UnicodeScalarView(s[p..<i])).replacingAll("_", with: "")
            p = i
            if isFloat {
                guard let d = Double(text) else { throw JinjaSyntaxError(line: line, message: "bad number \(text)") }
                return .float(d)
            }
            guard let v = Int(text) else { throw JinjaSyntaxError(line: line, message: "number \(text) too large") }
            return .int(v)
        }
        if p + 1 < n {
            let two = String(String.UnicodeScalarView([c, s[p + 1]]))
            if twoCharOps.contains(two) {
                p += 2
                return .op(two)
            }
        }
        if oneCharOps.contains(c) {
            p += 1
            return .op(String(c))
        }
        throw JinjaSyntaxError(line: line, message: "unexpected character '\(c)'")
    }
}
