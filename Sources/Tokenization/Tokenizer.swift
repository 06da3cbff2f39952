// Tokenizer: text <-> token ids for byte-level BPE (GPT-2, SmolLM2, Llama 3, Qwen2) and
// SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral). Loaded from a
// Hugging Face tokenizer.json (TokenizerJSON.swift) or a GGUF vocabulary (GGUFTokenizer.swift).
//
// encode: added/special tokens are cut out of the text first; each remaining segment is
// normalized, pre-tokenized into pieces, and each piece is merged by BPE.
// decode: the HF decoder pipeline (ByteLevel, or Replace "▁"->" " + ByteFallback + Strip), done
// by IncrementalDetokenizer so streaming and whole-sequence decoding cannot disagree.
import Synchronization

public final class Tokenizer: Sendable {
    public enum Kind: String, Sendable {
        /// Bytes mapped to printable scalars, split by a regex, merged by rank (GPT-2 family).
        case byteLevelBPE
        /// Unicode scalars with "▁" for space, merged by rank or score, bytes as `<0xNN>` tokens.
        case sentencePieceBPE
    }

    public let kind: Kind
    /// The file the tokenizer came from.
    public let path: String
    public let bosID: Int32?
    public let eosID: Int32?
    public let unknownID: Int32?
    public let paddingID: Int32?
    /// Ids that end generation: EOS and the end-of-turn tokens the vocabulary has
    /// (`<|endoftext|>`, `<|im_end|>`, `<|eot_id|>`, ...).
    public let stopIDs: Set<Int32>
    /// Whether `encode(_, addSpecialTokens: true)` puts BOS first.
    public let addBOS: Bool
    /// Whether `encode(_, addSpecialTokens: true)` puts EOS last.
    public let addEOS: Bool
    public let bosToken: String?
    public let eosToken: String?
    /// The Jinja chat template stored with the tokenizer, if any.
    public let chatTemplateSource: String?
    /// Things the loader chose to approximate or ignore; empty for fully supported files.
    public let notes: [String]

    let tokens: [String]
    let types: [TokenType]
    let tokenToID: [ExactString: Int32]
    let model: BPEModel
    let normalizers: [NormalizerStep]
    let preTokenizers: [PreTokenizerStep]
    let added: AddedTokenMatcher
    let prefixIDs: [Int32]
    let suffixIDs: [Int32]
    let decoding: DecodingTables
    private let cache = Mutex<[ExactString: [Int32]]>([:])

    init(spec s: TokenizerSpec) {
        kind = s.kind
        path = s.path
        tokens = s.tokens
        types = s.types
        var map: [ExactString: Int32] = [:]
        map.reserveCapacity(s.tokens.count)
        for (i, t) in s.tokens.enumerated() where !t.isEmpty { map[ExactString(t)] = Int32(i) }
        for a in s.addedTokens { map[ExactString(a.content)] = a.id }
        tokenToID = map
        model = s.model
        normalizers = s.normalizers
        preTokenizers = s.preTokenizers
        added = AddedTokenMatcher(s.addedTokens)
        bosID = s.bosID
        eosID = s.eosID
        unknownID = s.unknownID
        paddingID = s.paddingID
        prefixIDs = s.prefixIDs
        suffixIDs = s.suffixIDs
        addBOS = s.bosID.map { s.prefixIDs.contains($0) } ?? false
        addEOS = s.eosID.map { s.suffixIDs.contains($0) } ?? false
        bosToken = s.bosID.map { s.tokens[Int($0)] }
        eosToken = s.eosID.map { s.tokens[Int($0)] }
        chatTemplateSource = s.chatTemplate
        notes = s.notes
        var stops = Set(s.extraStopIDs)
        if let e = s.eosID { stops.insert(e) }
        for name in ["<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "<end_of_turn>", "<|end|>"] {
            if let id = map[ExactString(name)], s.types[Int(id)] == .control { stops.insert(id) }
        }
        stopIDs = stops
        decoding = DecodingTables(spec: s)
    }

