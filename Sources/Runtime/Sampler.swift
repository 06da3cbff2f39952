// Sampler: one row of logits → the next token, for one sequence. Applies, in order:
// suppressed ids and bad words, repetition / presence / frequency penalties, then greedy or
// temperature → top-k → top-p → min-p sampling with the request's own seeded RNG (so the same
// seed gives the same text at any batch composition). Also log probs and beam candidates.
import Engine
import Foundation

/// xoshiro256** seeded through SplitMix64: small, fast, and reproducible across platforms.
public struct Xoshiro256: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
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
        let p = parameters
        for id in c.suppressed where Int(id) < logits.count { logits[Int(id)] = -.infinity }
        for word in c.badWords where !word.isEmpty {
            let prefix = word.dropLast()
            if c.history.count >= prefix.count && c.history.suffix(prefix.count).elementsEqual(prefix),
               Int(word.last!) < logits.count, word.last! >= 0 {
                logits[Int(word.last!)] = -.infinity
            }
        }
        if p.repetitionPenalty != 1 {
            for id in Set(c.history) where id >= 0 && Int(id) < logits.count {
                let v = logits[Int(id)]
                logits[Int(id)] = v > 0 ? v / p.repetitionPenalty : v * p.repetitionPenalty
            }
        }
        if p.presencePenalty != 0 || p.frequencyPenalty != 0 {
            var counts: [Int32: Int] = [:]
            for id in c.history.suffix(c.generatedCount) { counts[id, default: 0] += 1 }
            for (id, n) in counts where id >= 0 && Int(id) < logits.count {
                logits[Int(id)] -= p.presencePenalty + p.frequencyPenalty * Float(n)
            }
        }
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
    /// `ids` / `values` the device found (largest first, ties to the lower id, at least
    /// deviceSamplingCount of them) and the row's log-sum-exp at the request's temperature
    /// (1 when greedy). Gives exactly the token, RNG draw and log prob of `sample(_:_:)` on the
    /// full row, since top-k sampling never looks past the k best.
    public mutating func sample(candidateIDs ids: ArraySlice<Int32>, values: ArraySlice<Float>, logSumExp: Float) -> Sample {
        let p = parameters
        let t = p.temperature > 0 ? p.temperature : 1
        var token = ids.first!
        var value = values.first!
        if !(p.temperature == 0 || p.topK == 1) {
            let invT = Double(1 / p.temperature)
            let maxLogit = Double(values.first!)
            let candidates = zip(ids.prefix(p.topK), values.prefix(p.topK)).map { ($0, exp((Double($1) - maxLogit) * invT)) }
            if let drawn = pick(candidates), let j = ids.firstIndex(of: drawn) {
                token = drawn
                value = values[values.startIndex + (j - ids.startIndex)]
            }
        }
        return Sample(token: token, logProb: value / t - logSumExp)
    }

    /// How many of a row's best logits the device must find for this request, or nil when the
    /// sampler needs the whole row (penalties, masks, top-p or min-p over the full vocabulary,
    /// log-prob lists, beams).
    public static func deviceSamplingCount(_ p: SamplingParameters, hasMasks: Bool) -> Int? {
        guard p.beamWidth == 1, p.topLogProbs == 0, !hasMasks, p.repetitionPenalty == 1, p.presencePenalty == 0,
              p.frequencyPenalty == 0 else { return nil }
        if p.temperature == 0 || p.topK == 1 { return 1 }
        return p.topK >= 1 && p.topK <= 1024 ? p.topK : nil
    }

    /// top-p → min-p over candidates (id, unnormalised probability), then a draw; nil if none is left.
    private mutating func pick(_ drawnFrom: [(id: Int32, p: Double)]) -> Int32? {
        let p = parameters
        var candidates = drawnFrom
        let total = candidates.reduce(0) { $0 + $1.p }
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
        let k = min(k, logits.count)
        var best: [(Float, Int32)] = []
        best.reserveCapacity(k + 1)
        for i in 0..<logits.count {
            let v = logits[i]
            if best.count == k && !(v > best[k - 1].0) { continue }
            var j = best.count
            if best.count < k { best.append((v, Int32(i))) } else { j = k - 1 }
            while j > 0 && best[j - 1].0 < v { best[j] = best[j - 1]; j -= 1 }
            best[j] = (v, Int32(i))
        }
        return best.map(\.1)
    }
}
