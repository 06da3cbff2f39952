// The request lifecycle: every event in every state, and parameter validation.
import Engine
import Testing

@Suite struct LifecycleTests {
    static let reasons: [FinishReason] = [.stop, .length, .cancelled, .error("boom")]
    static let states: [RequestStatus] = [.waiting, .running, .preempted] + reasons.map { .finished($0) }
    static let events: [RequestLifecycle.Event] = [.schedule, .preempt] + reasons.map { .finish($0) }

    /// The whole transition table, written out independently of the implementation.
    static func expectedTransition(_ status: RequestStatus, _ event: RequestLifecycle.Event) -> (RequestLifecycle.Action, RequestStatus) {
        switch (status, event) {
        case (.waiting, .schedule): return (.allocateAndPrefill, .running)
        case (.preempted, .schedule): return (.allocateAndRecompute, .running)
        case (.running, .preempt): return (.freeBlocksAndRequeue, .preempted)
        case let (.running, .finish(r)): return (.freeBlocksAndFinish(r), .finished(r))
        case let (.waiting, .finish(r)): return (.finish(r), .finished(r))
        case let (.preempted, .finish(r)): return (.finish(r), .finished(r))
        default: return (.illegal(from: status, event: event), status)
        }
    }

    @Test(arguments: states)
    func everyEventInEveryState(_ status: RequestStatus) {
        for event in Self.events {
            var machine = RequestLifecycle(status: status)
            let action = machine.handle(event)
            let (wantAction, wantStatus) = Self.expectedTransition(status, event)
            #expect(action == wantAction, "\(status) + \(event)")
            #expect(machine.status == wantStatus, "\(status) + \(event)")
        }
    }

    @Test func illegalTransitionsChangeNothing() {
        var m = RequestLifecycle()
        #expect(m.preempt() == .illegal(from: .waiting, event: .preempt))
        #expect(m.status == .waiting)
        #expect(m.schedule() == .allocateAndPrefill)
        #expect(m.schedule() == .illegal(from: .running, event: .schedule))
        #expect(m.preempt() == .freeBlocksAndRequeue)
        #expect(m.preempt() == .illegal(from: .preempted, event: .preempt))
        #expect(m.schedule() == .allocateAndRecompute)
        #expect(m.finish(.length) == .freeBlocksAndFinish(.length))
        #expect(m.isFinished)
        #expect(m.finish(.cancelled) == .illegal(from: .finished(.length), event: .finish(.cancelled)))
        #expect(m.schedule() == .illegal(from: .finished(.length), event: .schedule))
        #expect(m.status == .finished(.length))
    }

    /// A full life through the scheduler: waiting → running → preempted → running → finished.
    @Test func schedulerDrivesTheLifecycle() throws {
        var s = try Scheduler(config: config(numBlocks: 4, blockSize: 4, policy: .maxUtilization))
        try s.add(request("a", prompt(4), maxTokens: 8))
        try s.add(request("b", prompt(4), maxTokens: 8))
        #expect(s.status(of: "a") == .waiting)
        var seen: Set<String> = []
        drive(&s, before: { _, s in
            for id in ["a", "b"] { if let st = s.status(of: id) { seen.insert("\(id):\(st)") } }
        })
        #expect(seen.contains("b:preempted"))
        #expect(seen.contains("a:running") && seen.contains("b:running"))
        #expect(s.status(of: "a") == nil)
    }
}

@Suite struct ValidationTests {
    @Test func defaultsMeanOff() throws {
        let p = SamplingParameters()
        #expect(p.temperature == 0 && p.topK == 0 && p.topP == 1 && p.minP == 0 && p.seed == nil)
        #expect(p.repetitionPenalty == 1 && p.presencePenalty == 0 && p.frequencyPenalty == 0)
        #expect(p.beamWidth == 1 && p.lengthPenalty == 1 && p.earlyStopping && !p.returnLogProbs && p.topLogProbs == 0)
        try p.validate()
        try StopConditions().validate()
    }