    public var vocabularySize: Int { tokens.count }

    /// The vocabulary's spelling of a token ("Ġthe", "▁the", "<0x0A>", "<|im_end|>"), or nil.
    public func tokenString(_ id: Int32) -> String? {
        guard id >= 0 && Int(id) < tokens.count else { return nil }
        return tokens[Int(id)]
    }

    /// The id of a token given its vocabulary spelling, or nil.
    public func id(for token: String) -> Int32? { tokenToID[ExactString(token)] }

    public func tokenType(_ id: Int32) -> TokenType? {
        guard id >= 0 && Int(id) < types.count else { return nil }
        return types[Int(id)]
    }

    /// Special tokens are dropped by `decode(_, skipSpecialTokens: true)`.
    public func isSpecial(_ id: Int32) -> Bool {
        guard id >= 0 && Int(id) < types.count else { return false }
        return decoding.special[Int(id)]
    }

    // MARK: encode

    /// Token ids of `text`. Special and added tokens written in the text become those tokens.
    /// With `addSpecialTokens`, BOS (and EOS where the tokenizer adds it) are added.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 4)
        if addSpecialTokens { out += prefixIDs }
        var text = text
        text.withUTF8 { bytes in
            var scratch = Scratch()
            for segment in added.split(bytes) {
                switch segment {
                case .token(let id): out.append(id)
                case .text(let r): encodeText(UnsafeBufferPointer(rebasing: bytes[r]), atTextStart: r.lowerBound == 0, &scratch, &out)
                }
            }
        }
        if addSpecialTokens { out += suffixIDs }
        return out
    }

    /// Buffers reused across the pieces of one encode call.
    struct Scratch {
        var scalars: [UInt32] = []
        var classes: [UInt8] = []
        var pieces: [Range<Int>] = []
        var next: [Range<Int>] = []
        var bytes: [UInt8] = []
        var symbols: [Int32] = []
        var unknownScalars: [UInt32] = []
    }

    private func encodeText(_ bytes: UnsafeBufferPointer<UInt8>, atTextStart: Bool, _ w: inout Scratch, _ out: inout [Int32]) {
        decodeScalars(bytes, into: &w.scalars)
        for step in normalizers { step.apply(&w.scalars, atTextStart: atTextStart) }
        if w.scalars.isEmpty { return }
        w.pieces.removeAll(keepingCapacity: true)
        w.pieces.append(0..<w.scalars.count)
        if !preTokenizers.isEmpty {
            w.classes.removeAll(keepingCapacity: true)
            for v in w.scalars { w.classes.append(CharClass.of(v)) }
            w.scalars.withUnsafeBufferPointer { s in
                w.classes.withUnsafeBufferPointer { k in
                    for step in preTokenizers {
                        w.next.removeAll(keepingCapacity: true)
                        for r in w.pieces { preTokenize(step, s, k, r, &w.next) }
                        swap(&w.pieces, &w.next)
                    }
                }
            }
        }
        for r in w.pieces where !r.isEmpty { encodePiece(r, &w, &out) }
    }

    private func preTokenize(_ step: PreTokenizerStep, _ s: UnsafeBufferPointer<UInt32>, _ k: UnsafeBufferPointer<UInt8>,
                             _ r: Range<Int>, _ out: inout [Range<Int>]) {
        switch step {
        case .builtin(let p):
            regexSplit(p, scalars: s, classes: k, range: r, into: &out)
        case .digits(let individual):
            var i = r.lowerBound
            while i < r.upperBound {
                var j = i + 1
                if k[i] == CharClass.number {
                    if !individual { while j < r.upperBound && k[j] == CharClass.number { j += 1 } }
                } else {
                    while j < r.upperBound && k[j] != CharClass.number { j += 1 }
                }
                out.append(i..<j)
                i = j
            }
        case .split(let matcher, let behavior, let invert):
            applySplit(matches: matcher.matches(s, range: r), range: r, behavior: behavior, invert: invert, into: &out)
        }
    }

    private static let cacheLimit = 1 << 16
    private static let cachedPieceBytes = 64

    /// Appends the ids of one pre-tokenized piece.
    private func encodePiece(_ r: Range<Int>, _ w: inout Scratch, _ out: inout [Int32]) {
        w.bytes.removeAll(keepingCapacity: true)
        for v in w.scalars[r] { appendUTF8(v, &w.bytes) }
        let cacheable = w.bytes.count <= Self.cachedPieceBytes
        var key = ExactString("")
        if cacheable {
            key = ExactString(String(decoding: w.bytes, as: UTF8.self))
            if let hit = cache.withLock({ $0[key] }) {
                out += hit
                return
            }
        }
        let start = out.count
        switch model.input {
        case .bytes: model.encodeBytes(w.bytes, tokenToID: tokenToID, &w.symbols, &out)
        case .scalars: model.encodeScalars(w.scalars[r], tokenToID: tokenToID, &w.symbols, &w.unknownScalars, &out)
        }
        if cacheable {
            let ids = Array(out[start...])
            cache.withLock { c in
                if c.count >= Self.cacheLimit { c.removeAll(keepingCapacity: true) }
                c[key] = ids
            }
        }
    }

    // MARK: decode

    /// The text of `ids` (the HF decoder pipeline). Ids out of range are ignored.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        var d = IncrementalDetokenizer(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids { d.feed(id, &out) }
        d.flush(&out)
        return String(decoding: out, as: UTF8.self)
    }

    /// A detokenizer for streaming: feed it ids one at a time.
    public func makeDetokenizer(skipSpecialTokens: Bool = false) -> IncrementalDetokenizer {
        IncrementalDetokenizer(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }
}

