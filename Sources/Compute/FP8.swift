// FP8: Petrel's FP8 W8A8 matrices (TensorRT-LLM's fp8, E4M3 weights and activations) and the one
// E4M3 codec every backend's result is checked against.
//
// E4M3 (OCP FP8, torch.float8_e4m3fn): sign, 4 exponent bits (bias 7), 3 mantissa bits; no
// infinities; S.1111.111 is NaN; largest finite 448, smallest subnormal 2⁻⁹. Encoding rounds to
// nearest even and saturates: |x| beyond 448 (infinities included) gives ±448, NaN gives 0x7F with
// the sign bit of x, exactly as torch's `x.to(torch.float8_e4m3fn)` does.
//
// A matrix (N rows = output features, K columns = input features) of dtype .e4m3 is N rows of
// `FP8Format.rowBytes(columns: K)` bytes each, back to back. One row:
//
//   codes   K bytes, E4M3, in column order
//   scale   the row's fp32 scale s_w (little-endian)
//   padding zero bytes up to a multiple of 16
//
// Weight w = decode(code) · s_w. No code is NaN (pack refuses them), so a kernel may decode by bit
// arithmetic. The product with activations x (n, K):
//
//   s_x      = the matrix's static inputScale, or per token amax(|x_t|) / 448 (dynamic)
//   q_t      = encode(x_t / s_x) (fp32 division; s_x = 0 gives q_t = 0)
//   out[t,r] = (Σ_k decode(q_t,k) · decode(code_r,k)) · (s_x · s_w)   summed in fp32
//
// Every product of two E4M3 values is exact in fp32, so backends differ only in summation order.
import Foundation

public enum FP8E4M3 {
    /// The largest finite value.
    public static let max: Float = 448

    /// x rounded to nearest even and saturated, as torch's float8_e4m3fn cast.
    @inlinable public static func encode(_ x: Float) -> UInt8 {
        let sign: UInt8 = x.sign == .minus ? 0x80 : 0
        if x.isNaN { return sign | 0x7F }
        let a = Swift.min(abs(x), max)
        if a < 0.015625 {   // below 2⁻⁶, the smallest normal: multiples of 2⁻⁹, rounded to even
            let m = (a * 512).rounded(.toNearestOrEven)   // exact: a · 2⁹ < 8
            return sign | UInt8(m)   // m = 8 is the smallest normal, whose code is 8 too
        }
        // Normal: round the fp32 mantissa to 3 bits (to nearest even); a carry moves to the exponent.
        var bits = a.bitPattern
        bits += 0x7FFFF + ((bits >> 20) & 1)
        let exponent = Int(bits >> 23) - 127 + 7, mantissa = (bits >> 20) & 7
        return sign | UInt8(exponent << 3) | UInt8(mantissa)
    }

    /// The value of code c (NaN for 0x7F and 0xFF).
    @inlinable public static func decode(_ c: UInt8) -> Float { table[Int(c)] }

    /// Every code's value.
    public static let table: [Float] = (0..<256).map { c in
        let sign: Float = c & 0x80 != 0 ? -1 : 1
        let e = (c >> 3) & 0xF, m = c & 7
        if e == 15 && m == 7 { return .nan }
        if e == 0 { return sign * Float(m) / 512 }
        return sign * (1 + Float(m) / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
    }

    /// x as it arrives at an FP8 GEMM: encode(x / scale) decoded (unscaled); 0 when scale is 0.
    @inlinable public static func roundTrip(_ x: Float, scale: Float) -> Float {
        scale == 0 ? 0 : decode(encode(x / scale))
    }

    /// The dynamic per-token scale of an activation row: amax / 448.
    public static func scale<C: Collection<Float>>(ofRow x: C) -> Float {
        x.reduce(0) { Swift.max($0, abs($1)) } / max
    }

    /// Rows of x (rows × columns, row-major) quantized as an FP8 GEMM's input: the decoded codes
    /// (unscaled) and each row's scale (the static `inputScale`, or amax / 448 per row).
    public static func quantizeActivations(_ x: UnsafePointer<Float>, rows: Int, columns: Int, inputScale: Float?,
                                           codes: UnsafeMutablePointer<Float>, scales: UnsafeMutablePointer<Float>) {
        for t in 0..<rows {
            let row = UnsafeBufferPointer(start: x + t * columns, count: columns)
            let s = inputScale ?? scale(ofRow: row)
            scales[t] = s
            let out = codes + t * columns
            if s == 0 { out.update(repeating: 0, count: columns); continue }
            for k in 0..<columns { out[k] = decode(encode(row[k] / s)) }
        }
    }
}

/// The layout of a .e4m3 matrix: per-output-channel fp32 scales in the rows, and the activation scale.
public struct FP8Format: Sendable, Hashable, CustomStringConvertible {
    /// A static activation scale (a checkpoint's input_scale); nil: per token, amax / 448, at run time.
    public let inputScale: Float?

