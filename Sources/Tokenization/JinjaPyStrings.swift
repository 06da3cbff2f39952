// JinjaPyStrings: Python's str semantics where chat templates rely on them (strip, split,
// capitalize, title), HTML escaping, and the clock for strftime_now.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

func pySplit(_ s: String, _ sep: String, _ maxSplit: Int) -> [String] {
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

func pySplitWhitespace(_ s: String, _ maxSplit: Int) -> [String] {
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

func pyCapitalize(_ s: String) -> String {
    guard let f = s.unicodeScalars.first else { return s }
    return String(f).uppercased() + String(String.UnicodeScalarView(s.unicodeScalars.dropFirst())).lowercased()
}

func pyTitle(_ s: String) -> String {
    var out = ""
    var previousCased = false
    for c in s.unicodeScalars {
        let cased = c.properties.isCased
        out += previousCased ? String(c).lowercased() : String(c).uppercased()
        previousCased = cased
    }
    return out
}

func htmlEscape(_ s: String) -> String {
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

func Foundation_pow(_ x: Double, _ y: Double) -> Double { pow(x, y) }

func strftimeNow(_ format: String) -> String {
    var t = time(nil)
    var tm = tm()
    localtime_r(&t, &tm)
    var buffer = [Int8](repeating: 0, count: 256)
    let n = strftime(&buffer, buffer.count, format, &tm)
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
