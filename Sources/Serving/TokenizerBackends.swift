// The tokenizer backends: TensorRT-LLM's `preprocessing` (text → input_ids, stop / bad word
// lists in TRT-LLM's [2, n] layout, end and pad ids) and `postprocessing` (token ids → text,
// UTF-8 safe across streamed chunks). NVIDIA ships them as Python models; Petrel runs them
// natively with the tokenizer named by the `tokenizer_dir` parameter.
import Checkpoints
import Dispatch
import Foundation
import Synchronization
import Tokenization

/// Tokenizers by resolved path, loaded once and shared by every model that names them.
final class TokenizerStore: Sendable {
    private let cache = Mutex<[String: Tokenizer]>([:])

    /// A GGUF file (its embedded vocabulary), an HF folder with tokenizer.json, or a tokenizer.json.
    func tokenizer(at path: String) throws -> Tokenizer {
        if let t = cache.withLock({ $0[path] }) { return t }
        let t = try Tokenizer(contentsOf: path)
        cache.withLock { $0[path] = t }
        return t
    }

    func insert(_ tokenizer: Tokenizer, at path: String) {
        cache.withLock { if $0[path] == nil { $0[path] = tokenizer } }
    }
}

/// The tokenizer a model's `tokenizer_dir` parameter names (relative to the model folder).
func loadTokenizer(_ parameters: ModelParameters, directory: String, store: TokenizerStore, fallback: String? = nil) throws -> Tokenizer {
    guard let (key, path) = parameters.path(["tokenizer_dir", "tokenizer_path"], relativeTo: directory) ?? fallback.map({ ("tokenizer_dir", $0) }) else {
        throw parameters.source.parameterError("tokenizer_dir", "is required: a GGUF file or a Hugging Face folder with tokenizer.json")
    }
    do {
        return try store.tokenizer(at: path)
    } catch {
        throw parameters.source.parameterError(key, "cannot load a tokenizer from \(path): \(error)")
    }
}

/// TRT-LLM's word-list tensor for one batch item: [2, n] = flat ids, then cumulative end
/// offsets padded with -1.
func encodeWordList(_ words: [String], _ tokenizer: Tokenizer) -> [[Int32]] {
    words.map { tokenizer.encode($0, addSpecialTokens: false) }.filter { !$0.isEmpty }
}

func wordListTensor(_ name: String, _ lists: [[[Int32]]]) -> InferTensor {
    let flats = lists.map { $0.flatMap { $0 } }
    let width = max(1, flats.map(\.count).max() ?? 0)
    var values: [Int32] = []
    for (flat, words) in zip(flats, lists) {
        values += flat + Array(repeating: 0, count: width - flat.count)
        var end: Int32 = 0
        let offsets = words.map { w -> Int32 in end += Int32(w.count); return end }
        values += offsets + Array(repeating: -1, count: width - offsets.count)
    }
    return .int32(name, [lists.count, 2, width], values)
}

/// Parses a [2, n] word list row back into token sequences; throws on a malformed one.
func parseWordList(_ row: ArraySlice<Int64>, input: String) throws -> [[Int32]] {
    guard row.count % 2 == 0 else { throw InputError(input, "must have shape [2, n] per batch item") }
    let n = row.count / 2
    let flat = row.prefix(n).map { Int32(truncatingIfNeeded: $0) }
    var out: [[Int32]] = []
    var start = 0
    for off in row.suffix(n) {
        guard off >= 0 else { break }
        guard Int(off) >= start, Int(off) <= n else {
            throw InputError(input, "has offsets that must increase and stay within its \(n) ids; got \(off) after \(start)")
        }
        if Int(off) > start { out.append(Array(flat[start..<Int(off)])) }
        start = Int(off)
    }
    return out
}

// MARK: preprocessing

struct PreprocessingBackend: BatchBackend {
    let tokenizer: Tokenizer
    let addSpecialTokens: Bool
    let endID: Int32
    let padID: Int32

    /// Inputs of NVIDIA's preprocessing that Petrel does not implement; given with content, they are refused.
    static let unsupportedInputs = ["DECODER_QUERY", "IMAGE_BYTES", "IMAGE_URL", "VIDEO_BYTES", "EMBEDDING_BIAS_WORDS",
                                    "EMBEDDING_BIAS_WEIGHTS", "PROMPT_TABLE_EXTRA_ID"]

