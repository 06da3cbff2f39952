// `petrel bench`: the offline engine's speed, like TensorRT-LLM's gptSessionBenchmark (static
// batches over a grid of batch sizes and input/output lengths) and a serving mode (Poisson
// arrivals or fixed concurrency, with latency percentiles). Prints markdown tables.
import ArgumentParser
import Checkpoints
import Compute
import CPUCompute
import CUDACompute
import Dispatch
import Engine
import Foundation
import Synchronization
import Models
import Runtime

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure the engine: static batches or a serving load.")

    enum Mode: String, ExpressibleByArgument { case `static`, serving }

    @Option(help: "static (batch × input/output grid) or serving (arrivals over time).") var mode: Mode = .static
    @Option(help: "A GGUF file or Hugging Face folder (default: the default model).") var model: String?
    @Option(name: .customLong("dummy-weights"), help: "Random weights of a built-in shape: \(BuiltinConfig.allCases.map(\.rawValue).joined(separator: ", ")).")
    var dummyWeights: String?
    @Option(name: .customLong("dtype"), help: "Weight type for --dummy-weights: f32, f16, bf16, q8_0, q4_0, q4_1.") var dtypeName = "q4_1"
    @Option(name: .customLong("batch-size"), help: "Static mode: batch sizes, separated by ';'.") var batchSizes = "1;8;16;32;64;128"
    @Option(name: .customLong("input-output-len"), help: "Static mode: input,output pairs separated by ';'.") var inputOutput = "60,20;128,20;512,20"
    @Option(name: .customLong("num-requests"), help: "Serving mode: requests to send.") var numRequests = 64
    @Option(name: .customLong("request-rate"), help: "Serving mode: Poisson arrival rate (requests/s); 0 = all at once.") var requestRate: Double = 0
    @Option(help: "Serving mode: fixed number of requests in flight (overrides --request-rate).") var concurrency: Int?
    @Option(name: .customLong("input-len")) var inputLength = 128
    @Option(name: .customLong("output-len")) var outputLength = 64
    @Option(name: .customLong("max-num-tokens"), help: "Engine token budget per step.") var maxNumTokens = 8192
    @Option(name: .customLong("tokens-per-block")) var blockSize = 32
    @Option(help: "Where to run: cpu or cuda (libpetrel_cuda.so from PETREL_CUDA_LIB or next to petrel).") var device: Device = .cpu
    @Option(help: GPUDType.help) var gpuDtype: GPUDType = .f16
    @OptionGroup var cuda: CUDAFlags
    @Flag(name: .customLong("host-sampling"), help: "Bring every step's logits to the host and pick tokens there, also where the device could.")
    var hostSampling = false
    @Option(help: "CPU threads (default: PETREL_THREADS, else all online CPUs).") var threads = 0
    @Option(name: .customLong("peak-bandwidth"), help: "Static mode: the device's measured copy bandwidth in GB/s, for each point's ceiling.")
    var peakBandwidth: Double?
    @Option(name: .customLong("peak-tflops"), help: "Static mode: the device's measured matrix rate in TFLOP/s, for each point's ceiling.")
    var peakTFLOPs: Double?
    @Option(help: "Seed for the random prompts.") var seed: UInt64 = 1
    @Option(name: .customLong("warm-up"), help: "Static mode: unreported runs of each point before it is timed (default: 1 on cuda, 0 on cpu), as gptSessionBenchmark's --warm_up.")
    var warmUp: Int?
    @Option(help: "Static mode: timed runs of each point; the row is the run of median latency (default: 3 on cuda, 1 on cpu).")
    var runs: Int?
    @OptionGroup var parallel: ParallelOptions
    @OptionGroup var quantization: QuantizationOptions
    @Option(name: .customLong("json"), help: "Static mode: also write the table as JSON to this file.") var jsonPath: String?
    @Option(name: .customLong("chart"), help: "Static mode: draw output tokens/s by batch size as an SVG chart to this file.") var chartPath: String?
    @Option(name: .customLong("compare"), help: "Static mode: another run's --json (e.g. a peer's) drawn beside this one in --chart (repeatable).")
    var comparePaths: [String] = []
    @Option(name: .customLong("label"), help: "This run's name in --json and --chart (default: petrel, the model and the quantization).")
    var label: String?

    func validate() throws {
        if model != nil && dummyWeights != nil { throw ValidationError("give --model or --dummy-weights, not both") }
        if let d = dummyWeights, BuiltinConfig(rawValue: d) == nil {
            throw ValidationError("--dummy-weights: unknown shape '\(d)' (known: \(BuiltinConfig.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if DType.allCases.first(where: { $0.description.lowercased() == dtypeName.lowercased() }) == nil {
            throw ValidationError("--dtype: unknown type '\(dtypeName)' (f32, f16, bf16, q8_0, q4_0, q4_1)")
        }
        _ = try parseGrid()
        if numRequests < 1 || inputLength < 1 || outputLength < 1 { throw ValidationError("--num-requests, --input-len and --output-len must be >= 1") }
        if let c = concurrency, c < 1 { throw ValidationError("--concurrency must be >= 1") }
        if mode != .static && (jsonPath != nil || chartPath != nil || !comparePaths.isEmpty) {
            throw ValidationError("--json, --chart and --compare are for --mode static")
        }
        if !comparePaths.isEmpty && chartPath == nil { throw ValidationError("--compare needs --chart") }
        for path in comparePaths { _ = try readReport(path) }
        try parallel.check(device)
    }

    func parseGrid() throws -> ([Int], [(Int, Int)]) {
        let batches = try batchSizes.split(separator: ";").map { s -> Int in
            guard let v = Int(s.trimmingCharacters(in: .whitespaces)), v > 0 else { throw ValidationError("--batch-size: '\(s)' is not a positive integer") }
            return v
        }
        let pairs = try inputOutput.split(separator: ";").map { s -> (Int, Int) in
            let parts = s.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 2, parts[0] > 0, parts[1] > 0 else { throw ValidationError("--input-output-len: '\(s)' is not 'input,output'") }
            return (parts[0], parts[1])
        }
        return (batches, pairs)
    }

    func run() async throws {
        let backend = try device.makeBackend(threads: threads, gpuDtype: gpuDtype, cuda: cuda.options)
        let quantization = try self.quantization.value()
        let llama: any CausalLM
        let name: String
        let loadStart = DispatchTime.now().uptimeNanoseconds
        if let d = dummyWeights, let shape = BuiltinConfig(rawValue: d) {
            let dtype = DType.allCases.first { $0.description.lowercased() == dtypeName.lowercased() }!
            llama = parallel.isSharded
                ? try parallel.makeModel(config: shape.config, weights: .random(config: shape.config, dtype: dtype, seed: seed),
                                         backend: backend, device: device, threads: threads, quantization: quantization)
                : try makeDummyModel(shape, dtype: dtype, seed: seed, backend: backend, quantization: quantization)
            name = "\(d) (random \(dtype))"
        } else {
            let path = try model ?? DefaultModel.resolve()
            let ckpt = try LoadedCheckpoint.open(path)
            llama = try parallel.makeModel(config: ckpt.config, weights: ckpt.weights, backend: backend, device: device, threads: threads,
                                           quantization: quantization)
            name = URL(fileURLWithPath: path).lastPathComponent
        }
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
        print("model: \(name), device: \(describe(backend))\(parallel.summary), quantization: \(quantization.map { "\($0)" } ?? "none"), "
              + "weights read per decode step: \(describeBytes(llama.weightBytes)), loaded in \(String(format: "%.1f", loadSeconds)) s")
        switch mode {
        case .static:
            let report = try await runStatic(llama, label: label ?? "petrel \(name)\(quantization.map { " \($0)" } ?? "")")
            if let jsonPath { try Data(report.json().utf8).write(to: URL(fileURLWithPath: jsonPath)) }
            if let chartPath {
                let reports = [report] + (try comparePaths.map(readReport))
                let title = "\(name) on \(describe(backend))"
                try Data(BenchReport.chartSVG(reports, title: title).utf8).write(to: URL(fileURLWithPath: chartPath))
            }
        case .serving: try await runServing(llama)
        }
        if let gpu = backend as? CUDABackend {
            let counts = gpu.graphCounts
            print("decode steps as CUDA graphs: \(counts.captured) captured, \(counts.replayed) replayed" +
                  (gpu.options.cudaGraphs ? (counts.captured == 0 ? " (no step qualified)" : "") : " (--no-cuda-graphs)"))
        }
    }

    // MARK: static

    /// The executor (and its KV cache) for `batch` sequences of `tokens` tokens.
    func makeRunner(_ llama: any CausalLM, batch: Int, tokens: Int) throws -> ModelRunner {
        try ModelRunner(model: llama, blockCount: batch * ((tokens + blockSize - 1) / blockSize) + 1, blockSize: blockSize,
                        deviceSampling: !hostSampling)
    }

    /// An engine over `runner` (a new one when nil), as a server would run it.
    func makeEngine(_ llama: any CausalLM, batch: Int, tokens: Int, runner: ModelRunner? = nil) throws -> Engine {
        let runner = try runner ?? makeRunner(llama, batch: batch, tokens: tokens)
        let blocks = runner.cache.layout.blockCount
        return try Engine(config: SchedulerConfig(numBlocks: blocks, blockSize: blockSize, maxBatchSize: batch,
                                                  maxNumTokens: maxNumTokens, enableChunkedContext: true,
                                                  policy: .guaranteedNoEvict, maxSequenceLength: llama.config.maxPositions),
                          executor: runner)
    }

    func prompts(_ count: Int, length: Int, vocab: Int, salt: UInt64) -> [[Int32]] {
        var rng = Xoshiro256(seed: seed &+ salt)
        return (0..<count).map { _ in (0..<length).map { _ in Int32(3 + rng.next() % UInt64(vocab - 3)) } }
    }

    func readReport(_ path: String) throws -> BenchReport {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("--compare: cannot read \(path)") }
        do { return try BenchReport(json: [UInt8](data), source: path) } catch let e as BenchReportError {
            throw ValidationError("--compare: \(e.description)")
        }
    }

    func runStatic(_ llama: any CausalLM, label: String) async throws -> BenchReport {
        var report = BenchReport(label: label)
        let (batches, pairs) = try parseGrid()
        // Each point is run `warmUps` times unreported first (the first use of a kernel or a
        // cuBLAS algorithm loads its module; a shape's first decode steps capture its CUDA
        // graphs), then `timedRuns` times; the row is the run of median latency.
        let warmUps = warmUp ?? (device == .cuda ? 1 : 0), timedRuns = max(1, runs ?? (device == .cuda ? 3 : 1))
        let roofline = peakBandwidth.flatMap { bw in
            peakTFLOPs.map { Roofline(config: llama.config, weightBytes: llama.weightBytes,
                                      bandwidth: bw * 1e9, flopRate: $0 * 1e12) }
        }
        if let roofline {
            print(String(format: "ceiling from %.0f GB/s and %.0f TFLOP/s: prefill FLOPs over the matrix rate; each decode step the larger of (weights + KV) bytes over bandwidth and its FLOPs over the matrix rate", roofline.bandwidth / 1e9, roofline.flopRate / 1e12))
            print("| batch | input | output | latency ms | tokens/s | TTFT ms | peak KV blocks | ceiling ms | % of ceiling |")
            print("|---|---|---|---|---|---|---|---|---|")
        } else {
            print("| batch | input | output | latency ms | tokens/s | TTFT ms | peak KV blocks |")
            print("|---|---|---|---|---|---|---|")
        }
        for (input, output) in pairs {
            for batch in batches {
                // One executor and KV cache for the point's runs, as a server keeps its own (and
                // the step graphs that hold the cache's addresses).
                let runner = try makeRunner(llama, batch: batch, tokens: input + output)
                for _ in 0..<warmUps { _ = try await runPoint(llama, batch: batch, input: input, output: output, runner: runner) }
                var timed: [(Double, Double, Int)] = []
                for _ in 0..<timedRuns {
                    timed.append(try await runPoint(llama, batch: batch, input: input, output: output, runner: runner))
                }
                let (latency, ttft, peak) = timed.sorted { $0.0 < $1.0 }[timed.count / 2]
                var row = String(format: "| %d | %d | %d | %.1f | %.1f | %.1f | %d |", batch, input, output, latency,
                                 Double(batch * output) / latency * 1000, ttft, peak)
                var point = BenchPoint(batch: batch, input: input, output: output, latencyMs: latency,
                                       tokensPerSecond: Double(batch * output) / latency * 1000, ttftMs: ttft, peakKVBlocks: peak)
                if let roofline {
                    let ceiling = roofline.staticLatency(batch: batch, input: input, output: output) * 1000
                    row += String(format: " %.1f | %.0f%% |", ceiling, ceiling / latency * 100)
                    point.ceilingMs = ceiling
                }
                print(row)
                report.points.append(point)
            }
        }
        return report
    }

    /// One static point: `batch` requests of `input` random tokens, `output` tokens each.
    /// Returns latency (ms), mean time to first token (ms) and the peak KV blocks in use.
    func runPoint(_ llama: any CausalLM, batch: Int, input: Int, output: Int, runner: ModelRunner? = nil) async throws
        -> (Double, Double, Int) {
        let engine = try makeEngine(llama, batch: batch, tokens: input + output, runner: runner)
        let ps = prompts(batch, length: input, vocab: llama.config.vocabularySize, salt: UInt64(batch * 1000 + input))
        let start = DispatchTime.now().uptimeNanoseconds
        let peak = PeakTracker()
        let sampler = Task { while !Task.isCancelled { peak.observe(engine.metrics.kvBlocksUsed); try? await Task.sleep(nanoseconds: 500_000) } }
        // The whole batch at once (one static batch), as TensorRT-LLM's static benchmarks do.
        let streams = try engine.submit(ps.enumerated().map { i, p in
            Request(id: "b\(i)", prompt: p, stop: StopConditions(maxTokens: output, ignoreEOS: true))
        })
        let firsts = try await withThrowingTaskGroup(of: Double.self) { group in
            for stream in streams {
                group.addTask {
                    var first = 0.0
                    for try await o in stream where first == 0 && !o.newTokenIDs.isEmpty {
                        first = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                    }
                    return first
                }
            }
            return try await group.reduce(into: [Double]()) { $0.append($1) }
        }
        let latency = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        sampler.cancel()
        peak.observe(engine.metrics.kvBlocksUsed)
        await engine.shutdown()
        let ttft = firsts.reduce(0, +) / Double(firsts.count)
        return (latency, ttft, peak.value)
    }

    // MARK: serving

    func runServing(_ llama: any CausalLM) async throws {
        let inFlight = concurrency ?? numRequests
        let engine = try makeEngine(llama, batch: min(inFlight, 256), tokens: inputLength + outputLength)
        let ps = prompts(numRequests, length: inputLength, vocab: llama.config.vocabularySize, salt: 7)
        var rng = Xoshiro256(seed: seed &+ 99)
        // Arrival offsets: Poisson process at requestRate, or all at t = 0.
        var arrivals: [Double] = []
        var t = 0.0
        for _ in 0..<numRequests {
            arrivals.append(t)
            if requestRate > 0 { t += -log(1 - rng.nextUnit()) / requestRate }
        }
        // Warm-up, not reported (a server is measured warm too): one request of the same prompt length.
        for try await _ in try engine.submit(Request(id: "warm-up", prompt: ps[0], stop: StopConditions(maxTokens: 2, ignoreEOS: true))) {}
        let start = DispatchTime.now().uptimeNanoseconds
        func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        let gate = ConcurrencyGate(limit: concurrency ?? Int.max)
        let results = try await withThrowingTaskGroup(of: RequestTiming.self) { group in
            for i in 0..<numRequests {
                let arrival = concurrency == nil ? arrivals[i] : 0
                group.addTask {
                    let wait = arrival - now()
                    if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
                    await gate.acquire()
                    defer { Task { await gate.release() } }
                    let sent = now()
                    var timing = RequestTiming()
                    var last = sent
                    let stream = try engine.submit(Request(id: "s\(i)", prompt: ps[i], stop: StopConditions(maxTokens: outputLength, ignoreEOS: true)))
                    for try await o in stream where !o.newTokenIDs.isEmpty {
                        let at = now()
                        if timing.tokens == 0 { timing.ttft = at - sent }
                        else { for _ in o.newTokenIDs { timing.itls.append((at - last) / Double(o.newTokenIDs.count)) } }
                        timing.tokens += o.newTokenIDs.count
                        last = at
                    }
                    return timing
                }
            }
            return try await group.reduce(into: [RequestTiming]()) { $0.append($1) }
        }
        let elapsed = now()
        await engine.shutdown()
        let tokens = results.reduce(0) { $0 + $1.tokens }
        let ttfts = results.map(\.ttft).sorted(), itls = results.flatMap(\.itls).sorted()
        func pct(_ v: [Double], _ p: Double) -> Double { v.isEmpty ? 0 : v[min(v.count - 1, Int(Double(v.count - 1) * p + 0.5))] * 1000 }
        let load = concurrency.map { "concurrency \($0)" } ?? (requestRate > 0 ? "Poisson \(requestRate) req/s" : "all at once")
        print("| load | requests | in/out | requests/s | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(String(format: "| %@ | %d | %d/%d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f |", load, numRequests, inputLength, outputLength,
                     Double(numRequests) / elapsed, Double(tokens) / elapsed, pct(ttfts, 0.5), pct(ttfts, 0.99), pct(itls, 0.5), pct(itls, 0.99)))
    }
}

struct RequestTiming: Sendable {
    var ttft = 0.0
    var itls: [Double] = []
    var tokens = 0
}

final class PeakTracker: Sendable {
    private let peak = Mutex(0)
    func observe(_ v: Int) { peak.withLock { $0 = max($0, v) } }
    var value: Int { peak.withLock { $0 } }
}

/// Limits how many requests are in flight at once (serving mode's fixed concurrency).
actor ConcurrencyGate {
    let limit: Int
    private var inUse = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    init(limit: Int) { self.limit = limit }
    func acquire() async {
        if inUse < limit { inUse += 1; return }
        await withCheckedContinuation { waiters.append($0) }
    }
    func release() {
        if waiters.isEmpty { inUse -= 1 } else { waiters.removeFirst().resume() }
    }
}
