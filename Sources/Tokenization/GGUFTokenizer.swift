// GGUFTokenizer: the tokenizer stored in a GGUF file's `tokenizer.ggml.*` metadata, following
// llama.cpp: model "gpt2" is byte-level BPE ranked by `tokenizer.ggml.merges` with the
// pre-tokenizer named by `tokenizer.ggml.pre`; model "llama" is SentencePiece-style BPE that
// merges the adjacent pair whose concatenation is the best-scored token, with `<0xNN>` byte
// tokens for characters outside the vocabulary.
import Checkpoints
import Foundation

extension Tokenizer {
    /// Loads the tokenizer stored in a GGUF file's metadata.
    public convenience init(gguf: GGUFFile) throws {
        try self.init(spec: loadGGUFTokenizer(gguf))
    }

    /// The one way a tokenizer is found at a path: a folder's tokenizer.json (with its
    /// tokenizer_config.json), else its tokenizer.gguf (an engine built from a GGUF file); a
    /// .json file; or any other file read as GGUF.
    public convenience init(contentsOf path: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TokenizerError(path, "no such file or directory")
        }
        if isDir.boolValue {
            if FileManager.default.fileExists(atPath: path + "/tokenizer.json") {
                try self.init(tokenizerJSONAt: path + "/tokenizer.json")
            } else if FileManager.default.fileExists(atPath: path + "/tokenizer.gguf") {
                try self.init(gguf: GGUFFile(path: path + "/tokenizer.gguf"))
            } else {
                throw TokenizerError(path, "the folder has no tokenizer.json (or tokenizer.gguf)")
            }
        } else if path.hasSuffix(".json") {
            try self.init(tokenizerJSONAt: path)
        } else {
            try self.init(gguf: GGUFFile(path: path))
        }
    }
}