/// Decodes UTF-8 (valid, since it comes from a String) into scalar values.
func decodeScalars(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt32]) {
    out.removeAll(keepingCapacity: true)
    var i = 0
    let n = bytes.count
    while i < n {
        let b = bytes[i]
        if b < 0x80 {
            out.append(UInt32(b))
            i += 1
        } else if let (v, end) = scalarAt(i, bytes) {
            out.append(v)
            i = end
        } else {
            i += 1
        }
    }
}

@inline(__always)
func appendUTF8(_ v: UInt32, _ out: inout [UInt8]) {
    switch v {
    case 0..<0x80:
        out.append(UInt8(v))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | v >> 6))
        out.append(UInt8(0x80 | v & 0x3F))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | v >> 12))
        out.append(UInt8(0x80 | (v >> 6) & 0x3F))
        out.append(UInt8(0x80 | v & 0x3F))
    default:
        out.append(UInt8(0xF0 | v >> 18))
        out.append(UInt8(0x80 | (v >> 12) & 0x3F))
        out.append(UInt8(0x80 | (v >> 6) & 0x3F))
        out.append(UInt8(0x80 | v & 0x3F))
    }
}

/// Everything a loader decides; Tokenizer(spec:) builds the lookup tables from it.
struct TokenizerSpec {
    var path: String
    var kind: Tokenizer.Kind
    var tokens: [String]
    var types: [TokenType]
    var addedTokens: [AddedToken] = []
    var model: BPEModel
    var normalizers: [NormalizerStep] = []
    var preTokenizers: [PreTokenizerStep] = []
    var decoder: DecoderSpec
    var bosID: Int32?
    var eosID: Int32?
    var unknownID: Int32?
    var paddingID: Int32?
    var extraStopIDs: [Int32] = []
    /// Ids that decode(skipSpecialTokens: true) drops.
    var specialIDs: [Int32] = []
    var prefixIDs: [Int32] = []
    var suffixIDs: [Int32] = []
    var chatTemplate: String?
    var notes: [String] = []
}
