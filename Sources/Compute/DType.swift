// DType: element types of tensors and weights. Raw values match GGML's type ids so GGUF
// tensor types map one to one; float activations are always .f32 on the CPU.

public enum DType: Int, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q8_0 = 8
    case bf16 = 30

    /// Elements per quantization block (1 for plain float types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q8_0, .q4_0, .q4_1: return 32
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
        }
    }

    public var isQuantized: Bool { blockSize > 1 }

    /// Bytes needed for `count` elements; nil when count is not a whole number of blocks.
    public func byteCount(elements count: Int) -> Int? {
        guard count % blockSize == 0 else { return nil }
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
        }
    }
}
