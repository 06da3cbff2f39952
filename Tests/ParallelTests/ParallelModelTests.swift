// The sharded model against the unsharded one, on simulated ranks (one CPU backend and thread
// each): tensor parallel, pipeline parallel and both, on the tiny fixtures and random shapes.
// Tolerance: 1e-5 relative (row-wise L2) on logits — the sharded sums add the same products in a
// different order, so they differ from the unsharded model by float32 rounding only.
import Checkpoints
import Compute
import CPUCompute
import Dispatch
import Foundation
import Engine
import Models
@testable import Parallel
import Runtime
import Synchronization
import TestFixtures
import Testing

let tolerance: Float = 1e-5

func checkpoint(_ name: String) throws -> (TransformerConfig, LlamaWeights) {
    let c = try LoadedCheckpoint.open(Fixtures.path(name))
    return (c.config, c.weights)
}

func unsharded(_ c: TransformerConfig, _ w: LlamaWeights) throws -> LlamaModel {
    try LlamaModel(config: c, weights: w, backend: CPUBackend(exactQuantizedMath: true))
}

func sharded(_ c: TransformerConfig, _ w: LlamaWeights, tp: Int = 1, pp: Int = 1, microBatchCount: Int? = nil,
             observer: PipelineObserver? = nil) throws -> ParallelLlamaModel {
    try ParallelLlamaModel(config: c, weights: w, parallel: ParallelConfig(tensorParallelSize: tp, pipelineParallelSize: pp),
                           makeBackend: { _ in CPUBackend(exactQuantizedMath: true) }, microBatchCount: microBatchCount,
                           observer: observer)
}

/// A random-weight shape with more layers and a vocabulary that does not divide by 4.
func randomShape(layers: Int = 4, heads: Int = 8, kvHeads: Int = 2, dtype: DType = .f32, bias: Bool = false) -> (TransformerConfig, LlamaWeights) {
    var c = TransformerConfig(vocabularySize: 509, hiddenSize: 128, intermediateSize: 256, layerCount: layers,
                              headCount: heads, kvHeadCount: kvHeads, maxPositions: 512)
    c.attentionBias = bias
    var w = LlamaWeights.random(config: c, dtype: dtype, seed: 7)
    if bias {
        // Non-zero biases, different per row, so a misplaced bias row shows.
        for i in w.layers.indices {
            let n = w.layers[i].qkvBias!.elementCount
            w.layers[i].qkvBias = .float32((0..<n).map { Float(($0 * 37) % 101) * 0.01 - 0.5 }, shape: [n])
        }
    }
    return (c, w)
}

/// Every position's logits for `ids`, run in the given prefill chunks through a fresh cache.
func allLogits(_ model: any CausalLM, _ ids: [Int32], chunks: [Int]? = nil) throws -> [[Float]] {
    let blockSize = 4
    let blocks = (ids.count + blockSize - 1) / blockSize
    let cache = try model.makeKVCache(blockCount: blocks + 3, blockSize: blockSize)
    let table = (0..<blocks).map { Int32(blocks - 1 - $0 + 3) }
    var out: [[Float]] = []
    var done = 0
    let v = model.config.vocabularySize
    for size in chunks ?? [ids.count] {
        let batch = ForwardBatch(tokens: Array(ids[done..<done + size]), positions: (0..<size).map { Int32(done + $0) },
                                 sequences: [AttentionSequence(tokenBegin: 0, tokenCount: size, contextBefore: done, blockTable: table)],
                                 logitRows: Array(0..<size))
        let flat = model.logits(batch, cache: cache)
        for r in 0..<size { out.append(Array(flat[r * v..<(r + 1) * v])) }
        done += size
    }
    return out
}

/// The greedy continuation of `prompt`, `count` tokens, from one request alone on the Engine.
func greedy(_ model: any CausalLM, _ prompt: [Int32], _ count: Int) async throws -> [Int32] {
    var out: [Int32] = []
    _ = try await ModelRunner.generate(model, prompt: prompt, maxTokens: count, blockSize: 4) { out += $0 }
    return out
}

