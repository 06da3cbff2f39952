// TokenizerJSON: loads a Hugging Face tokenizer.json (model BPE) and the tokenizer_config.json
// next to it (chat template, add_bos_token, bos/eos names).
import Foundation

extension Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`; reads `tokenizer_config.json` (and
    /// `chat_template.jinja`) from the same folder when present.
    public convenience init(tokenizerJSONAt path: String) throws {
        var loader = TokenizerJSONLoader(path: path)
        try self.init(spec: loader.load())
    }
}

private struct TokenizerJSONLoader {
    let path: String
    var notes: [String] = []

    init(path: String) { self.path = path }

    mutating func load() throws -> TokenizerSpec {
        let root = try JSONNode.read(path)
        _ = try root.object()
        let model = root["model"]
        _ = try model.object()
        let modelType = try model["type"].optionalString() ?? (model["merges"].exists ? "BPE" : "")
        guard modelType == "BPE" else {
            throw model["type"].error("model type '\(modelType)' is not supported (only BPE)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = try model[key].optionalString(), !s.isEmpty {
                throw model[key].error("'\(s)' is not supported (BPE with subword prefixes or suffixes)")
            }
        }
        if !model["dropout"].isNull, let d = try? model["dropout"].number(), d > 0 {
            notes.append("BPE dropout \(d) ignored (deterministic encoding)")
        }

        // Vocabulary and added tokens.
        let vocabNode = model["vocab"]
        let vocab = try vocabNode.object()
        var entries: [(String, Int)] = []
        entries.reserveCapacity(vocab.members.count)
        var maxID = -1
        for (token, v) in vocab.members {
            guard let d = v.number, d >= 0, d < 16_777_216, d.rounded() == d else {
                throw vocabNode.error("token '\(token)' has id \(v), expected an integer in 0..<16777216")
            }
            entries.append((token, Int(d)))
            maxID = max(maxID, Int(d))
        }
        var added: [AddedToken] = []
        for a in try root["added_tokens"].isNull ? [] : root["added_tokens"].array() {
            let id = try a["id"].int()
            guard id >= 0 && id < 1 << 24 else { throw a["id"].error("id \(id) out of range") }
            let content = try a["content"].string()
            guard !content.isEmpty else { throw a["content"].error("empty added token") }
            added.append(AddedToken(content: content, id: Int32(id), special: try a["special"].bool(default: false),
                                    lstrip: try a["lstrip"].bool(default: false), rstrip: try a["rstrip"].bool(default: false),
                                    singleWord: try a["single_word"].bool(default: false)))
            maxID = max(maxID, id)
        }
        guard maxID >= 0 else { throw vocabNode.error("the vocabulary is empty") }
        var tokens = [String](repeating: "", count: maxID + 1)
        var types = [TokenType](repeating: .unused, count: maxID + 1)
        var tokenToID: [ExactString: Int32] = [:]
        tokenToID.reserveCapacity(entries.count)
        for (t, id) in entries {
            tokens[id] = t
            types[id] = .normal
            tokenToID[ExactString(t)] = Int32(id)
        }

        // Pipeline pieces.
        var normalizers = try parseNormalizer(root["normalizer"])
        var steps: [PreTokenizerStep] = []
        var byteLevelPre = false
        try parsePreTokenizer(root["pre_tokenizer"], &normalizers, &steps, &byteLevelPre, position: 0)
        var decoder = DecoderSpec()
        try parseDecoder(root["decoder"], &decoder)
        let kind: Tokenizer.Kind = (byteLevelPre || decoder.byteLevel) ? .byteLevelBPE : .sentencePieceBPE

        // The BPE model.
        let byteFallback = try model["byte_fallback"].bool(default: false)
        var bpe = BPEModel(input: kind == .byteLevelBPE ? .bytes : .scalars, merges: MergeTable())
        bpe.fuseUnknown = try model["fuse_unk"].bool(default: false)
        bpe.ignoreMerges = try model["ignore_merges"].bool(default: false)
        if let unk = try model["unk_token"].optionalString() {
            guard let id = tokenToID[ExactString(unk)] else { throw model["unk_token"].error("'\(unk)' is not in the vocabulary") }
            bpe.unknownID = id
            types[Int(id)] = .unknown
        }
        if byteFallback {
            bpe.byteTokens = (0..<256).map { b in tokenToID[ExactString("<0x" + hex2(UInt8(b)) + ">")] ?? -1 }
            for id in bpe.byteTokens where id >= 0 { types[Int(id)] = .byte }
            if bpe.byteTokens.contains(-1) { notes.append("byte_fallback is on but some <0xNN> tokens are missing") }
        }
        switch bpe.input {
        case .bytes:
            bpe.byteSymbols = ByteLevel.byteToScalar.map { tokenToID[ExactString(String($0))] ?? -1 }
        case .scalars:
            for (t, id) in entries {
                var it = t.unicodeScalars.makeIterator()
                if let s = it.next(), it.next() == nil { bpe.scalarSymbols[s.value] = Int32(id) }
            }
        }
        bpe.merges = try parseMerges(model["merges"], tokenToID)

        // Added tokens take their ids over.
        for a in added {
            tokens[Int(a.id)] = a.content
            if types[Int(a.id)] != .unknown { types[Int(a.id)] = a.special ? .control : .userDefined }
        }

        var spec = TokenizerSpec(path: path, kind: kind, tokens: tokens, types: types, addedTokens: added,
                                 model: bpe, normalizers: normalizers, preTokenizers: steps, decoder: decoder)
        spec.unknownID = bpe.unknownID
        spec.specialIDs = added.filter(\.special).map(\.id)
        (spec.prefixIDs, spec.suffixIDs) = try parsePostProcessor(root["post_processor"], tokenToID: tokenToID, added: added)
        try applyConfig(&spec, added: added)
        spec.notes = notes
        return spec
    }

    // MARK: normalizer

    mutating func parseNormalizer(_ n: JSONNode) throws -> [NormalizerStep] {
        if n.isNull { return [] }
        let type = try n["type"].string()
        switch type {
        case "Sequence":
            var out: [NormalizerStep] = []
            for child in try n["normalizers"].array() { out += try parseNormalizer(child) }
            return out
        case "Prepend":
            return [.prepend(try n["prepend"].string().unicodeScalars.map(\.value))]
        case "Replace":
            let pattern = n["pattern"]
            guard let literal = try pattern["String"].optionalString() else {
                throw pattern.error("only String patterns are supported in a Replace normalizer")
            }
            return [.replace(literal.unicodeScalars.map(\.value), try n["content"].string().unicodeScalars.map(\.value))]
        case "NFC": return [.nfc]
        case "NFD": return [.nfd]
        case "NFKC": return [.nfkc]
        case "NFKD": return [.nfkd]
        case "Lowercase": return [.lowercase]
        case "Strip":
            return [.strip(left: try n["strip_left"].bool(default: true), right: try n["strip_right"].bool(default: true))]
        default:
            throw n["type"].error("normalizer '\(type)' is not supported (Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip are)")
        }
    }

    // MARK: pre-tokenizer

    mutating func parsePreTokenizer(_ n: JSONNode, _ normalizers: inout [NormalizerStep], _ steps: inout [PreTokenizerStep],
                                    _ byteLevel: inout Bool, position: Int) throws {
        if n.isNull { return }
        let type = try n["type"].string()
        switch type {
        case "Sequence":
            for (i, child) in try n["pretokenizers"].array().enumerated() {
                try parsePreTokenizer(child, &normalizers, &steps, &byteLevel, position: position + i)
            }
        case "ByteLevel":
            byteLevel = true
            if try n["add_prefix_space"].bool(default: false) {
                if !steps.isEmpty { notes.append("ByteLevel add_prefix_space after another pre-tokenizer is applied once per segment") }
                normalizers.append(.metaspace(replacement: 0x20, scheme: .always))
            }
            if try n["use_regex"].bool(default: true) { steps.append(.builtin(.gpt2)) }
        case "Split":
            let pattern = n["pattern"]
            let behaviorName = try n["behavior"].optionalString() ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: behaviorName) else {
                throw n["behavior"].error("unknown split behavior '\(behaviorName)'")
            }
            let invert = try n["invert"].bool(default: false)
            if let literal = try pattern["String"].optionalString() {
                steps.append(.split(SplitMatcher(kind: .literal(literal.unicodeScalars.map(\.value))), behavior, invert: invert))
            } else if let source = try pattern["Regex"].optionalString() {
                if let builtin = BuiltinPattern(source: source), behavior == .isolated, !invert {
                    steps.append(.builtin(builtin))
                } else {
                    do {
                        let re = try Regex(source)
                        steps.append(.split(SplitMatcher(kind: .regex(re)), behavior, invert: invert))
                        notes.append("split pattern \(source) runs on Swift Regex (slower than the builtin scanners)")
                    } catch {
                        throw pattern["Regex"].error("cannot compile regex: \(error)")
                    }
                }
            } else {
                throw pattern.error("expected {\"String\": ...} or {\"Regex\": ...}")
            }
        case "Digits":
            steps.append(.digits(individual: try n["individual_digits"].bool(default: false)))
        case "Metaspace":
            let replacement = try n["replacement"].optionalString() ?? "\u{2581}"
            guard let r = replacement.unicodeScalars.first, replacement.unicodeScalars.count == 1 else {
                throw n["replacement"].error("expected one character")
            }
            var scheme: PrependScheme
            if let s = try n["prepend_scheme"].optionalString() {
                guard let p = PrependScheme(rawValue: s) else { throw n["prepend_scheme"].error("unknown prepend scheme '\(s)'") }
                scheme = p
            } else {
                scheme = try n["add_prefix_space"].bool(default: true) ? .always : .never
            }
            if !steps.isEmpty { notes.append("Metaspace after another pre-tokenizer is applied before it") }
            normalizers.append(.metaspace(replacement: r.value, scheme: scheme))
            if try n["split"].bool(default: true) {
                steps.append(.split(SplitMatcher(kind: .literal([r.value])), .mergedWithNext, invert: false))
            }
        default:
            throw n["type"].error("pre-tokenizer '\(type)' is not supported (Sequence, ByteLevel, Split, Digits, Metaspace are)")
        }
    }

    // MARK: decoder

    func parseDecoder(_ n: JSONNode, _ d: inout DecoderSpec) throws {
        if n.isNull {
            if n.field == "decoder" { d.joinWithSpaces = true }
            return
        }
        let type = try n["type"].string()
        switch type {
        case "Sequence":
            for child in try n["decoders"].array() { try parseDecoder(child, &d) }
        case "ByteLevel":
            d.byteLevel = true
        case "Replace":
            guard let literal = try n["pattern"]["String"].optionalString() else {
                throw n["pattern"].error("only String patterns are supported in a Replace decoder")
            }
            d.replacements.append(.init(pattern: literal, content: try n["content"].string()))
        case "ByteFallback":
            d.byteFallback = true
        case "Fuse":
            break
        case "Strip":
            let content = try n["content"].string()
            guard let c = content.unicodeScalars.first, content.unicodeScalars.count == 1 else {
                throw n["content"].error("expected one character")
            }
            let stop = try n["stop"].optionalInt() ?? 0
            guard stop == 0 else { throw n["stop"].error("stripping from the end (stop \(stop)) is not supported") }
            d.stripContent = c
            d.stripStart = try n["start"].optionalInt() ?? 0
        case "Metaspace":
            d.metaspace = try n["replacement"].optionalString() ?? "\u{2581}"
            if let s = try n["prepend_scheme"].optionalString() {
                d.metaspaceDropsFromFirst = s != "never"
            } else {
                d.metaspaceDropsFromFirst = try n["add_prefix_space"].bool(default: true)
            }
        default:
            throw n["type"].error("decoder '\(type)' is not supported (Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace are)")
        }
    }

    // MARK: merges

    func parseMerges(_ n: JSONNode, _ tokenToID: [ExactString: Int32]) throws -> MergeTable {
        var table = MergeTable()
        if n.isNull { return table }
        guard case .array(let list)? = n.value else { throw n.error("expected an array of merges") }
        table.reserve(list.count)
        for (rank, m) in list.enumerated() {
            let left: String, right: String
            if case .string(let s) = m {
                guard let (l, r) = splitMerge(s) else {
                    throw TokenizerError(n.file, field: "\(n.field)[\(rank)]", "merge '\(s)' is not two tokens separated by a space")
                }
                left = l
                right = r
            } else if case .array(let pair) = m, pair.count == 2, case .string(let a) = pair[0], case .string(let b) = pair[1] {
                left = a
                right = b
            } else {
                throw TokenizerError(n.file, field: "\(n.field)[\(rank)]", "expected \"a b\" or [\"a\", \"b\"]")
            }
            guard let l = tokenToID[ExactString(left)], let r = tokenToID[ExactString(right)],
                  let merged = tokenToID[ExactString(left + right)] else { continue }
            table.insert(left: l, right: r, merged: merged, priority: UInt32(rank))
        }
        return table
    }

    // MARK: post-processor

    func parsePostProcessor(_ n: JSONNode, tokenToID: [ExactString: Int32], added: [AddedToken]) throws -> ([Int32], [Int32]) {
        if n.isNull { return ([], []) }
        let type = try n["type"].string()
        switch type {
        case "ByteLevel":
            return ([], [])
        case "Sequence":
            var prefix: [Int32] = [], suffix: [Int32] = []
            for child in try n["processors"].array() {
                let (p, s) = try parsePostProcessor(child, tokenToID: tokenToID, added: added)
                prefix += p
                suffix = s + suffix
            }
            return (prefix, suffix)
        case "TemplateProcessing":
            let specials = n["special_tokens"]
            var prefix: [Int32] = [], suffix: [Int32] = []
            var seenSequence = false
            for item in try n["single"].array() {
                if item["Sequence"].exists {
                    seenSequence = true
                    continue
                }
                let name = try item["SpecialToken"]["id"].string()
                let entry = specials[name]
                var ids: [Int32] = []
                if entry.exists {
                    for x in try entry["ids"].array() { ids.append(Int32(try x.int())) }
                } else if let id = tokenToID[ExactString(name)] {
                    ids = [id]
                } else {
                    throw item["SpecialToken"]["id"].error("special token '\(name)' is not defined")
                }
                if seenSequence { suffix += ids } else { prefix += ids }
            }
            return (prefix, suffix)
        case "BertProcessing", "RobertaProcessing":
            let cls = try n["cls"].array(), sep = try n["sep"].array()
            guard cls.count == 2, sep.count == 2 else { throw n.error("cls and sep must be [token, id]") }
            return ([Int32(try cls[1].int())], [Int32(try sep[1].int())])
        default:
            throw n["type"].error("post-processor '\(type)' is not supported (TemplateProcessing, ByteLevel, Sequence, Bert, Roberta are)")
        }
    }

    // MARK: tokenizer_config.json

    mutating func applyConfig(_ spec: inout TokenizerSpec, added: [AddedToken]) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let configPath = (dir as NSString).appendingPathComponent("tokenizer_config.json")
        var tokenToID: [ExactString: Int32] = [:]
        for (i, t) in spec.tokens.enumerated() where !t.isEmpty { tokenToID[ExactString(t)] = Int32(i) }
        for a in added { tokenToID[ExactString(a.content)] = a.id }
        let idOf: (String) -> Int32? = { tokenToID[ExactString($0)] }
        var bos: Int32? = nil, eos: Int32? = nil
        var config: JSONNode? = nil
        if FileManager.default.fileExists(atPath: configPath) {
            let c = try JSONNode.read(configPath)
            _ = try c.object()
            config = c
            if let name = try c["bos_token"].tokenContent() {
                bos = idOf(name)
                if bos == nil { notes.append("\(configPath): bos_token '\(name)' is not in the vocabulary") }
            }
            if let name = try c["eos_token"].tokenContent() {
                eos = idOf(name)
                if eos == nil { notes.append("\(configPath): eos_token '\(name)' is not in the vocabulary") }
            }
            if let name = try c["pad_token"].tokenContent() { spec.paddingID = idOf(name) }
            let template = c["chat_template"]
            if case .string(let s)? = template.value {
                spec.chatTemplate = s
            } else if !template.isNull {
                let list = try template.array()
                let named = try list.map { (try $0["name"].optionalString(), try $0["template"].string()) }
                spec.chatTemplate = named.first(where: { $0.0 == "default" })?.1 ?? named.first?.1
            }
        }
        if spec.chatTemplate == nil {
            let jinjaPath = (dir as NSString).appendingPathComponent("chat_template.jinja")
            if let data = FileManager.default.contents(atPath: jinjaPath) {
                spec.chatTemplate = String(decoding: data, as: UTF8.self)
            }
        }
        // Without a config, BOS/EOS come from the post-processor or the usual names.
        if bos == nil && config == nil {
            bos = spec.prefixIDs.first ?? ["<s>", "<|begin_of_text|>", "<|startoftext|>"].lazy.compactMap(idOf).first
        }
        if eos == nil && config == nil {
            eos = spec.suffixIDs.last ?? ["</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"].lazy.compactMap(idOf).first
        }
        spec.bosID = bos
        spec.eosID = eos
        if let c = config {
            if c["add_bos_token"].exists && !c["add_bos_token"].isNull {
                let add = try c["add_bos_token"].bool(default: false)
                if let b = bos {
                    if add && !spec.prefixIDs.contains(b) { spec.prefixIDs.insert(b, at: 0) }
                    if !add { spec.prefixIDs.removeAll { $0 == b } }
                }
            }
            if c["add_eos_token"].exists && !c["add_eos_token"].isNull {
                let add = try c["add_eos_token"].bool(default: false)
                if let e = eos {
                    if add && !spec.suffixIDs.contains(e) { spec.suffixIDs.append(e) }
                    if !add { spec.suffixIDs.removeAll { $0 == e } }
                }
            }
        }
    }
}

private func hex2(_ b: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
}
