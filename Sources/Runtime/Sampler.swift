// Sampler: one row of logits → the next token, for one sequence. Applies, in order:
// suppressed ids and bad words, repetition / presence / frequency penalties, then greedy or
// temperature → top-k → top-p → min-p sampling with the request's own seeded RNG (so the same
// seed gives the same text at any batch composition). Also log probs and beam candidates.
import Compute
import Engine
import Foundation

/// xoshiro256** seeded through SplitMix64: small, fast, and reproducible across platforms.
public struct Xoshiro256: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var g = SplitMix64(seed: seed)
        s = (g.next(), g.next(), g.next(), g.next())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// What a sampler needs to know about the sequence besides its logits.
public struct SamplingContext: Sendable {
    /// Prompt + generated tokens so far.
    public var history: [Int32]
    /// How many of history's last tokens were generated (penalties count only those, except
    /// the repetition penalty, which, as in TensorRT-LLM and HF, counts the prompt too).
    public var generatedCount: Int
    public var badWords: [[Int32]]
    public var suppressed: Set<Int32>

    public init(history: [Int32] = [], generatedCount: Int = 0, badWords: [[Int32]] = [], suppressed: Set<Int32> = []) {
        self.history = history
        self.generatedCount = generatedCount
        self.badWords = badWords
        self.suppressed = suppressed
    }
}