func prompt(_ length: Int, vocab: Int, salt: Int = 0) -> [Int32] {
    [1] + (0..<(length - 1)).map { Int32(3 + ($0 * 29 + salt * 11) % (vocab - 3)) }
}

@Suite struct ParallelModelTests {
    static let tiny = try! checkpoint("tiny-llama")
    static let reference = try! Fixtures.logitCases("tiny-llama-logits.json")

    /// TP 2 gives each rank one of the two KV heads; TP 4 replicates them (2 KV heads, 4 ranks).
    @Test(arguments: [2, 4])
    func tensorParallelMatchesUnsharded(tp: Int) throws {
        let (c, w) = Self.tiny
        let base = try unsharded(c, w), model = try sharded(c, w, tp: tp)
        for p in Self.reference {
            let want = try allLogits(base, p.ids)
            let err = maxRowRelativeError(try allLogits(model, p.ids), want)
            #expect(err < tolerance, "TP \(tp), \(p.ids.count) tokens: relative error \(err)")
            // And against transformers, like the unsharded model's own test.
            #expect(maxRowRelativeError(try allLogits(model, p.ids), p.logits) < 1e-4)
        }
    }

    @Test func pipelineParallelMatchesUnsharded() throws {
        let (c, w) = Self.tiny
        let base = try unsharded(c, w), model = try sharded(c, w, pp: 2)
        for p in Self.reference {
            let chunks = p.ids.count > 3 ? [3, p.ids.count - 3] : nil
            let err = maxRowRelativeError(try allLogits(model, p.ids, chunks: chunks), try allLogits(base, p.ids))
            #expect(err < tolerance, "PP 2: relative error \(err)")
        }
    }

    /// Four layers on 2 and 4 stages, 2 × 2 and 4 × 1 ranks, a vocabulary of 509 (padded
    /// slices), chunked prefill.
    @Test(arguments: [(1, 2), (1, 4), (2, 2), (4, 1), (2, 1)])
    func randomShapeMatchesUnsharded(tp: Int, pp: Int) throws {
        let (c, w) = randomShape()
        let ids = prompt(23, vocab: c.vocabularySize)
        let want = try allLogits(try unsharded(c, w), ids)
        let err = maxRowRelativeError(try allLogits(try sharded(c, w, tp: tp, pp: pp), ids, chunks: [9, 1, 13]), want)
        #expect(err < tolerance, "TP \(tp) × PP \(pp): relative error \(err)")
    }

    /// One KV head for four query heads: with 2 and 4 ranks every rank holds a copy of it.
    @Test(arguments: [2, 4])
    func multiQueryAttentionReplicatesKVHeads(tp: Int) throws {
        let (c, w) = randomShape(layers: 2, heads: 4, kvHeads: 1)
        let model = try sharded(c, w, tp: tp)
        #expect(model.kvCacheLayout(blockCount: 1, blockSize: 4).kvHeadCount == tp)   // one copy per rank
        let ids = prompt(17, vocab: c.vocabularySize)
        let err = maxRowRelativeError(try allLogits(model, ids), try allLogits(try unsharded(c, w), ids))
        #expect(err < tolerance, "TP \(tp): relative error \(err)")
    }

