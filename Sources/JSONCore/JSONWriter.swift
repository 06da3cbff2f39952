// JSONWriter: JSON -> compact UTF-8 text, as Triton's RapidJSON writer emits it (no spaces,
// doubles in shortest round-trip form with ".0" on integral values).

/// Appends JSON text to `bytes`. Strings are written as their bytes with only '"', '\' and
/// control characters escaped, so non-ASCII text (and BYTES elements that are not UTF-8) pass
/// through unchanged.
public struct JSONWriter {
    public var bytes: [UInt8] = []

    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    /// Appends `s` as it is: the caller vouches that it is JSON text.
    public mutating func raw(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    public mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { string(bytes: $0) }
    }

    public mutating func string<C: Collection>(bytes source: C) where C.Element == UInt8 {
        bytes.append(UInt8(ascii: "\""))
        for c in source {
            switch c {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case 0x0A: raw("\\n")
            case 0x0D: raw("\\r")
            case 0x09: raw("\\t")
            case 0x08: raw("\\b")
            case 0x0C: raw("\\f")
            case 0..<0x20:
                let hex: StaticString = "0123456789abcdef"
                raw("\\u00")
                bytes.append(hex.utf8Start[Int(c >> 4)])
                bytes.append(hex.utf8Start[Int(c & 0xF)])
            default: bytes.append(c)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    public mutating func int(_ v: Int64) { bytes.append(contentsOf: String(v).utf8) }
    public mutating func uint(_ v: UInt64) { bytes.append(contentsOf: String(v).utf8) }
    public mutating func bool(_ v: Bool) { if v { raw("true") } else { raw("false") } }

    /// Shortest round-trip form; integral values keep a ".0" as RapidJSON writes them. NaN and
    /// infinities (not JSON) are written as Python's json module reads them.
    public mutating func double(_ v: Double) {
        if v.isNaN { raw("NaN"); return }
        if v.isInfinite { if v < 0 { raw("-Infinity") } else { raw("Infinity") }; return }
        bytes.append(contentsOf: v.description.utf8)
    }

    public mutating func value(_ v: JSON) {
        switch v {
        case .null: raw("null")
        case .bool(let b): bool(b)
        case .int(let n): int(n)
        case .uint(let n): uint(n)
        case .double(let d): double(d)
        case .string(let s): string(s)
        case .array(let a):
            bytes.append(UInt8(ascii: "["))
            for (k, e) in a.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                value(e)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let o):
            bytes.append(UInt8(ascii: "{"))
            for (k, m) in o.members.enumerated() {
                if k > 0 { bytes.append(UInt8(ascii: ",")) }
                string(m.key)
                bytes.append(UInt8(ascii: ":"))
                value(m.value)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// The compact text of `v`.
    public static func encode(_ v: JSON) -> [UInt8] {
        var w = JSONWriter()
        w.value(v)
        return w.bytes
    }
}
