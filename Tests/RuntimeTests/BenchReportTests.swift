// `petrel bench --json / --chart / --compare`: the report's JSON round trip, the errors that name
// the file and field, and the chart's series.
import Testing

@testable import Runtime

@Suite struct BenchReportTests {
    static let report = BenchReport(label: "petrel <int8_wo>", points: [
        BenchPoint(batch: 1, input: 128, output: 20, latencyMs: 81.25, tokensPerSecond: 246.2, ttftMs: 6.5, peakKVBlocks: 5, ceilingMs: 70),
        BenchPoint(batch: 8, input: 128, output: 20, latencyMs: 95, tokensPerSecond: 1684.2, ttftMs: 12, peakKVBlocks: 40),
        BenchPoint(batch: 1, input: 512, output: 20, latencyMs: 90, tokensPerSecond: 222.2, ttftMs: 20, peakKVBlocks: 18),
    ])

    @Test func jsonRoundTrips() throws {
        let back = try BenchReport(json: Array(Self.report.json().utf8), source: "a.json")
        #expect(back == Self.report)
    }

    @Test func aPeersMinimalPointsRead() throws {
        let peer = try BenchReport(json: Array(#"{"label": "vLLM 0.26", "points": [{"batch": 4, "input": 60, "output": 20, "tokens_per_s": 900}]}"#.utf8),
                                   source: "vllm.json")
        #expect(peer.points.count == 1 && peer.points[0].batch == 4 && peer.points[0].tokensPerSecond == 900 && peer.points[0].ceilingMs == nil)
    }

    @Test func errorsNameTheFileAndField() {
        #expect(throws: BenchReportError(description: "p.json: points[0].tokens_per_s is missing")) {
            try BenchReport(json: Array(#"{"label": "x", "points": [{"batch": 1, "input": 1, "output": 1}]}"#.utf8), source: "p.json")
        }
        #expect(throws: BenchReportError(description: "p.json: points[1].batch must be a positive integer")) {
            try BenchReport(json: Array(#"{"label": "x", "points": [{"batch": 1, "input": 1, "output": 1, "tokens_per_s": 2}, {"batch": 0.5, "input": 1, "output": 1, "tokens_per_s": 2}]}"#.utf8),
                            source: "p.json")
        }
        #expect(throws: BenchReportError(description: "p.json: \"label\" must be a string")) {
            try BenchReport(json: Array(#"{"points": []}"#.utf8), source: "p.json")
        }
    }

    @Test func chartHasOneLinePerRunAndPair() {
        let peer = BenchReport(label: "vLLM", points: [BenchPoint(batch: 1, input: 128, output: 20, latencyMs: 100, tokensPerSecond: 200,
                                                                  ttftMs: 8, peakKVBlocks: 0)])
        let svg = BenchReport.chartSVG([Self.report, peer], title: "llama-2-7b on H100")
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 3)   // ours 128/20 and 512/20, the peer's 128/20
        #expect(svg.contains("stroke-dasharray=\"8 4\""))                   // the second run dashed
        #expect(svg.contains("petrel &lt;int8_wo&gt; 128/20") && svg.contains("vLLM 128/20"))
        #expect(svg.contains(">llama-2-7b on H100<"))
        // The y axis tops out at a round number above the largest value (1684.2 x 1.05 -> 2000).
        #expect(svg.contains(">2000<"))
    }

    @Test func niceCeilings() {
        #expect(niceCeiling(1768) == 2000)
        #expect(niceCeiling(0.3) == 0.5)
        #expect(niceCeiling(100) == 100)
        #expect(niceCeiling(101) == 200)
    }
}