    init(tokenizer: Tokenizer, parameters: ModelParameters) throws {
        self.tokenizer = tokenizer
        addSpecialTokens = try parameters.bool("add_special_tokens", default: true)
        endID = tokenizer.eosID ?? tokenizer.paddingID ?? 0
        padID = tokenizer.paddingID ?? endID
    }

    func execute(_ batch: [ModelRequest], instance: Int) -> [Result<[InferTensor], Error>] {
        batch.map { r in Result { try run(r) } }
    }

    func run(_ r: ModelRequest) throws -> [InferTensor] {
        for name in Self.unsupportedInputs where r.inputs[name].map({ !$0.isTrivial }) ?? false {
            throw InputError(name, "is not supported by Petrel's preprocessing")
        }
        let b = r.batchSize
        var ids: [[Int32]] = [], outputLens: [Int32] = [], ends: [Int32] = [], pads: [Int32] = []
        var stops: [[[Int32]]] = [], bads: [[[Int32]]] = []
        for i in 0..<b {
            let query = try r.strings("QUERY", item: i) ?? []
            ids.append(tokenizer.encode(query.joined(), addSpecialTokens: addSpecialTokens))
            if let n = try r.int("REQUEST_OUTPUT_LEN", item: i) {
                guard n >= 1 else { throw InputError("REQUEST_OUTPUT_LEN", "must be >= 1, got \(n)") }
                outputLens.append(Int32(clamping: n))
            } else {
                outputLens.append(0)
            }
            let end = try r.int("END_ID", item: i).map { Int32(clamping: $0) } ?? endID
            ends.append(end)
            pads.append(try r.int("PAD_ID", item: i).map { Int32(clamping: $0) } ?? padID)
            stops.append(encodeWordList(try r.strings("STOP_WORDS_DICT", item: i) ?? [], tokenizer))
            bads.append(encodeWordList(try r.strings("BAD_WORDS_DICT", item: i) ?? [], tokenizer))
        }
        let width = max(1, ids.map(\.count).max() ?? 0)
        var out: [InferTensor] = []
        for name in r.outputs {
            switch name {
            case "INPUT_ID":
                out.append(.int32(name, [b, width], zip(ids, ends).flatMap { row, end in row + Array(repeating: end, count: width - row.count) }))
            case "REQUEST_INPUT_LEN": out.append(.int32(name, [b, 1], ids.map { Int32($0.count) }))
            case "REQUEST_OUTPUT_LEN" where r.has("REQUEST_OUTPUT_LEN"): out.append(.int32(name, [b, 1], outputLens))
            case "BAD_WORDS_IDS": out.append(wordListTensor(name, bads))
            case "STOP_WORDS_IDS": out.append(wordListTensor(name, stops))
            case "OUT_END_ID": out.append(.int32(name, [b, 1], ends))
            case "OUT_PAD_ID": out.append(.int32(name, [b, 1], pads))
            case "EMBEDDING_BIAS": out.append(.fp32(name, [b, 0], []))
            default: break   // multimodal / encoder-decoder outputs: not produced
            }
        }
        return out
    }
}

// MARK: postprocessing

/// Detokenizers of the streams in flight, keyed by the ensemble's stream key (then item and
/// beam). The ensemble ends every stream it opened (`forget`), whether or not its last chunk
/// came; `ttl` is only a backstop for a caller that never does.
final class DetokenizerStreams: Sendable {
    private struct Entry {
        var detokenizer: IncrementalDetokenizer
        var touched: UInt64
    }
    private struct State {
        var entries: [String: Entry] = [:]
        var lastSweep: UInt64 = 0
    }
    private let state = Mutex(State())
    private let ttl: UInt64 = 600 * 1_000_000_000

    /// The text `ids` complete in stream `key`; with `final`, also what was held back, and the stream ends.
    func append(_ ids: [Int32], key: String, final: Bool, make: () -> IncrementalDetokenizer) -> String {
        let now = DispatchTime.now().uptimeNanoseconds
        var entry = state.withLock { s -> Entry in
            // The backstop sweep runs once a tenth of the ttl, not on every chunk: streams are
            // ended by `forget`, so expired entries are rare.
            if now &- s.lastSweep > ttl / 10 {
                s.lastSweep = now
                s.entries = s.entries.filter { now &- $0.value.touched < ttl }
            }
            return s.entries.removeValue(forKey: key) ?? Entry(detokenizer: make(), touched: now)
        }
        var text = ""
        for id in ids { text += entry.detokenizer.append(id) }
        if final {
            text += entry.detokenizer.finish()
        } else {
            entry.touched = now
            state.withLock { $0.entries[key] = entry }
        }
        return text
    }

