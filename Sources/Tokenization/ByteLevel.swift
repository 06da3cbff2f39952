// ByteLevel: GPT-2's reversible map between the 256 byte values and printable Unicode scalars,
// which byte-level BPE vocabularies are written in ("Ġ" is the space byte 0x20, "Ċ" is 0x0A).

enum ByteLevel {
    /// byteToScalar[b]: the scalar that stands for byte b in a byte-level vocabulary.
    static let byteToScalar: [Unicode.Scalar] = {
        var printable = [Bool](repeating: false, count: 256)
        for b in 0x21...0x7E { printable[b] = true }  // "!" ... "~"
        for b in 0xA1...0xAC { printable[b] = true }  // "¡" ... "¬"
        for b in 0xAE...0xFF { printable[b] = true }  // "®" ... "ÿ"
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if printable[b] {
                table[b] = Unicode.Scalar(UInt8(b))
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// scalarToByte[v] for scalar values v < 324: the byte, or -1 where v stands for no byte.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    /// The vocabulary spelling of raw bytes ("hi there" -> "hiĠthere").
    static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    /// The bytes a vocabulary string stands for, or nil if some scalar is not in the map
    /// (the HF ByteLevel decoder then uses the string's own UTF-8 bytes).
    static func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            guard s.value < 324 else { return nil }
            let b = scalarToByte[Int(s.value)]
            guard b >= 0 else { return nil }
            out.append(UInt8(b))
        }
        return out
    }
}
