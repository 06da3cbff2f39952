// WeightOnly: Petrel's weight-only quantized matrices (W8A16, W4A16): the one layout that every
// backend computes with, that `petrel build` stores, and that every other quantized source is
// converted to (--quantization at load, AWQ / GPTQ checkpoints, GGUF K-quants on the GPU).
//
// A matrix (N rows = output features, K columns = input features) of dtype .w8 or .w4 is N rows
// of `rowBytes(columns: K)` bytes each, back to back. One row:
//
//   codes   K * bits / 8 bytes: unsigned codes u (0...255 or 0...15), in chunk order (below)
//   scales  G fp16 values s, G = ceil(K / groupSize) (one per row when groupSize is 0)
//   zeros   G fp16 values z, only when hasZeros (else z = 128 for 8 bits, 8 for 4 bits)
//   padding zero bytes up to a multiple of 16
//
// Column k of the row is w = (u - z) * s with s, z of group k / groupSize (the last group may be
// shorter). Zeros are fp16 so that formats whose offset is not an integer number of steps (GGUF
// Q4_1 and K-quants: w = d * q - m) convert exactly up to fp16 rounding.
//
// Chunk order (what lets a GPU thread fetch exactly its tensor-core fragment with one 32-bit load
// and turn int4/int8 into fp16 pairs with bit tricks; the CPU kernels permute their activations the
// same way once per matmul instead):
//   8 bits: chunks of 16 columns; byte p of a chunk holds column kEightBitOrder[p]
//           = 0 1 8 9 | 2 3 10 11 | 4 5 12 13 | 6 7 14 15: 32-bit word c holds 2c, 2c+1, 2c+8, 2c+9.
//   4 bits: chunks of 32 columns in 16 bytes = 4 little-endian 32-bit words; nibble n (bits 4n…4n+3)
//           of word c holds column 2c + kFourBitOffsets[n] = 2c + (0 8 16 24 1 9 17 25)[n], so
//           (word >> 4j) & 0x000F000F puts the pair (2c + 8j', 2c + 8j' + 1) in the two halves.
// K must be a multiple of the chunk (16 or 32); groupSize 0 or a multiple of it.

import Foundation

public struct WeightOnlyFormat: Sendable, Hashable, CustomStringConvertible {
    /// 8 or 4.
    public let bits: Int
    /// Columns per scale (and zero); 0: one group per row (per-channel).
    public let groupSize: Int
    /// Per-group zero points stored; else symmetric (z = 128 or 8).
    public let hasZeros: Bool

    public init(bits: Int, groupSize: Int, hasZeros: Bool) {
        precondition(bits == 8 || bits == 4, "weight-only formats have 8 or 4 bits")
        precondition(groupSize >= 0 && groupSize % (bits == 8 ? 16 : 32) == 0, "group size must be a multiple of the chunk")
        self.bits = bits
        self.groupSize = groupSize
        self.hasZeros = hasZeros
    }

    /// INT8 weight-only with one symmetric scale per output channel (TensorRT-LLM's int8 weight-only).
    public static let int8PerChannel = WeightOnlyFormat(bits: 8, groupSize: 0, hasZeros: false)

    public var dtype: DType { bits == 8 ? .w8 : .w4 }
    /// Columns per chunk of the code order.
    public var chunk: Int { bits == 8 ? 16 : 32 }
    /// The implied zero of symmetric formats.
    public var symmetricZero: Float { bits == 8 ? 128 : 8 }
    public var maxCode: Int { (1 << bits) - 1 }

    public func groupCount(columns: Int) -> Int { groupSize == 0 ? 1 : (columns + groupSize - 1) / groupSize }
    /// Columns of group g (of a row of `columns`): begin and count.
    public func group(_ g: Int, columns: Int) -> Range<Int> {
        if groupSize == 0 { return 0..<columns }
        return (g * groupSize)..<min(columns, (g + 1) * groupSize)
    }
    public func codeBytes(columns: Int) -> Int { columns * bits / 8 }
    public func rowBytes(columns: Int) -> Int {
        let raw = codeBytes(columns: columns) + groupCount(columns: columns) * 2 * (hasZeros ? 2 : 1)
        return (raw + 15) / 16 * 16
    }

