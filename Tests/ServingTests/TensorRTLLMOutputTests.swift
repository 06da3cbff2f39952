// The TensorRT-LLM output tensors, as the LLM backend and the BLS model build them for a batch
// of final sequences or for one streamed chunk.
@testable import Serving
import Testing

@Suite struct TensorRTLLMOutputTests {
    @Test func aBatchIsPaddedToItsLongestRows() {
        let sequences = [
            GeneratedSequence(ids: [1, 2, 3], generatedCount: 2, logProbs: [-0.5, -0.25], cumulativeLogProb: -0.75, padID: 9, batchIndex: 0),
            GeneratedSequence(ids: [4], generatedCount: 1, logProbs: [], cumulativeLogProb: -1, padID: 8, batchIndex: 1),
        ]
        let names = ["sequence_index", "output_log_probs", "text_output", "output_ids", "batch_index", "cum_log_probs", "sequence_length"]
        let outputs = tensorrtLLMOutputs(names, sequences) { $0 == "text_output" ? .text($0, [2, 1], ["a", "b"]) : nil }
        #expect(outputs.map(\.name) == names)  // in the order asked
        #expect(outputs[0] == .int32("sequence_index", [2, 1], [0, 0]))
        // Missing log probs read as zeros; rows padded with zeros.
        #expect(outputs[1] == .fp32("output_log_probs", [2, 1, 2], [-0.5, -0.25, 0, 0]))
        #expect(outputs[2] == .text("text_output", [2, 1], ["a", "b"]))
        #expect(outputs[3] == .int32("output_ids", [2, 1, 3], [1, 2, 3, 4, 8, 8]))
        #expect(outputs[4] == .int32("batch_index", [2, 1], [0, 1]))
        #expect(outputs[5] == .fp32("cum_log_probs", [2, 1], [-0.75, -1]))
        #expect(outputs[6] == .int32("sequence_length", [2, 1], [3, 1]))
        #expect(tensorrtLLMOutputs(["context_logits"], sequences).isEmpty)
    }

    @Test func aChunkIsOneItemOfItsNewTokens() {
        let chunk = GeneratedSequence(ids: [7, 8], generatedCount: 2, logProbs: [-1, -2], cumulativeLogProb: -3, batchIndex: 3)
        let outputs = tensorrtLLMOutputs(["output_ids", "sequence_length", "output_log_probs", "batch_index"], [chunk])
        #expect(outputs == [.int32("output_ids", [1, 1, 2], [7, 8]), .int32("sequence_length", [1, 1], [2]),
                            .fp32("output_log_probs", [1, 1, 2], [-1, -2]), .int32("batch_index", [1, 1], [3])])
    }
}