private func loadGGUFTokenizer(_ gguf: GGUFFile) throws -> TokenizerSpec {
    let md = gguf.metadata
    let path = gguf.path
    func fail(_ key: String, _ message: String) -> TokenizerError { TokenizerError(path, field: key, message) }
    var notes: [String] = []

    guard let modelValue = md["tokenizer.ggml.model"] else {
        throw fail("tokenizer.ggml.model", "missing: the file holds no tokenizer")
    }
    guard let modelName = modelValue.string else { throw fail("tokenizer.ggml.model", "expected a string") }
    guard modelName == "gpt2" || modelName == "llama" else {
        throw fail("tokenizer.ggml.model", "'\(modelName)' is not supported (gpt2 and llama are)")
    }
    guard let tokenValues = md["tokenizer.ggml.tokens"]?.array else {
        throw fail("tokenizer.ggml.tokens", "missing or not an array")
    }
    let tokens = tokenValues.compactMap(\.string)
    guard tokens.count == tokenValues.count, !tokens.isEmpty else {
        throw fail("tokenizer.ggml.tokens", "expected a non-empty array of strings")
    }
    let n = tokens.count
    guard n < 1 << 24 else { throw fail("tokenizer.ggml.tokens", "\(n) tokens is more than supported (16777216)") }

    var types = [TokenType](repeating: .normal, count: n)
    if let typeValues = md["tokenizer.ggml.token_type"] {
        guard let raw = typeValues.intArray, raw.count == typeValues.array?.count, raw.count == n else {
            throw fail("tokenizer.ggml.token_type", "expected \(n) integers, one per token")
        }
        for (i, t) in raw.enumerated() { types[i] = TokenType(rawValue: UInt8(clamping: t)) ?? .normal }
    }

    func tokenID(_ key: String, default d: Int?, required: Bool) throws -> Int32? {
        guard let v = md[key] else { return d.flatMap { $0 < n ? Int32($0) : nil } }
        guard let i = v.int else { throw fail(key, "expected an integer") }
        if i >= 0 && i < n { return Int32(i) }
        if required { throw fail(key, "token id \(i) is outside the vocabulary of \(n) tokens") }
        if i >= 0 && i != Int(UInt32.max) { notes.append("\(key) = \(i) is outside the vocabulary; ignored") }
        return nil
    }
    func flag(_ key: String, default d: Bool) throws -> Bool {
        guard let v = md[key] else { return d }
        guard let b = v.bool else { throw fail(key, "expected a boolean") }
        return b
    }

    let isLlama = modelName == "llama"
    let bos = try tokenID("tokenizer.ggml.bos_token_id", default: isLlama ? 1 : nil, required: true)
    let eos = try tokenID("tokenizer.ggml.eos_token_id", default: isLlama ? 2 : nil, required: true)
    let unk = try tokenID("tokenizer.ggml.unknown_token_id", default: isLlama ? 0 : nil, required: false)
    let pad = try tokenID("tokenizer.ggml.padding_token_id", default: nil, required: false)
    var extraStops: [Int32] = []
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        if let id = try tokenID(key, default: nil, required: false) { extraStops.append(id) }
    }

    var tokenToID: [ExactString: Int32] = [:]
    tokenToID.reserveCapacity(n)
    for (i, t) in tokens.enumerated() { tokenToID[ExactString(t)] = Int32(i) }

    // Non-normal tokens are matched in the text as whole tokens (llama.cpp's special-token partition).
    var added: [AddedToken] = []
    var specialIDs: [Int32] = []
    for i in 0..<n where types[i] == .control || types[i] == .userDefined || types[i] == .unknown {
        guard !tokens[i].isEmpty else { continue }
        added.append(AddedToken(content: tokens[i], id: Int32(i), special: types[i] != .userDefined))
        if types[i] != .userDefined { specialIDs.append(Int32(i)) }
    }

    var spec: TokenizerSpec
    if isLlama {
        var scores = [Float](repeating: 0, count: n)
        if let s = md["tokenizer.ggml.scores"] {
            guard let f = s.floatArray, f.count == n, s.array?.count == n else {
                throw fail("tokenizer.ggml.scores", "expected \(n) numbers, one per token")
            }
            scores = f
        } else {
            notes.append("tokenizer.ggml.scores missing: merges go left to right")
        }
        var bpe = BPEModel(input: .scalars, merges: MergeTable())
        bpe.fallbackAfterMerges = true
        bpe.unknownID = unk
        // Merges: every split of a normal token into two symbols, ranked by that token's score.
        var normal: [ExactString: Int32] = [:]
        for i in 0..<n where types[i] == .normal || types[i] == .userDefined { normal[ExactString(tokens[i])] = Int32(i) }
        var table = MergeTable()
        table.reserve(n * 2)
        for i in 0..<n where types[i] == .normal {
            let scalars = Array(tokens[i].unicodeScalars)
            if scalars.count == 1 {
                bpe.scalarSymbols[scalars[0].value] = Int32(i)
                continue
            }
            guard scalars.count > 1 else { continue }
            let priority = MergeTable.priority(score: scores[i])
            for k in 1..<scalars.count {
                guard let l = normal[ExactString(String(String.UnicodeScalarView(scalars[..<k])))],
                      let r = normal[ExactString(String(String.UnicodeScalarView(scalars[k...])))] else { continue }
                table.insert(left: l, right: r, merged: Int32(i), priority: priority)
            }
        }
        for i in 0..<n where types[i] == .userDefined {
            let scalars = Array(tokens[i].unicodeScalars)
            if scalars.count == 1 { bpe.scalarSymbols[scalars[0].value] = Int32(i) }
        }
        bpe.merges = table
        bpe.byteTokens = [Int32](repeating: -1, count: 256)
        for i in 0..<n where types[i] == .byte {
            if let b = byteTokenValue(tokens[i]) { bpe.byteTokens[Int(b)] = Int32(i) }
        }
        let addSpacePrefix = try flag("tokenizer.ggml.add_space_prefix", default: true)
        var decoder = DecoderSpec()
        decoder.replacements = [.init(pattern: "\u{2581}", content: " ")]
        decoder.byteFallback = true
        decoder.stripStart = addSpacePrefix ? 1 : 0
        spec = TokenizerSpec(path: path, kind: .sentencePieceBPE, tokens: tokens, types: types, addedTokens: added,
                             model: bpe, decoder: decoder)
        spec.normalizers = (addSpacePrefix ? [.prepend([0x2581])] : []) + [.replace([0x20], [0x2581])]
    } else {
        guard let mergeValues = md["tokenizer.ggml.merges"]?.array else {
            throw fail("tokenizer.ggml.merges", "missing: a gpt2 tokenizer needs its merges")
        }
        var table = MergeTable()
        table.reserve(mergeValues.count)
        for (rank, v) in mergeValues.enumerated() {
            guard let m = v.string else { throw fail("tokenizer.ggml.merges", "entry \(rank) is not a string") }
            guard let (left, right) = splitMerge(m) else {
                throw fail("tokenizer.ggml.merges", "entry \(rank) '\(m)' is not two tokens separated by a space")
            }
            guard let l = tokenToID[ExactString(left)], let r = tokenToID[ExactString(right)],
                  let merged = tokenToID[ExactString(left + right)] else { continue }
            table.insert(left: l, right: r, merged: merged, priority: UInt32(rank))
        }
        var bpe = BPEModel(input: .bytes, merges: table)
        bpe.byteSymbols = ByteLevel.byteToScalar.map { tokenToID[ExactString(String($0))] ?? -1 }
        let pre = md["tokenizer.ggml.pre"]?.string ?? "default"
        var steps: [PreTokenizerStep]
        switch pre {
        case "default", "gpt-2", "gpt2", "jais", "olmo", "mpt", "falcon", "bloom", "gpt3-finnish", "poro-chat", "viking":
            steps = [.builtin(.gpt2)]
        case "smollm", "starcoder", "refact", "codeshell", "exaone":
            steps = [.digits(individual: true), .builtin(.gpt2)]
        case "llama-bpe", "llama3", "llama-v3":
            steps = [.builtin(.llama3)]
            bpe.ignoreMerges = true
        case "smaug-bpe", "dbrx", "falcon3":
            steps = [.builtin(.llama3)]
        case "qwen2", "deepseek-r1-qwen", "megrez", "stablelm2":
            steps = [.builtin(.qwen2)]
        default:
            steps = [.builtin(.gpt2)]
            notes.append("pre-tokenizer '\(pre)' is not known; using the GPT-2 split")
        }
        var decoder = DecoderSpec()
        decoder.byteLevel = true
        decoder.rawNonNormalTokens = true
        spec = TokenizerSpec(path: path, kind: .byteLevelBPE, tokens: tokens, types: types, addedTokens: added,
                             model: bpe, preTokenizers: steps, decoder: decoder)
    }
    spec.bosID = bos
    spec.eosID = eos
    spec.unknownID = unk
    spec.paddingID = pad
    spec.extraStopIDs = extraStops
    spec.specialIDs = specialIDs
    if let b = bos, try flag("tokenizer.ggml.add_bos_token", default: isLlama) { spec.prefixIDs = [b] }
    if let e = eos, try flag("tokenizer.ggml.add_eos_token", default: false) { spec.suffixIDs = [e] }
    if let t = md["tokenizer.chat_template"] {
        guard let s = t.string else { throw fail("tokenizer.chat_template", "expected a string") }
        spec.chatTemplate = s
    }
    spec.notes = notes
    return spec
}
