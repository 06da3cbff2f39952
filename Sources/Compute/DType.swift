// DType: element types of tensors and weights. Raw values match GGML's type ids so GGUF
// tensor types map one to one; float activations are always .f32 on the CPU. .w8 and .w4 are
// Petrel's own weight-only matrices (WeightOnly.swift), .e4m3 its FP8 W8A8 matrices (FP8.swift):
// their rows also hold scales, so their byte counts come from the tensor's WeightOnlyFormat or
// FP8Format, not from here.

public enum DType: Int, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30
    case w8 = 1008
    case w4 = 1004
    case e4m3 = 1010

    /// Elements per quantization block (1 for plain float types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .w8, .e4m3: return 1
        case .w4: return 2
        case .q8_0, .q4_0, .q4_1, .q5_0, .q5_1: return 32
        case .q4_K, .q5_K, .q6_K: return 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q8_0: return 34
        case .q4_0: return 18
        case .q4_1: return 20
        case .q5_0: return 22
        case .q5_1: return 24
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        case .w8, .w4, .e4m3: return 1   // the codes only; see WeightOnlyFormat.rowBytes, FP8Format.rowBytes
        }
    }

    public var isQuantized: Bool { blockSize > 1 || isWeightOnly || self == .e4m3 }
    /// Petrel's weight-only matrices (a HostTensor / Tensor of these carries its WeightOnlyFormat).
    public var isWeightOnly: Bool { self == .w8 || self == .w4 }
    /// GGML block formats (GGUF files), which the backends convert to weight-only matrices or floats.
    public var isGGMLBlock: Bool { blockSize > 1 && !isWeightOnly }

    /// Bytes needed for `count` elements; nil when count is not a whole number of blocks.
    public func byteCount(elements count: Int) -> Int? {
        guard count % blockSize == 0, !isWeightOnly, self != .e4m3 else { return nil }
        return count / blockSize * blockBytes
    }

    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q8_0: return "Q8_0"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .w8: return "W8"
        case .w4: return "W4"
        case .e4m3: return "FP8"
        }
    }
}
