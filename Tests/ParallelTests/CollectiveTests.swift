// The shared-memory collective on real threads, the shard arithmetic, and micro-batch splits.
import Checkpoints
import Compute
import CPUCompute
import Foundation
import Models
@testable import Parallel
import Testing

/// Runs body(rank) on `count` threads at once and returns the results in rank order.
func onRanks<T>(_ count: Int, _ body: @escaping (Int) -> T) -> [T] {
    let threads = RankThreads(count: count, name: "test")
    return try! threads.run(body)
}

@Suite struct CollectiveTests {
    @Test(arguments: [1, 2, 3, 4])
    func allReduceSumsInRankOrderOnEveryRank(size: Int) {
        let backends = (0..<size).map { _ in CPUBackend() as ComputeBackend }
        let collectives = HostCollectiveGroup.make(backends)
        // Values whose float sum depends on the order: rank r holds 10^(r·4) · (1 + row·0.1).
        let results = onRanks(size) { r -> [[Float]] in
            let b = backends[r], c = collectives[r]
            var seen: [[Float]] = []
            for call in 0..<5 {   // several calls in a row: the mailboxes alternate
                let values = (0..<6).map { Float(pow(10, Double(r * 4))) * (1 + Float($0) * 0.1) + Float(call) }
                let x = try! b.upload(.float32(values, shape: [2, 3]))
                let act = b.makeActivation([2, 3])
                b.gatherRows(x, rows: [0, 1], into: act)
                c.allReduceSum(act)
                seen.append(b.download(act))
            }
            return seen
        }
        for call in 0..<5 {
            let want = (0..<6).map { i in
                (0..<size).reduce(Float(0)) { acc, r in acc + (Float(pow(10, Double(r * 4))) * (1 + Float(i) * 0.1) + Float(call)) }
            }
            for r in 0..<size {
                #expect(results[r][call] == results[0][call], "rank \(r) differs from rank 0")   // bit-identical
                #expect(results[r][call] == want, "call \(call)")
            }
        }
    }

    @Test func allGatherJoinsAlongTheLastDimension() {
        let backends = (0..<3).map { _ in CPUBackend() as ComputeBackend }
        let collectives = HostCollectiveGroup.make(backends)
        let results = onRanks(3) { r -> [Float] in
            let b = backends[r]
            let x = b.makeActivation([2, 2])
            b.gatherRows(try! b.upload(.float32([10 * Float(r), 10 * Float(r) + 1, 100 + 10 * Float(r), 101 + 10 * Float(r)], shape: [2, 2])),
                         rows: [0, 1], into: x)
            let out = b.makeActivation([2, 6])
            collectives[r].allGather(x, into: out)
            collectives[r].barrier()
            return b.download(out)
        }
        let want: [Float] = [0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121]
        #expect(results.allSatisfy { $0 == want })
    }

    @Test func shardsCoverTheModel() {
        let c = TransformerConfig(vocabularySize: 509, hiddenSize: 64, intermediateSize: 128, layerCount: 5,
                                  headCount: 8, kvHeadCount: 2, maxPositions: 64)
        // 4 ranks, 2 KV heads: ranks 0, 1 read KV head 0; ranks 2, 3 KV head 1.
        let four = (0..<4).map { TensorShard(rank: $0, size: 4, config: c) }
        #expect(four.map(\.queryHeads) == [0..<2, 2..<4, 4..<6, 6..<8])
        #expect(four.map(\.kvHeads) == [0..<1, 0..<1, 1..<2, 1..<2])
        #expect(four.map(\.features) == [0..<32, 32..<64, 64..<96, 96..<128])
        #expect(four.map(\.vocabulary) == [0..<128, 128..<256, 256..<384, 384..<509])
        #expect(four.allSatisfy { $0.paddedVocabulary == 128 })
        let two = (0..<2).map { TensorShard(rank: $0, size: 2, config: c) }
        #expect(two.map(\.kvHeads) == [0..<1, 1..<2])
        let p = ParallelConfig(tensorParallelSize: 1, pipelineParallelSize: 3)
        #expect((0..<3).map { p.layers(ofStage: $0, layerCount: 5) } == [0..<1, 1..<3, 3..<5])
    }

    @Test func microBatchesSplitBySequence() {
        let lengths = [5, 1, 1, 7, 2]
        var seqs: [AttentionSequence] = [], begin = 0
        for (i, n) in lengths.enumerated() {
            seqs.append(AttentionSequence(tokenBegin: begin, tokenCount: n, contextBefore: i, blockTable: [Int32(i)]))
            begin += n
        }
        let batch = ForwardBatch(tokens: (0..<Int32(begin)).map { $0 }, positions: (0..<Int32(begin)).map { $0 },
                                 sequences: seqs, logitRows: [4, 5, 6, 13, 15, 0])
        for count in 1...6 {
            let parts = MicroBatch.split(batch, into: count)
            #expect(parts.count == min(count, lengths.count))
            #expect(parts.flatMap(\.batch.tokens) == batch.tokens)
            #expect(parts.flatMap(\.batch.sequences).map(\.blockTable) == seqs.map(\.blockTable))
            #expect(parts.allSatisfy { $0.batch.sequences.first?.tokenBegin == 0 })
            // Every logit row lands once, and points at the same token.
            #expect(parts.flatMap(\.logitRowIndices).sorted() == Array(batch.logitRows.indices))
            for p in parts {
                for (local, global) in zip(p.batch.logitRows, p.logitRowIndices) {
                    #expect(p.batch.tokens[local] == batch.tokens[batch.logitRows[global]])
                }
            }
        }
        #expect(MicroBatch.split(batch, into: 2).map { $0.batch.tokens.count } == [7, 9])
    }
}