    /// GPTQ act-order: the gathered inputs of qkv and gate/up stay whole on every rank, down's act
    /// order (absorbed into gate/up rows) is cut alike on both sides, and the output projection's
    /// columns go back to head order before they are cut. Matrices as float32 until the CPU runs
    /// weight-only matrices natively.
    @Test(arguments: [(2, 1), (4, 1), (2, 2)])
    func gptqActOrderMatchesUnsharded(tp: Int, pp: Int) throws {
        let (c, w0) = try checkpoint("quantized/gptq-4bit-actorder")
        var w = w0
        #expect(w.layers.allSatisfy { $0.qkvInputOrder != nil && $0.outputInputOrder != nil && $0.gateUpInputOrder != nil })
        for i in w.layers.indices {
            w.layers[i].qkv = w.layers[i].qkv.toFloat32()
            w.layers[i].output = w.layers[i].output.toFloat32()
            w.layers[i].gateUp = w.layers[i].gateUp.toFloat32()
            w.layers[i].down = w.layers[i].down.toFloat32()
        }
        let ids = prompt(13, vocab: c.vocabularySize)
        let want = try allLogits(try unsharded(c, w), ids)
        let err = maxRowRelativeError(try allLogits(try sharded(c, w, tp: tp, pp: pp), ids, chunks: [6, 7]), want)
        #expect(err < tolerance, "TP \(tp) × PP \(pp): relative error \(err)")
    }

    /// Qwen2: Q/K/V biases split with their rows; tied embeddings split by vocabulary twice.
    @Test(arguments: [(2, 1), (4, 1), (2, 2)])
    func qwen2BiasMatchesUnsharded(tp: Int, pp: Int) throws {
        let (c, w) = try checkpoint("tiny-qwen2")
        #expect(c.attentionBias && c.tieEmbeddings)
        let base = try unsharded(c, w), model = try sharded(c, w, tp: tp, pp: pp)
        for p in try Fixtures.logitCases("tiny-qwen2-logits.json") {
            let err = maxRowRelativeError(try allLogits(model, p.ids), try allLogits(base, p.ids))
            #expect(err < tolerance, "TP \(tp) × PP \(pp): relative error \(err)")
        }
        // Random non-zero biases on a GQA shape too.
        let (rc, rw) = randomShape(layers: 2, bias: true)
        let ids = prompt(11, vocab: rc.vocabularySize)
        let err = maxRowRelativeError(try allLogits(try sharded(rc, rw, tp: tp, pp: pp), ids), try allLogits(try unsharded(rc, rw), ids))
        #expect(err < tolerance, "random bias, TP \(tp) × PP \(pp): relative error \(err)")
    }

    /// Q8_0 weights (exact path): the output projection's 16-column slices cut Q8_0 blocks, so
    /// those go to float32 at load; the rest stay quantized.
    @Test(arguments: [2, 4])
    func quantizedWeightsShard(tp: Int) throws {
        let (c, w) = randomShape(layers: 2, heads: 8, kvHeads: 4, dtype: .q8_0)
        let ids = prompt(9, vocab: c.vocabularySize)
        let err = maxRowRelativeError(try allLogits(try sharded(c, w, tp: tp), ids), try allLogits(try unsharded(c, w), ids))
        #expect(err < tolerance, "Q8_0, TP \(tp): relative error \(err)")
    }

    @Test(arguments: [(2, 1), (4, 1), (1, 2), (2, 2)])
    func greedyIdsEqualUnsharded(tp: Int, pp: Int) async throws {
        let (c, w) = Self.tiny
        let base = try unsharded(c, w), model = try sharded(c, w, tp: tp, pp: pp)
        for p in Self.reference {
            let want = try await greedy(base, p.ids, 20)
            #expect(try await greedy(model, p.ids, 20) == want, "TP \(tp) × PP \(pp)")
        }
    }