    /// Why a matrix of this many columns cannot have this format, or nil.
    public func problem(columns: Int) -> String? {
        if columns <= 0 || columns % chunk != 0 { return "\(bits)-bit weights need a multiple of \(chunk) columns, not \(columns)" }
        return nil
    }

    public var description: String {
        let g = groupSize == 0 ? "per-channel" : "group \(groupSize)"
        return "int\(bits) \(g)\(hasZeros ? " with zero points" : "")"
    }

    /// 8 bits: the column (within its chunk of 16) of code byte p.
    public static let eightBitOrder: [Int] = [0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15]
    /// 4 bits: nibble n of 32-bit word c holds column 2c + fourBitOffsets[n] of its chunk of 32.
    public static let fourBitOffsets: [Int] = [0, 8, 16, 24, 1, 9, 17, 25]

    /// Code slot (byte for 8 bits, nibble index within the chunk's 16 bytes for 4 bits: byte
    /// slot / 2, high nibble when odd) of every column of a chunk.
    public var slotOfColumn: [Int] {
        var slot = [Int](repeating: 0, count: chunk)
        if bits == 8 {
            for (p, c) in Self.eightBitOrder.enumerated() { slot[c] = p }
        } else {
            for word in 0..<4 {
                for n in 0..<8 { slot[2 * word + Self.fourBitOffsets[n]] = word * 8 + n }
            }
        }
        return slot
    }
}

extension WeightOnlyFormat {
    /// Packs logical codes (rows × columns, row-major, each 0...maxCode), scales and zeros (rows ×
    /// groupCount, floats rounded to fp16 here) into a .w8 / .w4 HostTensor.
    public func pack(rows: Int, columns: Int, codes: [UInt8], scales: [Float], zeros: [Float]?) -> HostTensor {
        precondition(problem(columns: columns) == nil, problem(columns: columns) ?? "")
        let groups = groupCount(columns: columns)
        precondition(codes.count == rows * columns && scales.count == rows * groups && (zeros == nil) == !hasZeros
                     && (zeros?.count ?? rows * groups) == rows * groups)
        let rb = rowBytes(columns: columns), cb = codeBytes(columns: columns)
        let buffer = OwnedBuffer(byteCount: rows * rb)
        let raw = buffer.mutableBytes
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        let slot = slotOfColumn
        let chunk = self.chunk
        for r in 0..<rows {
            let row = raw.baseAddress! + r * rb
            let bytes = row.assumingMemoryBound(to: UInt8.self)
            for k in 0..<columns {
                let u = codes[r * columns + k]
                precondition(Int(u) <= maxCode, "code \(u) outside \(bits) bits")
                let s = slot[k % chunk], base = k / chunk * (chunk * bits / 8)
                if bits == 8 {
                    bytes[base + s] = u
                } else {
                    let byte = base + s / 2
                    bytes[byte] |= s % 2 == 0 ? u : u << 4
                }
            }
            for g in 0..<groups {
                (row + cb + 2 * g).storeBytes(of: halfBits(scales[r * groups + g]), as: UInt16.self)
                if let zeros { (row + cb + 2 * (groups + g)).storeBytes(of: halfBits(zeros[r * groups + g]), as: UInt16.self) }
            }
        }
        return HostTensor(dtype: dtype, shape: [rows, columns], bytes: UnsafeRawBufferPointer(raw), owner: buffer, weightOnly: self)
    }
}

/// One row of a .w8 / .w4 tensor, read back in logical column order.
public struct WeightOnlyRow {
    public let format: WeightOnlyFormat
    public let columns: Int
    let row: UnsafeRawPointer