public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: Xoshiro256

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        var system = SystemRandomNumberGenerator()
        rng = Xoshiro256(seed: parameters.seed ?? system.next())
    }

    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = -Float.infinity
        for i in 0..<logits.count where logits[i] > bestValue {
            bestValue = logits[i]
            best = i
        }
        return Int32(best)
    }

    /// Plain sampling with no history (the single-sequence generator and tests).
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var copy = Array(logits)
        return sample(&copy, SamplingContext()).token
    }

    /// Processes `logits` in place (penalties, masks) and draws a token.
    public mutating func sample(_ logits: inout [Float], _ context: SamplingContext) -> Sample {
        let p = parameters
        applyMasksAndPenalties(&logits, context)
        // Log probs (and beam candidates) come from the processed logits at temperature 1
        // for greedy and beam search, at the request's temperature when sampling.
        let t = p.temperature > 0 && p.beamWidth == 1 ? p.temperature : 1
        let logZ = logSumExp(logits, scale: 1 / t)
        func logProb(_ id: Int32) -> Float { logits[Int(id)] / t - logZ }
        if p.beamWidth > 1 {
            let cands = Self.topIDs(logits, 2 * p.beamWidth).map { TokenLogProb($0, logProb($0)) }
            return Sample(token: cands[0].token, logProb: cands[0].logProb, candidates: cands)
        }
        let token: Int32
        if p.temperature == 0 || p.topK == 1 {
            token = logits.withUnsafeBufferPointer { Self.argmax($0) }
        } else {
            token = draw(logits)
        }
        let top = p.topLogProbs > 0 ? Self.topIDs(logits, p.topLogProbs).map { TokenLogProb($0, logProb($0)) } : []
        return Sample(token: token, logProb: logProb(token), topLogProbs: top)
    }

    func applyMasksAndPenalties(_ logits: inout [Float], _ c: SamplingContext) {
        for e in logitEdits(c, row: 0, vocab: logits.count) { logits[Int(e.id)] = e.apply(logits[Int(e.id)]) }
    }

    /// Suppressed ids and bad words (masked), the repetition penalty over the whole history and
    /// the presence / frequency penalties over the generated tokens, as one edit per touched id
    /// (ascending ids). The host applies them to its copy of the row; a device applies the same
    /// edits where the logits are (DeviceTokenSelection).
    public func logitEdits(_ c: SamplingContext, row: Int32, vocab: Int) -> [LogitEdit] {
        let p = parameters
        let penalties = p.repetitionPenalty != 1 || p.presencePenalty != 0 || p.frequencyPenalty != 0
        if c.suppressed.isEmpty && c.badWords.isEmpty && !penalties { return [] }
        var byID: [Int32: LogitEdit] = [:]
        func edit(_ id: Int32, _ change: (inout LogitEdit) -> Void) {
            guard id >= 0 && Int(id) < vocab else { return }
            var e = byID[id] ?? LogitEdit(row: row, id: id)
            change(&e)
            byID[id] = e
        }
        for id in c.suppressed { edit(id) { $0.masked = true } }
        for word in c.badWords where !word.isEmpty {
            let prefix = word.dropLast()
            if c.history.count >= prefix.count && c.history.suffix(prefix.count).elementsEqual(prefix) {
                edit(word.last!) { $0.masked = true }
            }
        }
        if p.repetitionPenalty != 1 {
            for id in Set(c.history) { edit(id) { $0.repetition = p.repetitionPenalty } }
        }
        if p.presencePenalty != 0 || p.frequencyPenalty != 0 {
            var counts: [Int32: Int] = [:]
            for id in c.history.suffix(c.generatedCount) { counts[id, default: 0] += 1 }
            for (id, n) in counts { edit(id) { $0.subtract = p.presencePenalty + p.frequencyPenalty * Float(n) } }
        }
        return byID.values.sorted { $0.id < $1.id }
    }

    private func logSumExp(_ logits: [Float], scale: Float) -> Float {
        let m = (logits.max() ?? 0) * scale
        guard m.isFinite else { return m }
        var s: Double = 0
        for v in logits { s += exp(Double(v * scale - m)) }
        return m + Float(log(s))
    }

    /// temperature → top-k → top-p → min-p, then a draw from what is left.
    private mutating func draw(_ logits: [Float]) -> Int32 {
        let p = parameters
        let invT = Double(1 / p.temperature)
        let maxLogit = Double(logits.max() ?? 0)
        var candidates: [(id: Int32, p: Double)]
        if p.topK > 0 && p.topK < logits.count {
            candidates = Self.topIDs(logits, p.topK).map { ($0, exp((Double(logits[Int($0)]) - maxLogit) * invT)) }
        } else {
            candidates = []
            candidates.reserveCapacity(logits.count)
            for i in 0..<logits.count where logits[i] > -.infinity {
                candidates.append((Int32(i), exp((Double(logits[i]) - maxLogit) * invT)))
            }
        }
        return pick(candidates) ?? logits.withUnsafeBufferPointer { Self.argmax($0) }
    }

    /// A row whose sampling needs only its best logits (`deviceSamplingCount`), drawn from the
    /// `ids` / `values` the device found after this row's `logitEdits` (largest first, ties to the
    /// lower id, at least deviceSamplingCount of them) and the edited row's log-sum-exp at the
    /// request's temperature (1 when greedy). Gives the token, RNG draw, log prob and top log
    /// probs of `sample(_:_:)` on the full row: top-k sampling never looks past the k best, and
    /// top-p without top-k is drawn here only when the candidates hold the whole nucleus (the
    /// row's total mass comes from the log-sum-exp, in float: a nucleus whose edge lies within
    /// float rounding of top_p may end one token apart). nil: the nucleus reaches past the
    /// candidates; nothing was drawn and the caller samples the full row.
    public mutating func sample(candidateIDs ids: ArraySlice<Int32>, values: ArraySlice<Float>, logSumExp: Float) -> Sample? {
        let p = parameters
        let t = p.temperature > 0 ? p.temperature : 1
        var token = ids.first!
        var value = values.first!
        if !(p.temperature == 0 || p.topK == 1) {
            let invT = Double(1 / p.temperature)
            let maxLogit = Double(values.first!)
            let candidates: [(id: Int32, p: Double)]
            var total: Double? = nil
            if p.topK > 0 {
                candidates = zip(ids.prefix(p.topK), values.prefix(p.topK)).map { ($0, exp((Double($1) - maxLogit) * invT)) }
            } else {
                candidates = zip(ids, values).filter { $0.1 > -.infinity }.map { ($0, exp((Double($1) - maxLogit) * invT)) }
                let all = exp(Double(logSumExp) - maxLogit * invT)
                guard p.topP < 1, candidates.reduce(0, { $0 + $1.p }) >= Double(p.topP) * all else { return nil }
                total = all
            }
            if let drawn = pick(candidates, total: total), let j = ids.firstIndex(of: drawn) {
                token = drawn
                value = values[values.startIndex + (j - ids.startIndex)]
            }
        }
        let top = zip(ids.prefix(p.topLogProbs), values.prefix(p.topLogProbs)).map { TokenLogProb($0, $1 / t - logSumExp) }
        return Sample(token: token, logProb: value / t - logSumExp, topLogProbs: top)
    }

    /// How many of a row's best logits the device must find for this request (after its logit
    /// edits), or nil when the sampler needs the whole row on the host (plain temperature
    /// sampling or min-p over the full vocabulary, beams). Top-p without top-k asks for
    /// `nucleusCandidates` and falls back to the full row when its nucleus is larger.
    public static func deviceSamplingCount(_ p: SamplingParameters, vocab: Int) -> Int? {
        guard p.beamWidth == 1 else { return nil }
        let k: Int
        if p.temperature == 0 || p.topK == 1 {
            k = 1
        } else if p.topK > 0 {
            guard p.topK < vocab else { return nil }   // the host takes the whole row then
            k = p.topK
        } else if p.topP < 1 {
            k = nucleusCandidates
        } else {
            return nil
        }
        let count = max(k, p.topLogProbs)
        return count <= min(1024, vocab) ? count : nil
    }

    /// Candidates asked of the device for top-p without top-k.
    public static let nucleusCandidates = 64

    /// top-p → min-p over candidates (id, unnormalised probability), then a draw; nil if none is left.
    /// `total`: the mass that top-p is a fraction of, when the candidates are not the whole row.
    private mutating func pick(_ drawnFrom: [(id: Int32, p: Double)], total: Double? = nil) -> Int32? {
        let p = parameters
        var candidates = drawnFrom
        let total = total ?? candidates.reduce(0) { $0 + $1.p }
        if p.topP < 1 {
            // The nucleus lies within the items above any threshold whose mass reaches topP:
            // lower the threshold until it does, then sort only those.
            let target = Double(p.topP) * total
            let maxP = candidates.reduce(0) { max($0, $1.p) }
            var threshold = maxP / 1024
            var above: [(id: Int32, p: Double)] = []
            while true {
                above = candidates.filter { $0.p >= threshold }
                if above.reduce(0, { $0 + $1.p }) >= target || threshold < 1e-300 { break }
                threshold /= 64
            }
            above.sort { $0.p > $1.p || ($0.p == $1.p && $0.id < $1.id) }
            var cumulative = 0.0, keep = 0
            for c in above {
                cumulative += c.p
                keep += 1
                if cumulative >= target { break }
            }
            candidates = Array(above.prefix(keep))
        }
        if p.minP > 0 {
            let maxP = candidates.reduce(0) { max($0, $1.p) }
            candidates = candidates.filter { $0.p >= Double(p.minP) * maxP }
        }
        guard !candidates.isEmpty else { return nil }
        let mass = candidates.reduce(0) { $0 + $1.p }
        var u = rng.nextUnit() * mass
        for c in candidates {
            u -= c.p
            if u < 0 { return c.id }
        }
        return candidates.last!.id
    }

    /// Ids of the k largest logits, largest first (ties: lower id first).
    static func topIDs(_ logits: [Float], _ k: Int) -> [Int32] {
        TokenSelectionReference.best(logits, count: min(k, logits.count)).map(\.1)
    }
}