    /// Three sequences in one ragged batch: prefills of different lengths, then a step mixing
    /// decodes with a prefill chunk, then pure decodes; every logit row equals the unsharded model's.
    @Test(arguments: [(2, 1), (4, 1), (1, 2), (2, 2)])
    func raggedBatchWithPrefillAndDecode(tp: Int, pp: Int) throws {
        let (c, w) = Self.tiny
        let base = try unsharded(c, w), model = try sharded(c, w, tp: tp, pp: pp)
        let blockSize = 4
        let baseCache = try base.makeKVCache(blockCount: 40, blockSize: blockSize)
        let cache = try model.makeKVCache(blockCount: 40, blockSize: blockSize)
        let prompts = [prompt(13, vocab: 512, salt: 1), prompt(5, vocab: 512, salt: 2), prompt(21, vocab: 512, salt: 3)]
        let tables: [[Int32]] = (0..<3).map { s in (0..<10).map { Int32(s * 10 + 9 - $0) } }
        var context = [0, 0, 0]
        // (sequence, tokens) per step; sequence 2 prefills in two chunks.
        let steps: [[(Int, [Int32])]] = [
            [(0, prompts[0]), (1, prompts[1]), (2, Array(prompts[2].prefix(8)))],
            [(0, [7]), (2, Array(prompts[2].dropFirst(8))), (1, [9])],
            [(1, [11]), (0, [12]), (2, [13])],
            [(2, [14]), (0, [15])],
        ]
        for (n, step) in steps.enumerated() {
            var tokens: [Int32] = [], positions: [Int32] = [], seqs: [AttentionSequence] = [], rows: [Int] = []
            for (s, ids) in step {
                seqs.append(AttentionSequence(tokenBegin: tokens.count, tokenCount: ids.count, contextBefore: context[s], blockTable: tables[s]))
                positions += (0..<ids.count).map { Int32(context[s] + $0) }
                tokens += ids
                rows += [tokens.count - 1, tokens.count - ids.count]   // last and first row of each
                context[s] += ids.count
            }
            let batch = ForwardBatch(tokens: tokens, positions: positions, sequences: seqs, logitRows: rows)
            let want = base.logits(batch, cache: baseCache), got = model.logits(batch, cache: cache)
            let v = c.vocabularySize
            let err = maxRowRelativeError((0..<rows.count).map { Array(got[$0 * v..<($0 + 1) * v]) },
                                          (0..<rows.count).map { Array(want[$0 * v..<($0 + 1) * v]) })
            #expect(err < tolerance, "TP \(tp) × PP \(pp), step \(n): relative error \(err)")
        }
    }