    public init(_ t: HostTensor, row r: Int) {
        precondition(t.weightOnly != nil && r < t.rowCount)
        format = t.weightOnly!
        columns = t.rowLength
        row = t.bytes.baseAddress! + r * format.rowBytes(columns: columns)
    }

    public func code(_ k: Int) -> UInt8 {
        let chunk = format.chunk, base = k / chunk * (chunk * format.bits / 8)
        let s = format.slotOfColumn[k % chunk]
        if format.bits == 8 { return row.load(fromByteOffset: base + s, as: UInt8.self) }
        let b = row.load(fromByteOffset: base + s / 2, as: UInt8.self)
        return s % 2 == 0 ? b & 0x0F : b >> 4
    }

    public func scale(group g: Int) -> Float {
        halfToFloat(row.loadUnaligned(fromByteOffset: format.codeBytes(columns: columns) + 2 * g, as: UInt16.self))
    }

    public func zero(group g: Int) -> Float {
        guard format.hasZeros else { return format.symmetricZero }
        let groups = format.groupCount(columns: columns)
        return halfToFloat(row.loadUnaligned(fromByteOffset: format.codeBytes(columns: columns) + 2 * (groups + g), as: UInt16.self))
    }

    /// Every column as Float: (u - z) * s, the reference every kernel is compared with.
    public func values() -> [Float] {
        var out = [Float](repeating: 0, count: columns)
        let slot = format.slotOfColumn, chunk = format.chunk, chunkBytes = chunk * format.bits / 8
        for g in 0..<format.groupCount(columns: columns) {
            let s = scale(group: g), z = zero(group: g)
            for k in format.group(g, columns: columns) {
                let base = k / chunk * chunkBytes, p = slot[k % chunk]
                let u: UInt8
                if format.bits == 8 {
                    u = row.load(fromByteOffset: base + p, as: UInt8.self)
                } else {
                    let b = row.load(fromByteOffset: base + p / 2, as: UInt8.self)
                    u = p % 2 == 0 ? b & 0x0F : b >> 4
                }
                out[k] = (Float(u) - z) * s
            }
        }
        return out
    }
}

// MARK: quantizing float weights (--quantization at load, petrel build)

/// What `--quantization` asks for: how to quantize a checkpoint's float matrices at load.
public enum WeightQuantization: Sendable, Hashable, CustomStringConvertible {
    /// INT8, one symmetric scale per output channel (TensorRT-LLM's int8 weight-only, W8A16).
    case int8WeightOnly
    /// INT4 with one scale (and zero point, when asked) per group of columns (W4A16).
    case int4WeightOnly(groupSize: Int, zeroPoints: Bool)
    /// FP8 E4M3 weights with one scale per output channel, activations quantized to E4M3 per
    /// token at run time (W8A8; FP8.swift).
    case fp8

    /// The weight-only layout of the weight-only modes (nil for fp8).
    public var weightOnlyFormat: WeightOnlyFormat? {
        switch self {
        case .int8WeightOnly: return .int8PerChannel
        case .int4WeightOnly(let g, let z): return WeightOnlyFormat(bits: 4, groupSize: g, hasZeros: z)
        case .fp8: return nil
        }
    }

    /// TensorRT-LLM's names: int8_wo, int4_wo (with the group size and zero points when asked), fp8.
    public var description: String {
        switch self {
        case .int8WeightOnly: return "int8_wo"
        case .int4WeightOnly(let g, let z): return "int4_wo (group \(g)\(z ? ", zero points" : ""))"
        case .fp8: return "fp8"
        }
    }

