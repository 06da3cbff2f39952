// A strict little reader of the Prometheus text format, so tests check what a scraper would
// see: every sample belongs to a declared family, labels unescape, histograms are consistent.

struct Sample: Equatable {
    var name: String
    var labels: [String: String]
    var value: Double
}

struct ParsedFamily {
    var help = ""
    var type = ""
    var samples: [Sample] = []
}

struct ExpositionError: Error, CustomStringConvertible {
    let line: Int
    let message: String
    var description: String { "line \(line): \(message)" }
}

func parseExposition(_ text: String) throws -> [String: ParsedFamily] {
    var families: [String: ParsedFamily] = [:]
    var order: [String] = []
    guard text.isEmpty || text.hasSuffix("\n") else { throw ExpositionError(line: 0, message: "no final newline") }
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
        let lineNumber = n + 1
        if line.hasPrefix("# HELP ") {
            let rest = line.dropFirst(7)
            guard let space = rest.firstIndex(of: " ") else { throw ExpositionError(line: lineNumber, message: "HELP without text") }
            let name = String(rest[..<space])
            families[name, default: ParsedFamily()].help = unescapeHelp(String(rest[rest.index(after: space)...]))
            if !order.contains(name) { order.append(name) }
            continue
        }
        if line.hasPrefix("# TYPE ") {
            let parts = line.dropFirst(7).split(separator: " ")
            guard parts.count == 2, ["counter", "gauge", "histogram", "summary", "untyped"].contains(String(parts[1])) else {
                throw ExpositionError(line: lineNumber, message: "bad TYPE line")
            }
            let name = String(parts[0])
            guard families[name]?.samples.isEmpty ?? true else {
                throw ExpositionError(line: lineNumber, message: "TYPE after samples of \(name)")
            }
            families[name, default: ParsedFamily()].type = String(parts[1])
            if !order.contains(name) { order.append(name) }
            continue
        }
        if line.hasPrefix("#") || line.isEmpty { throw ExpositionError(line: lineNumber, message: "unexpected line '\(line)'") }
        let sample = try parseSample(line, lineNumber)
        var family = sample.name
        if families[family] == nil {
            for suffix in ["_bucket", "_sum", "_count"] where sample.name.hasSuffix(suffix) {
                let base = String(sample.name.dropLast(suffix.count))
                if families[base]?.type == "histogram" { family = base }
            }
        }
        guard families[family]?.type.isEmpty == false else {
            throw ExpositionError(line: lineNumber, message: "sample \(sample.name) of an undeclared family")
        }
        families[family]!.samples.append(sample)
    }
    for (name, f) in families where f.type == "histogram" { try checkHistogram(name, f) }
    return families
}

private func parseSample(_ line: Substring, _ n: Int) throws -> Sample {
    var i = line.startIndex
    while i < line.endIndex, line[i] != "{", line[i] != " " { i = line.index(after: i) }
    let name = String(line[..<i])
    guard !name.isEmpty else { throw ExpositionError(line: n, message: "no metric name") }
    var labels: [String: String] = [:]
    if i < line.endIndex, line[i] == "{" {
        i = line.index(after: i)
        while line[i] != "}" {
            let eq = line[i...].firstIndex(of: "=")!
            let key = String(line[i..<eq])
            i = line.index(after: eq)
            guard line[i] == "\"" else { throw ExpositionError(line: n, message: "label value not quoted") }
            i = line.index(after: i)
            var value = ""
            while line[i] != "\"" {
                if line[i] == "\\" {
                    i = line.index(after: i)
                    switch line[i] {
                    case "n": value.append("\n")
                    case "\\": value.append("\\")
                    case "\"": value.append("\"")
                    default: throw ExpositionError(line: n, message: "bad escape")
                    }
                } else {
                    value.append(line[i])
                }
                i = line.index(after: i)
            }
            i = line.index(after: i)
            guard labels.updateValue(value, forKey: key) == nil else { throw ExpositionError(line: n, message: "duplicate label \(key)") }
            if line[i] == "," { i = line.index(after: i) }
        }
        i = line.index(after: i)
    }
    guard i < line.endIndex, line[i] == " " else { throw ExpositionError(line: n, message: "no value") }
    let text = line[line.index(after: i)...]
    let value: Double
    switch text {
    case "+Inf": value = .infinity
    case "-Inf": value = -.infinity
    case "NaN": value = .nan
    default:
        guard let v = Double(text) else { throw ExpositionError(line: n, message: "bad value '\(text)'") }
        value = v
    }
    return Sample(name: name, labels: labels, value: value)
}

private func unescapeHelp(_ s: String) -> String {
    var out = ""
    var escaped = false
    for c in s {
        if escaped { out.append(c == "n" ? "\n" : c); escaped = false } else if c == "\\" { escaped = true } else { out.append(c) }
    }
    return out
}

/// Buckets ascend in `le`, counts are cumulative, `+Inf` equals `_count`.
private func checkHistogram(_ name: String, _ f: ParsedFamily) throws {
    var series: [[String: String]: [Sample]] = [:]
    for s in f.samples {
        var key = s.labels
        key["le"] = nil
        series[key, default: []].append(s)
    }
    for (labels, samples) in series {
        let buckets = samples.filter { $0.name == name + "_bucket" }
        guard let count = samples.first(where: { $0.name == name + "_count" }),
              samples.contains(where: { $0.name == name + "_sum" }),
              let last = buckets.last, last.labels["le"] == "+Inf", last.value == count.value else {
            throw ExpositionError(line: 0, message: "histogram \(name)\(labels) incomplete")
        }
        var previous: (le: Double, count: Double) = (-.infinity, 0)
        for b in buckets {
            guard let le = b.labels["le"].flatMap({ $0 == "+Inf" ? Double.infinity : Double($0) }),
                  le > previous.le, b.value >= previous.count else {
                throw ExpositionError(line: 0, message: "histogram \(name)\(labels) buckets not cumulative")
            }
            previous = (le, b.value)
        }
    }
}