    /// Stages overlap: stage 1 runs micro-batch k only after stage 0 finished it, and stage 0
    /// starts micro-batch k + 1 while stage 1 is still on k — stage 1 here does not begin
    /// micro-batch 0 until stage 0 has begun micro-batch 1 (a sequential schedule would never
    /// get there: the wait times out and the test fails).
    @Test func pipelineStagesOverlap() throws {
        let (c, w) = randomShape(layers: 4)
        let stage0OnSecond = DispatchSemaphore(value: 0)
        let overlapped = Mutex(false)
        let schedule = Mutex<[PipelineEvent]>([])
        let model = try sharded(c, w, pp: 2, microBatchCount: 4) { event in
            schedule.withLock { $0.append(event) }
            guard event.kind == .start else { return }
            if event.stage == 0 && event.microBatch == 1 { stage0OnSecond.signal() }
            if event.stage == 1 && event.microBatch == 0 {
                let met = stage0OnSecond.wait(timeout: .now() + 20) == .success
                overlapped.withLock { $0 = met }
            }
        }
        let cache = try model.makeKVCache(blockCount: 64, blockSize: 4)
        var tokens: [Int32] = [], positions: [Int32] = [], seqs: [AttentionSequence] = [], rows: [Int] = []
        for s in 0..<4 {
            let ids = prompt(24, vocab: c.vocabularySize, salt: s)
            seqs.append(AttentionSequence(tokenBegin: tokens.count, tokenCount: ids.count, contextBefore: 0,
                                          blockTable: (0..<6).map { Int32(s * 6 + $0) }))
            positions += (0..<ids.count).map(Int32.init)
            tokens += ids
            rows.append(tokens.count - 1)
        }
        let batch = ForwardBatch(tokens: tokens, positions: positions, sequences: seqs, logitRows: rows)
        let got = model.logits(batch, cache: cache)
        #expect(overlapped.withLock { $0 }, "stage 0 never started micro-batch 1 while stage 1 waited on micro-batch 0")
        let events = schedule.withLock { $0 }
        func at(_ stage: Int, _ k: Int, _ kind: PipelineEvent.Kind) -> Int {
            events.firstIndex(of: PipelineEvent(stage: stage, microBatch: k, kind: kind))!
        }
        #expect(events.count == 16)
        for k in 0..<4 { #expect(at(0, k, .end) < at(1, k, .start)) }
        // And the micro-batched logits are the unsharded model's.
        let base = try unsharded(c, w)
        let want = base.logits(batch, cache: try base.makeKVCache(blockCount: 64, blockSize: 4))
        let v = c.vocabularySize
        #expect(maxRowRelativeError((0..<4).map { Array(got[$0 * v..<($0 + 1) * v]) }, (0..<4).map { Array(want[$0 * v..<($0 + 1) * v]) }) < tolerance)
    }

    @Test func refusesShapesThatDoNotDivide() throws {
        let (c, w) = Self.tiny
        #expect(throws: ParallelError.self) { try sharded(c, w, tp: 3) }     // 4 heads
        #expect(throws: ParallelError.self) { try sharded(c, w, pp: 3) }     // 2 layers
        do { _ = try sharded(c, w, tp: 8) } catch { #expect("\(error)".contains("4 attention heads")) }
    }
}

@Suite struct ParallelEngineTests {
    /// The Engine over ModelRunner with TP = 2 (and TP 2 × PP 2) gives the same greedy tokens
    /// as TP = 1 for 8 concurrent requests.
    @Test(arguments: [(2, 1), (2, 2)])
    func engineTokensEqualSingleRank(tp: Int, pp: Int) async throws {
        let (c, w) = ParallelModelTests.tiny
        let prompts = (0..<8).map { prompt(3 + $0 * 5 % 17, vocab: c.vocabularySize, salt: $0) }
        let single = try await runEngine(try unsharded(c, w), prompts, maxTokens: 16)
        let parallel = try await runEngine(try sharded(c, w, tp: tp, pp: pp), prompts, maxTokens: 16)
        #expect(parallel == single)
        #expect(single.allSatisfy { $0.count == 16 })
    }

    /// ModelBundle builds the sharded model from the checkpoint it opens (what `petrel generate
    /// --tensor-parallel-size` does).
    @Test func bundleBuildsShardedModel() async throws {
        let path = Fixtures.path("tiny-llama")
        let bundle = try ModelBundle(path: path) {
            try ParallelLlamaModel(config: $0.config, weights: $0.weights, parallel: ParallelConfig(tensorParallelSize: 2),
                                   makeBackend: { _ in CPUBackend(exactQuantizedMath: true) })
        }
        #expect(bundle.model is ParallelLlamaModel)
        let ids = bundle.tokenizer.encode("Hello world", addSpecialTokens: true)
        let single = try ModelBundle(path: path, backend: CPUBackend(exactQuantizedMath: true))
        let want = try await greedy(single.model, ids, 16)
        #expect(try await greedy(bundle.model, ids, 16) == want)
    }

    func runEngine(_ model: any CausalLM, _ prompts: [[Int32]], maxTokens: Int) async throws -> [[Int32]] {
        let runner = try ModelRunner(model: model, blockCount: 128, blockSize: 4)
        let engine = try Engine(config: SchedulerConfig(numBlocks: 128, blockSize: 4, maxBatchSize: 16, maxNumTokens: 64,
                                                        enableChunkedContext: true, policy: .maxUtilization,
                                                        maxSequenceLength: model.config.maxPositions),
                                executor: runner)
        let streams = try prompts.enumerated().map { i, p in
            try engine.submit(Request(id: "r\(i)", prompt: p, parameters: .greedy, stop: StopConditions(maxTokens: maxTokens, ignoreEOS: true)))
        }
        var outputs: [[Int32]] = []
        for s in streams {
            var ids: [Int32] = []
            for try await o in s { ids += o.newTokenIDs }
            outputs.append(ids)
        }
        await engine.shutdown()
        return outputs
    }
}
