// `petrel bench`'s static grid as data: written as JSON (`--json`), read back (a peer's run, or an
// earlier one, for `--compare`), and drawn as an SVG chart of output tokens/s by batch size, one
// line per input/output pair and run (`--chart`), since people compare engines by looking.
//
// JSON: {"label": "...", "points": [{"batch": 1, "input": 128, "output": 20, "latency_ms": 81.2,
// "tokens_per_s": 246.3, "ttft_ms": 6.1, "peak_kv_blocks": 5, "ceiling_ms": 70.0}, ...]}
// (ceiling_ms only where the bench was given the card's peaks). A peer's figures can be written
// in the same shape by hand or by a script (only batch, input, output and tokens_per_s are needed).
import JSONCore

public struct BenchPoint: Sendable, Equatable {
    public var batch: Int
    public var input: Int
    public var output: Int
    public var latencyMs: Double
    public var tokensPerSecond: Double
    public var ttftMs: Double
    public var peakKVBlocks: Int
    public var ceilingMs: Double?

    public init(batch: Int, input: Int, output: Int, latencyMs: Double, tokensPerSecond: Double, ttftMs: Double,
                peakKVBlocks: Int, ceilingMs: Double? = nil) {
        self.batch = batch
        self.input = input
        self.output = output
        self.latencyMs = latencyMs
        self.tokensPerSecond = tokensPerSecond
        self.ttftMs = ttftMs
        self.peakKVBlocks = peakKVBlocks
        self.ceilingMs = ceilingMs
    }
}

public struct BenchReportError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

public struct BenchReport: Sendable, Equatable {
    public var label: String
    public var points: [BenchPoint]

    public init(label: String, points: [BenchPoint] = []) {
        self.label = label
        self.points = points
    }

    public func json() -> String {
        var w = JSONWriter()
        w.raw("{\"label\": ")
        w.string(label)
        w.raw(", \"points\": [")
        for (i, p) in points.enumerated() {
            if i > 0 { w.raw(", ") }
            w.raw("{\"batch\": ")
            w.int(Int64(p.batch))
            w.raw(", \"input\": ")
            w.int(Int64(p.input))
            w.raw(", \"output\": ")
            w.int(Int64(p.output))
            w.raw(", \"latency_ms\": ")
            w.double(p.latencyMs)
            w.raw(", \"tokens_per_s\": ")
            w.double(p.tokensPerSecond)
            w.raw(", \"ttft_ms\": ")
            w.double(p.ttftMs)
            w.raw(", \"peak_kv_blocks\": ")
            w.int(Int64(p.peakKVBlocks))
            if let c = p.ceilingMs {
                w.raw(", \"ceiling_ms\": ")
                w.double(c)
            }
            w.raw("}")
        }
        w.raw("]}\n")
        return String(decoding: w.bytes, as: UTF8.self)
    }

    /// A report from its JSON; `source` names the file in errors.
    public init(json bytes: [UInt8], source: String) throws {
        let root: JSON
        do { root = try JSONParser.parse(bytes) } catch { throw BenchReportError(description: "\(source): \(error)") }
        guard case .object = root else { throw BenchReportError(description: "\(source): not a JSON object") }
        guard case .string(let label)? = root["label"] else { throw BenchReportError(description: "\(source): \"label\" must be a string") }
        guard case .array(let items)? = root["points"] else { throw BenchReportError(description: "\(source): \"points\" must be an array") }
        var points: [BenchPoint] = []
        for (i, item) in items.enumerated() {
            func number(_ key: String, required: Bool = true) throws -> Double? {
                guard let v = item[key] else {
                    if required { throw BenchReportError(description: "\(source): points[\(i)].\(key) is missing") }
                    return nil
                }
                guard let n = v.number else { throw BenchReportError(description: "\(source): points[\(i)].\(key) must be a number") }
                return n
            }
            func count(_ key: String) throws -> Int {
                let n = try number(key)!
                guard n >= 1, n == n.rounded(), n < 1e9 else {
                    throw BenchReportError(description: "\(source): points[\(i)].\(key) must be a positive integer")
                }
                return Int(n)
            }
            points.append(BenchPoint(batch: try count("batch"), input: try count("input"), output: try count("output"),
                                     latencyMs: try number("latency_ms", required: false) ?? .nan,
                                     tokensPerSecond: try number("tokens_per_s")!,
                                     ttftMs: try number("ttft_ms", required: false) ?? .nan,
                                     peakKVBlocks: Int(try number("peak_kv_blocks", required: false) ?? 0),
                                     ceilingMs: try number("ceiling_ms", required: false)))
        }
        self.init(label: label, points: points)
    }