    static let badParameters: [(String, SamplingParameters)] = [
        ("temperature", SamplingParameters(temperature: -1)),
        ("temperature", SamplingParameters(temperature: .nan)),
        ("top_k", SamplingParameters(topK: -1)),
        ("top_p", SamplingParameters(topP: 0)),
        ("top_p", SamplingParameters(topP: 1.5)),
        ("min_p", SamplingParameters(minP: 2)),
        ("repetition_penalty", SamplingParameters(repetitionPenalty: 0)),
        ("presence_penalty", SamplingParameters(presencePenalty: .infinity)),
        ("frequency_penalty", SamplingParameters(frequencyPenalty: .nan)),
        ("beam_width", SamplingParameters(beamWidth: 0)),
        ("length_penalty", SamplingParameters(lengthPenalty: .infinity)),
        ("top_logprobs", SamplingParameters(topLogProbs: -1)),
    ]

    @Test func parameterErrorsNameTheTritonField() {
        for (field, p) in Self.badParameters {
            #expect(throws: EngineError.self) { try p.validate() }
            do { try p.validate() } catch let EngineError.invalidParameter(f, message) {
                #expect(f == field)
                #expect(EngineError.invalidParameter(field: f, message: message).description.hasPrefix(field))
            } catch { Issue.record("unexpected \(error)") }
        }
    }

    @Test func stopConditionErrorsNameTheField() {
        let cases: [(String, StopConditions)] = [
            ("max_tokens", StopConditions(maxTokens: 0)),
            ("min_tokens", StopConditions(maxTokens: 4, minTokens: 5)),
            ("min_tokens", StopConditions(minTokens: -1)),
            ("stop_words", StopConditions(stopSequences: [[1], []])),
            ("bad_words", StopConditions(badWords: [[]])),
        ]
        for (field, stop) in cases {
            do { try stop.validate(); Issue.record("\(field) accepted") } catch let EngineError.invalidParameter(f, _) {
                #expect(f == field)
            } catch { Issue.record("unexpected \(error)") }
        }
    }

    @Test func configErrors() {
        #expect(throws: EngineError.self) { try Scheduler(config: config(numBlocks: 0)) }
        #expect(throws: EngineError.self) { try Scheduler(config: config(maxBatchSize: 0)) }
        #expect(throws: EngineError.self) { try Scheduler(config: config(maxNumTokens: 0)) }
        #expect(throws: EngineError.self) { try Scheduler(config: config(maxBeamWidth: 0)) }
    }

    @Test func addRejectsRequestsThatCanNeverRun() throws {
        var s = try Scheduler(config: config(numBlocks: 4, blockSize: 4, maxNumTokens: 8, chunked: false, maxBeamWidth: 2, maxSequenceLength: 12))
        try s.add(request("a", prompt(4), maxTokens: 4))
        #expect(throws: EngineError.duplicateRequestID("a")) { try s.add(request("a", prompt(4))) }
        #expect(throws: EngineError.invalidParameter(field: "input_ids", message: "must not be empty")) { try s.add(request("e", [])) }
        #expect(throws: EngineError.self) { try s.add(request("beam", prompt(4), parameters: SamplingParameters(beamWidth: 3))) }
        #expect(throws: EngineError.self) { try s.add(request("long", prompt(9))) }        // > max_num_tokens, unchunked
        #expect(throws: EngineError.self) { try s.add(request("ctx", prompt(12))) }        // >= max_seq_len
        #expect(throws: EngineError.self) { try s.add(request("big", prompt(6), maxTokens: 64, parameters: SamplingParameters(beamWidth: 2))) }  // 1 + 2 x 2 blocks > 4
        #expect(throws: EngineError.self) { try s.add(request("bad", prompt(2), parameters: SamplingParameters(topP: 0))) }
        #expect(s.waitingIDs == ["a"])
    }
}
