// BPEModel: one pre-tokenized piece -> token ids. Byte-level models start from one symbol per
// byte; SentencePiece-style models from one symbol per scalar, with unknown scalars spelled as
// `<0xNN>` byte tokens (before merging, as HF does, or after, as llama.cpp's SPM does).

struct BPEModel: Sendable {
    enum Input: Sendable { case bytes, scalars }

    var input: Input
    var merges: MergeTable
    /// bytes: the id of each byte's one-scalar vocabulary token (-1 where absent).
    var byteSymbols: [Int32] = []
    /// scalars: the id of each one-scalar token.
    var scalarSymbols: [UInt32: Int32] = [:]
    /// The `<0xNN>` token of each byte (-1 where absent); empty without byte fallback.
    var byteTokens: [Int32] = []
    /// llama.cpp SPM: unknown scalars stay one symbol through merging and become bytes after.
    var fallbackAfterMerges = false
    var unknownID: Int32?
    var fuseUnknown = false
    /// A piece that is itself a token is that token, whatever the merges say (Llama 3).
    var ignoreMerges = false

    func encodeBytes(_ bytes: [UInt8], tokenToID: [ExactString: Int32], _ symbols: inout [Int32], _ out: inout [Int32]) {
        if ignoreMerges, let id = tokenToID[ExactString(ByteLevel.encode(bytes))] {
            out.append(id)
            return
        }
        symbols.removeAll(keepingCapacity: true)
        for b in bytes {
            let id = byteSymbols[Int(b)]
            if id >= 0 { symbols.append(id) } else if let unk = unknownID { symbols.append(unk) }
        }
        merges.merge(&symbols)
        out += symbols
    }

    func encodeScalars(_ scalars: ArraySlice<UInt32>, tokenToID: [ExactString: Int32], _ symbols: inout [Int32],
                       _ unknownScalars: inout [UInt32], _ out: inout [Int32]) {
        if ignoreMerges, let id = tokenToID[ExactString(scalarString(scalars))] {
            out.append(id)
            return
        }
        symbols.removeAll(keepingCapacity: true)
        unknownScalars.removeAll(keepingCapacity: true)
        var lastWasUnknown = false
        var utf8: [UInt8] = []
        for v in scalars {
            if let id = scalarSymbols[v] {
                symbols.append(id)
                lastWasUnknown = false
                continue
            }
            if fallbackAfterMerges {
                symbols.append(-1)
                unknownScalars.append(v)
                continue
            }
            if !byteTokens.isEmpty {
                utf8.removeAll(keepingCapacity: true)
                appendUTF8(v, &utf8)
                if utf8.allSatisfy({ byteTokens[Int($0)] >= 0 }) {
                    for b in utf8 { symbols.append(byteTokens[Int(b)]) }
                    lastWasUnknown = false
                    continue
                }
            }
            if let unk = unknownID {
                if !(fuseUnknown && lastWasUnknown) { symbols.append(unk) }
                lastWasUnknown = true
            }
        }
        merges.merge(&symbols)
        if unknownScalars.isEmpty {
            out += symbols
            return
        }
        var next = 0
        for id in symbols {
            if id >= 0 { out.append(id); continue }
            let v = unknownScalars[next]
            next += 1
            utf8.removeAll(keepingCapacity: true)
            appendUTF8(v, &utf8)
            for b in utf8 {
                let t = byteTokens.isEmpty ? -1 : byteTokens[Int(b)]
                if t >= 0 { out.append(t) } else if let unk = unknownID { out.append(unk) }
            }
        }
    }
}

/// Splits a merge written "left right" at its first space byte after the first byte (as
/// llama.cpp does; a Character search would miss a space followed by a combining mark).
func splitMerge(_ m: String) -> (String, String)? {
    let u = Array(m.utf8)
    guard u.count >= 3, let space = u[1...].firstIndex(of: 0x20), space + 1 < u.count else { return nil }
    return (String(decoding: u[..<space], as: UTF8.self), String(decoding: u[(space + 1)...], as: UTF8.self))
}