    /// Drops every detokenizer of stream `key`.
    func forget(_ key: String) {
        let prefix = key + "/"
        state.withLock { s in
            for k in s.entries.keys where k.hasPrefix(prefix) { s.entries[k] = nil }
        }
    }

    var count: Int { state.withLock { $0.entries.count } }
}

struct PostprocessingBackend: BatchBackend {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    let streams = DetokenizerStreams()

    func endStream(_ key: String) { streams.forget(key) }

    init(tokenizer: Tokenizer, parameters: ModelParameters) throws {
        self.tokenizer = tokenizer
        skipSpecialTokens = try parameters.bool("skip_special_tokens", default: true)
    }

    func execute(_ batch: [ModelRequest], instance: Int) -> [Result<[InferTensor], Error>] {
        batch.map { r in Result { try run(r) } }
    }

    func run(_ r: ModelRequest) throws -> [InferTensor] {
        guard let tokens = r.tensor("TOKENS_BATCH"), let all = tokens.ints else {
            throw InputError("TOKENS_BATCH", "is required")
        }
        let b = r.batchSize
        // [b, beams, L] with batching; [beams, L] without.
        let dims = r.batchSize == 1 && tokens.shape.count == 2 ? [1] + tokens.shape : tokens.shape
        guard dims.count == 3 else { throw InputError("TOKENS_BATCH", "must have shape [batch, beams, length], got \(tokens.shape)") }
        let beams = dims[1], length = dims[2]
        let lengths = r.tensor("SEQUENCE_LENGTH")?.ints
        if let lengths, lengths.count != b * beams {
            throw InputError("SEQUENCE_LENGTH", "must hold \(b * beams) lengths (batch × beams), got \(lengths.count)")
        }
        var texts: [String] = []
        for i in 0..<b {
            for beam in 0..<beams {
                let base = (i * beams + beam) * length
                let n = lengths.map { Int(max(0, min(Int64(length), $0[i * beams + beam]))) } ?? length
                let ids = all[base..<base + n].map { Int32(truncatingIfNeeded: $0) }
                if let key = r.context.streamKey {
                    texts.append(streams.append(ids, key: "\(key)/\(i)/\(beam)", final: r.context.isFinalChunk) {
                        tokenizer.makeDetokenizer(skipSpecialTokens: skipSpecialTokens)
                    })
                } else {
                    texts.append(tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens))
                }
            }
        }
        var out: [InferTensor] = []
        for name in r.outputs {
            switch name {
            case "OUTPUT": out.append(.text(name, [b, beams], texts))
            case "OUT_CUM_LOG_PROBS": if let t = r.tensor("CUM_LOG_PROBS") { out.append(t.renamed(name)) }
            case "OUT_OUTPUT_LOG_PROBS": if let t = r.tensor("OUTPUT_LOG_PROBS") { out.append(t.renamed(name)) }
            case "OUT_CONTEXT_LOGITS": if let t = r.tensor("CONTEXT_LOGITS") { out.append(t.renamed(name)) }
            case "OUT_GENERATION_LOGITS": if let t = r.tensor("GENERATION_LOGITS") { out.append(t.renamed(name)) }
            default: break
            }
        }
        return out
    }
}

// MARK: identity (Triton's test backend)

/// Triton's `identity` backend: OUTPUTi is INPUTi (by position); the `execute_delay_ms`
/// parameter sleeps in every execution (to observe batching and instances).
struct IdentityBackend: BatchBackend {
    let inputNames: [String]
    let outputNames: [String]
    let delayMilliseconds: Int

    func execute(_ batch: [ModelRequest], instance: Int) -> [Result<[InferTensor], Error>] {
        if delayMilliseconds > 0 { usleep(UInt32(delayMilliseconds * 1000)) }
        return batch.map { r in
            .success(zip(inputNames, outputNames).compactMap { input, output in
                r.tensor(input).map { $0.renamed(output) }
            })
        }
    }
}