    /// Parses "int8_wo" / "int4_wo" / "fp8" (TensorRT-LLM's names; also "int8" / "int4"); int4
    /// groups are 128 columns unless `groupSize` says 64. A group size or zero points for int8 or
    /// fp8 are refused.
    public init(name: String, groupSize: Int? = nil, zeroPoints: Bool = false) throws {
        switch name.lowercased() {
        case "int8_wo", "int8", "w8a16":
            guard !zeroPoints, groupSize == nil else {
                throw QuantizationError("int8_wo has one symmetric scale per output channel: group sizes and zero points are for int4_wo")
            }
            self = .int8WeightOnly
        case "int4_wo", "int4", "w4a16":
            let g = groupSize ?? 128
            guard g == 128 || g == 64 else { throw QuantizationError("int4_wo groups are 128 or 64 columns, not \(g)") }
            self = .int4WeightOnly(groupSize: g, zeroPoints: zeroPoints)
        case "fp8", "fp8_e4m3", "w8a8_fp8":
            guard !zeroPoints, groupSize == nil else {
                throw QuantizationError("fp8 has one scale per output channel and per token: group sizes and zero points are for int4_wo")
            }
            self = .fp8
        default:
            throw QuantizationError("unknown quantization '\(name)': int8_wo, int4_wo or fp8")
        }
    }
}

public struct QuantizationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

extension HostTensor {
    /// This float matrix quantized to `format` (no calibration data). INT8 per channel:
    /// s = max|w| / 127 and u = round(w / s) + 128 (TensorRT-LLM's int8 weight-only recipe).
    /// Groups (int4_wo): each group's scale (and integral zero point) searched by GroupFitter
    /// (WeightOnlyQuantizer.swift) for the least weighted squared error. Scales are rounded to
    /// fp16 before the codes are chosen; each code is the nearest to w / s + z.
    public func quantized(_ format: WeightOnlyFormat) throws -> HostTensor {
        guard shape.count == 2, !dtype.isQuantized else {
            throw QuantizationError("only float matrices can be quantized, not \(dtype) \(shape)")
        }
        if let p = format.problem(columns: rowLength) { throw QuantizationError(p) }
        let rows = rowCount, columns = rowLength, groups = format.groupCount(columns: columns)
        var codes = [UInt8](repeating: 0, count: rows * columns)
        var scales = [Float](repeating: 0, count: rows * groups)
        var zeros = [Float](repeating: 0, count: rows * groups)
        let source = self
        codes.withUnsafeMutableBufferPointer { cp in
            scales.withUnsafeMutableBufferPointer { sp in
                zeros.withUnsafeMutableBufferPointer { zp in
                    nonisolated(unsafe) let (c, s, z) = (cp, sp, zp)
                    DispatchQueue.concurrentPerform(iterations: (rows + 63) / 64) { block in
                        var fitter = GroupFitter(format: format, maxColumns: columns)
                        for r in (block * 64)..<min(rows, block * 64 + 64) {
                            let w = source.floatElements(r * columns..<(r + 1) * columns)
                            w.withUnsafeBufferPointer { wp in
                                for g in 0..<groups {
                                    let range = format.group(g, columns: columns)
                                    let (scale, zero): (Float, Float)
                                    if format.bits == 8 && !format.hasZeros {
                                        scale = GroupFitter.fp16(wp[range].reduce(0) { max($0, abs($1)) } / 127)
                                        zero = format.symmetricZero
                                    } else {
                                        (scale, zero) = fitter.fit(wp.baseAddress! + range.lowerBound, range.count)
                                    }
                                    s[r * groups + g] = scale
                                    z[r * groups + g] = zero
                                    for k in range { c[r * columns + k] = Self.code(wp[k], scale: scale, zero: zero, format: format) }
                                }
                            }
                        }
                    }
                }
            }
        }
        return format.pack(rows: rows, columns: columns, codes: codes, scales: scales, zeros: format.hasZeros ? zeros : nil)
    }

    static func code(_ w: Float, scale s: Float, zero z: Float, format: WeightOnlyFormat) -> UInt8 {
        guard s != 0 else { return UInt8(z) }
        return UInt8(GroupFitter.code(w, inverse: 1 / s, zero: z, top: Float(format.maxCode)))
    }
}
