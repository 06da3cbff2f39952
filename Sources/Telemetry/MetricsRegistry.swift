// MetricsRegistry: counters, gauges and histograms with labels, rendered in the Prometheus text
// exposition format (version 0.0.4), the format Triton serves on port 8002. No dependencies:
// families and series keep the order they were first registered in, so output is stable.
import Synchronization

/// Label names and values of one series, in the order given.
public struct Labels: Hashable, Sendable, ExpressibleByDictionaryLiteral {
    public private(set) var names: [String]
    public private(set) var values: [String]

    public init(_ pairs: [(String, String)]) {
        names = pairs.map(\.0)
        values = pairs.map(\.1)
        for n in names { precondition(isValidLabelName(n), "invalid Prometheus label name '\(n)'") }
    }

    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    public var isEmpty: Bool { names.isEmpty }

    func appending(_ name: String, _ value: String) -> Labels {
        var l = self
        l.names.append(name)
        l.values.append(value)
        return l
    }
}

/// Bucket counts of a histogram, for sources that keep their own (snapshot style).
public struct HistogramSnapshot: Sendable, Equatable {
    /// Upper bounds, ascending, without +Inf.
    public var upperBounds: [Double]
    /// Observations per bucket, not cumulative: one per upper bound, then one for +Inf.
    public var bucketCounts: [UInt64]
    public var sum: Double
    public var count: UInt64 { bucketCounts.reduce(0, +) }

    public init(upperBounds: [Double], bucketCounts: [UInt64], sum: Double) {
        precondition(bucketCounts.count == upperBounds.count + 1, "one count per bound plus one for +Inf")
        self.upperBounds = upperBounds
        self.bucketCounts = bucketCounts
        self.sum = sum
    }

    /// From cumulative counts (observations <= each bound) and the total, as most
    /// histogram keepers store them.
    public init(upperBounds: [Double], cumulativeCounts: [UInt64], count: UInt64, sum: Double) {
        precondition(cumulativeCounts.count == upperBounds.count, "one cumulative count per bound")
        var counts: [UInt64] = []
        var previous: UInt64 = 0
        for c in cumulativeCounts + [max(count, cumulativeCounts.last ?? 0)] {
            counts.append(c - min(previous, c))
            previous = c
        }
        self.init(upperBounds: upperBounds, bucketCounts: counts, sum: sum)
    }

    /// An empty histogram with these bounds.
    public init(upperBounds: [Double]) {
        self.init(upperBounds: upperBounds, bucketCounts: Array(repeating: 0, count: upperBounds.count + 1), sum: 0)
    }

    public mutating func observe(_ value: Double) {
        var k = 0
        while k < upperBounds.count && value > upperBounds[k] { k += 1 }
        bucketCounts[k] += 1
        sum += value
    }
}

public final class MetricsRegistry: Sendable {
    enum Kind: String { case counter, gauge, histogram }

    struct Family {
        let name: String
        let help: String
        let kind: Kind
        let upperBounds: [Double]
        var order: [Labels] = []
        var scalars: [Labels: Double] = [:]
        var histograms: [Labels: HistogramSnapshot] = [:]
    }

    private struct State {
        var families: [Family] = []
        var index: [String: Int] = [:]
    }
    private let state = Mutex(State())

    public init() {}

    /// A counter family; registering an existing name again returns the same family.
    public func counter(_ name: String, help: String) -> Counter {
        Counter(registry: self, family: family(name, help, .counter, []))
    }

    public func gauge(_ name: String, help: String) -> Gauge {
        Gauge(registry: self, family: family(name, help, .gauge, []))
    }

    /// `buckets`: upper bounds, ascending; +Inf is implied.
    public func histogram(_ name: String, help: String, buckets: [Double]) -> Histogram {
        precondition(zip(buckets, buckets.dropFirst()).allSatisfy { $0 < $1 }, "histogram buckets must ascend")
        return Histogram(registry: self, family: family(name, help, .histogram, buckets.filter { $0 != .infinity }))
    }

    private func family(_ name: String, _ help: String, _ kind: Kind, _ bounds: [Double]) -> Int {
        precondition(isValidMetricName(name), "invalid Prometheus metric name '\(name)'")
        return state.withLock { s in
            if let i = s.index[name] {
                precondition(s.families[i].kind == kind, "metric '\(name)' registered as \(s.families[i].kind) and \(kind)")
                return i
            }
            s.families.append(Family(name: name, help: help, kind: kind, upperBounds: bounds))
            s.index[name] = s.families.count - 1
            return s.families.count - 1
        }
    }

    func update(_ family: Int, _ labels: Labels, _ change: (inout Double) -> Void) {
        state.withLock { s in
            if s.families[family].scalars[labels] == nil {
                s.families[family].order.append(labels)
                s.families[family].scalars[labels] = 0
            }
            change(&s.families[family].scalars[labels]!)
        }
    }

    func updateHistogram(_ family: Int, _ labels: Labels, _ change: (inout HistogramSnapshot) -> Void) {
        state.withLock { s in
            if s.families[family].histograms[labels] == nil {
                s.families[family].order.append(labels)
                s.families[family].histograms[labels] = HistogramSnapshot(upperBounds: s.families[family].upperBounds)
            }
            change(&s.families[family].histograms[labels]!)
        }
    }