    public init(inputScale: Float? = nil) {
        precondition(inputScale.map { $0 > 0 && $0.isFinite } ?? true, "an FP8 input scale is positive and finite")
        self.inputScale = inputScale
    }

    public static let dynamic = FP8Format()

    public func rowBytes(columns: Int) -> Int { (columns + 4 + 15) / 16 * 16 }

    public var description: String {
        "fp8 per-channel, " + (inputScale.map { "static input scale \($0)" } ?? "dynamic per-token activations")
    }

    /// Packs codes (rows × columns, row-major E4M3) and one fp32 scale per row into a .e4m3
    /// HostTensor. Throws when a code is NaN or a scale is negative or not finite.
    public func pack(rows: Int, columns: Int, codes: UnsafeRawBufferPointer, scales: [Float]) throws -> HostTensor {
        precondition(codes.count == rows * columns && scales.count == rows)
        if let r = scales.firstIndex(where: { !($0 >= 0 && $0.isFinite) }) {
            throw QuantizationError("row \(r) has the FP8 scale \(scales[r]); scales are finite and not negative")
        }
        let rb = rowBytes(columns: columns)
        let buffer = OwnedBuffer(byteCount: rows * rb)
        let raw = buffer.mutableBytes
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        for r in 0..<rows {
            let src = UnsafeRawBufferPointer(rebasing: codes[(r * columns)..<((r + 1) * columns)])
            if let k = src.firstIndex(where: { $0 & 0x7F == 0x7F }) {
                throw QuantizationError("row \(r) column \(k) holds an E4M3 NaN")
            }
            UnsafeMutableRawBufferPointer(rebasing: raw[(r * rb)..<(r * rb + columns)]).copyMemory(from: src)
            raw.storeBytes(of: scales[r].bitPattern.littleEndian, toByteOffset: r * rb + columns, as: UInt32.self)
        }
        return HostTensor(dtype: .e4m3, shape: [rows, columns], bytes: UnsafeRawBufferPointer(raw), owner: buffer, fp8: self)
    }
}

extension HostTensor {
    /// Row r of a .e4m3 matrix: its codes and scale.
    public func fp8Row(_ r: Int) -> (codes: UnsafeRawBufferPointer, scale: Float) {
        precondition(fp8 != nil && r < rowCount)
        let rb = rowBytes, k = rowLength
        let codes = UnsafeRawBufferPointer(rebasing: bytes[(r * rb)..<(r * rb + k)])
        return (codes, Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: r * rb + k, as: UInt32.self))))
    }

    /// This float matrix as FP8 (TensorRT-LLM / ModelOpt's per-channel recipe): per row
    /// s = max|w| / 448 and codes encode(w / s); an all-zero row gets s = 0, codes 0. The
    /// activations are quantized per token at run time (dynamic).
    public func quantizedFP8() throws -> HostTensor {
        guard shape.count == 2, !dtype.isQuantized else {
            throw QuantizationError("only float matrices can be quantized, not \(dtype) \(shape)")
        }
        let rows = rowCount, columns = rowLength
        let codes = OwnedBuffer(byteCount: rows * columns)
        var scales = [Float](repeating: 0, count: rows)
        let source = self
        scales.withUnsafeMutableBufferPointer { sp in
            nonisolated(unsafe) let (c, s) = (codes.mutableBytes, sp)
            DispatchQueue.concurrentPerform(iterations: (rows + 63) / 64) { block in
                for r in (block * 64)..<Swift.min(rows, block * 64 + 64) {
                    let w = source.floatElements(r * columns..<(r + 1) * columns)
                    let scale = FP8E4M3.scale(ofRow: w)
                    s[r] = scale
                    for k in 0..<columns { c[r * columns + k] = scale == 0 ? 0 : FP8E4M3.encode(w[k] / scale) }
                }
            }
        }
        return try FP8Format.dynamic.pack(rows: rows, columns: columns, codes: UnsafeRawBufferPointer(codes.mutableBytes), scales: scales)
    }
}