    /// Output tokens/s by batch size: one line per (report, input/output pair); a pair keeps its
    /// colour across reports and each report its dash pattern, so a peer's line sits beside ours.
    /// Batch sizes are spaced evenly (they usually double).
    public static func chartSVG(_ reports: [BenchReport], title: String) -> String {
        let width = 820.0, height = 500.0, left = 80.0, right = 240.0, top = 50.0, bottom = 60.0
        let plotW = width - left - right, plotH = height - top - bottom
        let batches = Array(Set(reports.flatMap { $0.points.map(\.batch) })).sorted()
        var pairs: [String] = []
        for r in reports {
            for p in r.points where !pairs.contains("\(p.input)/\(p.output)") { pairs.append("\(p.input)/\(p.output)") }
        }
        let top_ = reports.flatMap { $0.points.map(\.tokensPerSecond) }.filter(\.isFinite).max() ?? 1
        let yMax = niceCeiling(top_ > 0 ? top_ * 1.05 : 1)
        func x(_ batch: Int) -> Double {
            let i = Double(batches.firstIndex(of: batch) ?? 0)
            return batches.count > 1 ? left + plotW * i / Double(batches.count - 1) : left + plotW / 2
        }
        func y(_ v: Double) -> Double { top + plotH * (1 - v / yMax) }
        let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
        let dashes = ["", "8 4", "2 3", "10 3 2 3"]
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
        s += "viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(fmt(left))\" y=\"28\" font-size=\"16\">\(escape(title))</text>\n"
        // Axes, grid and ticks.
        for k in 0...5 {
            let v = yMax * Double(k) / 5
            s += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(y(v)))\" x2=\"\(fmt(left + plotW))\" y2=\"\(fmt(y(v)))\" stroke=\"#ddd\"/>\n"
            s += "<text x=\"\(fmt(left - 8))\" y=\"\(fmt(y(v) + 4))\" text-anchor=\"end\">\(Int(v.rounded()))</text>\n"
        }
        for b in batches {
            s += "<text x=\"\(fmt(x(b)))\" y=\"\(fmt(top + plotH + 20))\" text-anchor=\"middle\">\(b)</text>\n"
        }
        s += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(top + plotH))\" x2=\"\(fmt(left + plotW))\" y2=\"\(fmt(top + plotH))\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(top))\" x2=\"\(fmt(left))\" y2=\"\(fmt(top + plotH))\" stroke=\"black\"/>\n"
        s += "<text x=\"\(fmt(left + plotW / 2))\" y=\"\(fmt(height - 15))\" text-anchor=\"middle\">batch size</text>\n"
        s += "<text transform=\"translate(20 \(fmt(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">output tokens/s</text>\n"
        // One line per series, and its legend entry.
        var legendY = top
        for (ri, r) in reports.enumerated() {
            for (pi, pair) in pairs.enumerated() {
                let series = r.points.filter { "\($0.input)/\($0.output)" == pair && $0.tokensPerSecond.isFinite }.sorted { $0.batch < $1.batch }
                if series.isEmpty { continue }
                let colour = colours[pi % colours.count], dash = dashes[ri % dashes.count]
                let dashAttr = dash.isEmpty ? "" : " stroke-dasharray=\"\(dash)\""
                let coords = series.map { "\(fmt(x($0.batch))),\(fmt(y($0.tokensPerSecond)))" }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"\(dashAttr) points=\"\(coords)\"/>\n"
                for p in series {
                    s += "<circle cx=\"\(fmt(x(p.batch)))\" cy=\"\(fmt(y(p.tokensPerSecond)))\" r=\"3\" fill=\"\(colour)\"/>\n"
                }
                let lx = left + plotW + 16
                s += "<line x1=\"\(fmt(lx))\" y1=\"\(fmt(legendY))\" x2=\"\(fmt(lx + 28))\" y2=\"\(fmt(legendY))\" stroke=\"\(colour)\" stroke-width=\"2\"\(dashAttr)/>\n"
                s += "<text x=\"\(fmt(lx + 34))\" y=\"\(fmt(legendY + 4))\">\(escape(r.label)) \(pair)</text>\n"
                legendY += 18
            }
        }
        s += "</svg>\n"
        return s
    }
}

/// 1, 2 or 5 times a power of ten, at least v.
func niceCeiling(_ v: Double) -> Double {
    var step = 1.0
    while step * 10 <= v { step *= 10 }
    while step > v { step /= 10 }
    for m in [1.0, 2.0, 5.0, 10.0] where step * m >= v { return step * m }
    return step * 10
}

private func fmt(_ v: Double) -> String {
    let r = (v * 10).rounded() / 10
    return r == r.rounded() ? String(Int(r)) : String(r)
}

private func escape(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}