    /// The text exposition of every family that has at least one series.
    public func render() -> String {
        let families = state.withLock { $0.families }
        var out = ""
        for f in families where !f.order.isEmpty {
            out += "# HELP \(f.name) \(escapeHelp(f.help))\n"
            out += "# TYPE \(f.name) \(f.kind.rawValue)\n"
            for labels in f.order {
                if f.kind == .histogram {
                    let h = f.histograms[labels]!
                    var cumulative: UInt64 = 0
                    for (k, bound) in h.upperBounds.enumerated() {
                        cumulative += h.bucketCounts[k]
                        out += "\(f.name)_bucket\(renderLabels(labels.appending("le", formatValue(bound)))) \(cumulative)\n"
                    }
                    cumulative += h.bucketCounts[h.upperBounds.count]
                    out += "\(f.name)_bucket\(renderLabels(labels.appending("le", "+Inf"))) \(cumulative)\n"
                    out += "\(f.name)_sum\(renderLabels(labels)) \(formatValue(h.sum))\n"
                    out += "\(f.name)_count\(renderLabels(labels)) \(cumulative)\n"
                } else {
                    out += "\(f.name)\(renderLabels(labels)) \(formatValue(f.scalars[labels]!))\n"
                }
            }
        }
        return out
    }
}

/// A counter family: monotonically increasing totals per label set.
public struct Counter: Sendable {
    let registry: MetricsRegistry
    let family: Int

    public func inc(_ labels: Labels = [:], by amount: Double = 1) {
        precondition(amount >= 0, "counters only go up")
        registry.update(family, labels) { $0 += amount }
    }

    /// Sets the total, for sources that keep their own counts.
    public func set(_ labels: Labels, _ total: Double) {
        registry.update(family, labels) { $0 = total }
    }

    public func set(_ total: Double) { set([:], total) }
}

public struct Gauge: Sendable {
    let registry: MetricsRegistry
    let family: Int

    public func set(_ labels: Labels, _ value: Double) { registry.update(family, labels) { $0 = value } }
    public func set(_ value: Double) { set([:], value) }
    public func inc(_ labels: Labels = [:], by amount: Double = 1) { registry.update(family, labels) { $0 += amount } }
    public func dec(_ labels: Labels = [:], by amount: Double = 1) { registry.update(family, labels) { $0 -= amount } }
}

public struct Histogram: Sendable {
    let registry: MetricsRegistry
    let family: Int

    public func observe(_ labels: Labels, _ value: Double) {
        registry.updateHistogram(family, labels) { $0.observe(value) }
    }

    public func observe(_ value: Double) { observe([:], value) }

    /// Replaces the series with a snapshot; its bounds must be the family's.
    public func set(_ labels: Labels, _ snapshot: HistogramSnapshot) {
        registry.updateHistogram(family, labels) { h in
            precondition(h.upperBounds == snapshot.upperBounds, "histogram snapshot bounds differ from the family's")
            h = snapshot
        }
    }
}

/// Something that writes its current figures into a registry at scrape time.
public protocol MetricsSource: Sendable {
    func collect(into registry: MetricsRegistry)
}

/// A source from a closure.
public struct MetricsClosureSource: MetricsSource {
    let body: @Sendable (MetricsRegistry) -> Void
    public init(_ body: @escaping @Sendable (MetricsRegistry) -> Void) { self.body = body }
    public func collect(into registry: MetricsRegistry) { body(registry) }
}

/// Renders a fresh registry per scrape from its sources, so series of models that went away
/// disappear with them (as Triton drops an unloaded model's metrics).
public final class MetricsExporter: Sendable {
    let sources: [any MetricsSource]
    public init(sources: [any MetricsSource]) { self.sources = sources }

    public func render() -> String {
        let registry = MetricsRegistry()
        for s in sources { s.collect(into: registry) }
        return registry.render()
    }
}

// MARK: - Text format details

/// Integral values without a fraction ("42"), others in shortest round-trip form, and
/// Prometheus's spellings of the special values.
func formatValue(_ v: Double) -> String {
    if v.isNaN { return "NaN" }
    if v == .infinity { return "+Inf" }
    if v == -.infinity { return "-Inf" }
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    return v.description
}

func escapeHelp(_ s: String) -> String {
    var out = ""
    for c in s.unicodeScalars {
        switch c {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default: out.unicodeScalars.append(c)
        }
    }
    return out
}

func escapeLabelValue(_ s: String) -> String {
    var out = ""
    for c in s.unicodeScalars {
        switch c {
        case "\\": out += "\\\\"
        case "\"": out += "\\\""
        case "\n": out += "\\n"
        default: out.unicodeScalars.append(c)
        }
    }
    return out
}

func renderLabels(_ labels: Labels) -> String {
    if labels.isEmpty { return "" }
    let parts = zip(labels.names, labels.values).map { "\($0)=\"\(escapeLabelValue($1))\"" }
    return "{" + parts.joined(separator: ",") + "}"
}

func isValidMetricName(_ s: String) -> Bool {
    guard let first = s.unicodeScalars.first else { return false }
    func ok(_ c: Unicode.Scalar, first: Bool) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || c == ":" || (!first && c >= "0" && c <= "9")
    }
    return ok(first, first: true) && s.unicodeScalars.dropFirst().allSatisfy { ok($0, first: false) }
}

func isValidLabelName(_ s: String) -> Bool {
    !s.contains(":") && !s.hasPrefix("__") && isValidMetricName(s)
}
