// Perplexity (llama-perplexity's method) on the tiny Llama against the same computation over
// transformers' logits (Tests/Fixtures/tiny-llama-perplexity.json, scripts/make_fixtures.py).
import Foundation
import Runtime
import TestFixtures
import Testing

/// One case of the fixture: a context, with or without BOS, and the figures to match.
struct PerplexityCase: Sendable {
    struct Chunk: Sendable { var count: Int, nllSum: Double, runningPPL: Double }
    var context: Int, bos: Int32?, chunks: [Chunk], count: Int, meanNLL: Double, ppl: Double, pplError: Double

    init(_ c: [String: Any]) {
        func number(_ d: [String: Any], _ key: String) -> NSNumber { d[key] as! NSNumber }
        context = number(c, "context").intValue
        bos = (c["bos"] as? NSNumber)?.int32Value
        chunks = (c["chunks"] as! [[String: Any]]).map {
            Chunk(count: number($0, "count").intValue, nllSum: number($0, "nll_sum").doubleValue,
                  runningPPL: number($0, "running_ppl").doubleValue)
        }
        count = number(c, "count").intValue
        meanNLL = number(c, "mean_nll").doubleValue
        ppl = number(c, "ppl").doubleValue
        pplError = number(c, "ppl_error").doubleValue
    }
}

@Suite struct PerplexityTests {
    static let tokens = (try! Fixtures.json("tiny-llama-perplexity.json")["tokens"] as! [NSNumber]).map(\.int32Value)
    static let cases = (try! Fixtures.json("tiny-llama-perplexity.json")["cases"] as! [[String: Any]]).map(PerplexityCase.init)

    static func relativeError(_ got: Double, _ want: Double) -> Double { abs(got - want) / abs(want) }

    @Test(arguments: ["tiny-llama", "tiny-llama-f32.gguf"])
    func matchesTransformers(file: String) throws {
        let model = try loadModel(Fixtures.path(file))
        for c in Self.cases {
            var seen: [PerplexityChunk] = []
            let report = try Perplexity.evaluate(model, tokens: Self.tokens, context: c.context, bosID: c.bos) { seen.append($0) }
            #expect(report.chunks == c.chunks.count && seen.map(\.index) == Array(1...c.chunks.count))
            #expect(report.total.count == c.count && report.evaluatedTokens == c.chunks.count * c.context)
            for (got, want) in zip(seen, c.chunks) {
                #expect(got.chunk.count == want.count)
                let sum = Self.relativeError(got.chunk.sum, want.nllSum)
                let running = Self.relativeError(got.running.perplexity, want.runningPPL)
                #expect(sum < 1e-4 && running < 1e-4, "\(file) context \(c.context) chunk \(got.index): NLL sum \(sum), running PPL \(running)")
            }
            let mean = Self.relativeError(report.total.meanNLL, c.meanNLL)
            let ppl = Self.relativeError(report.total.perplexity, c.ppl)
            let err = Self.relativeError(report.total.perplexityError!, c.pplError)
            #expect(mean < 1e-4 && ppl < 1e-4 && err < 1e-3, "\(file) context \(c.context): mean NLL \(mean), PPL \(ppl), error \(err)")
        }
    }

    /// --max-chunks: the first chunks only, the same running figures.
    @Test func maxChunksStopsEarly() throws {
        let model = try loadModel(Fixtures.path("tiny-llama"))
        let c = Self.cases[0]
        let report = try Perplexity.evaluate(model, tokens: Self.tokens, context: c.context, maxChunks: 2, bosID: c.bos)
        #expect(report.chunks == 2)
        #expect(Self.relativeError(report.total.perplexity, c.chunks[1].runningPPL) < 1e-4)
    }

    @Test func badInput() throws {
        let model = try loadModel(Fixtures.path("tiny-llama"))
        #expect(throws: PerplexityError.tooFewTokens(count: 63, context: 64)) {
            try Perplexity.evaluate(model, tokens: Array(Self.tokens.prefix(63)), context: 64)
        }
        #expect(throws: PerplexityError.contextTooLarge(context: 512, maxPositions: 256)) {
            try Perplexity.evaluate(model, tokens: Self.tokens + Self.tokens + Self.tokens, context: 512)
        }
        #expect(throws: PerplexityError.tokenOutOfRange(id: 512, vocabularySize: 512)) {
            try Perplexity.evaluate(model, tokens: [512] + Self.tokens, context: 64)
        }
        #expect(throws: PerplexityError.contextTooSmall(3)) { try Perplexity.evaluate(model, tokens: Self.tokens, context: 3) }
    }

    /// The scored rows and the error estimate, by hand: NLLs 1, 2, 3 → mean 2, E[x²] 14/3,
    /// std error sqrt((14/3 − 4) / 2) = sqrt(1/3), times e².
    @Test func accumulatorAndRows() {
        var a = NLLAccumulator()
        #expect(a.perplexityError == nil)
        for x in [1.0, 2, 3] { a.add(x) }
        #expect(abs(a.perplexity - exp(2)) < 1e-12)
        #expect(abs(a.perplexityError! - (1.0 / 3).squareRoot() * exp(2)) < 1e-9)
        #expect(Perplexity.scoredRows(context: 512) == 256..<511)
        #expect(Perplexity.scoredRows(context: 33) == 16..<32)
        #expect(Perplexity.chunkCount(tokenCount: 1100, context: 512) == 2)
        #expect(Perplexity.chunkCount(tokenCount: 1100, context: 512, maxChunks: 1) == 1)
        let row: [Float] = [0, 0, log(2)]   // softmax 1/4, 1/4, 1/2
        row.withUnsafeBufferPointer {
            #expect(abs(Perplexity.negativeLogLikelihood($0, target: 2) - log(2)) < 1e-6)
            #expect(abs(Perplexity.negativeLogLikelihood($0, target: 0) - log(4)) < 1e-6)
        }
    }
}
