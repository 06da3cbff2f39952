// Sampler: turns one row of logits into a token id. Greedy, temperature, top-k, top-p,
import Foundation
// with a per-request seeded RNG so the same seed gives the same text at any batch shape.

public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Float
    /// 0 means no top-k limit.
    public var topK: Int
    /// 1 means no nucleus limit.
    public var topP: Float
    /// nil: a seed drawn from the system RNG.
    public var seed: UInt64?

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64? = nil) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingParameters()

    /// Throws a message naming the bad field.
    public func validate() throws {
        if !(temperature >= 0) || !temperature.isFinite { throw SamplingError("temperature must be a finite number >= 0, got \(temperature)") }
        if topK < 0 { throw SamplingError("top_k must be >= 0, got \(topK)") }
        if !(topP > 0 && topP <= 1) { throw SamplingError("top_p must be in (0, 1], got \(topP)") }
    }
}

public struct SamplingError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

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

    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        let p = parameters
        if p.temperature == 0 || p.topK == 1 { return Self.argmax(logits) }
        let invT = 1 / p.temperature
        let maxLogit = logits.max() ?? 0
        // Candidates: the top k, or (for top-p / plain sampling) everything, by probability.
        var candidates: [(id: Int32, p: Double)]
        if p.topK > 0 && p.topK < logits.count {
            candidates = topK(logits, p.topK).map { ($0, exp(Double(logits[Int($0)] - maxLogit) * Double(invT))) }
        } else {
            candidates = []
            candidates.reserveCapacity(logits.count)
            for i in 0..<logits.count { candidates.append((Int32(i), exp(Double(logits[i] - maxLogit) * Double(invT)))) }
        }
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
            var cumulative = 0.0
            var keep = 0
            for c in above {
                cumulative += c.p
                keep += 1
                if cumulative >= target { break }
            }
            candidates = Array(above.prefix(keep))
        }
        let mass = candidates.reduce(0) { $0 + $1.p }
        var u = rng.nextUnit() * mass
        for c in candidates {
            u -= c.p
            if u < 0 { return c.id }
        }
        return candidates.last!.id
    }

    /// Ids of the k largest logits, largest first (ties: lower id first).
    func topK(_ logits: UnsafeBufferPointer<Float>, _ k: Int) -> [Int32] {
        var heap: [(Float, Int32)] = []   // min-heap of the best k so far, kept sorted small k
        heap.reserveCapacity(k + 1)
        for i in 0..<logits.count {
            let v = logits[i]
            if heap.count < k {
                heap.append((v, Int32(i)))
                if heap.count == k { heap.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) } }
            } else if v > heap[k - 1].0 {
                // insert keeping descending order
                var j = k - 1
                while j > 0 && heap[j - 1].0 < v { heap[j] = heap[j - 1]; j -= 1 }
                heap[j] = (v, Int32(i))
            }
        }
        if heap.count < k { heap.sort { $0.0 > $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) } }
        return heap.map(\.1)
    }
}
