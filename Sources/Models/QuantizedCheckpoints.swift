// QuantizedCheckpoints: the projections of pre-quantized Hugging Face checkpoints (AutoAWQ's
// GEMM layout, AutoGPTQ / GPTQModel's "gptq" layout) decoded into Petrel's weight-only matrices.
// The only file that knows their tensors (`qweight`, `qzeros`, `scales`, `g_idx`); WeightMapHF
// names the projections.
//
//   AWQ   qweight I32 [in, out/8]: nibble n of word (i, c) is output 8c + [0 2 4 6 1 3 5 7][n]
//         qzeros  I32 [groups, out/8], the same order; scales [groups, out]
//   GPTQ  qweight I32 [in·bits/32, out]: field j (bits j·b…) of word (r, o) is input r·32/b + j
//         qzeros  I32 [groups, out·bits/32], field j of word (g, c) is output c·32/b + j, holding
//         z - 1 in the v1 "gptq" format; scales [groups, out]; g_idx I32 [in]: each input's group
//   w[o][i] = (q - z)·s with the scale and zero of the input's group.
// Scales are rounded to fp16 (they are fp16 in both layouts); zero points are stored unless every
// zero of the fused parts is the symmetric one (128 or 8: GPTQ with sym true).
//
//   FP8   weight F8_E4M3 [out, in] (kept byte for byte); weight_scale [] / [1] (per tensor) or
//         [out, 1] / [out] (per channel), F32 / F16 / BF16; input_scale [] / [1], when present the
//         static activation scale (compressed-tensors, quant_method "fp8", ModelOpt). w = code·s.
//
// GPTQ act-order (desc_act) checkpoints number their groups in an activation order: g_idx is not
// i / group. Their columns are sorted by group here (stably) so that groups are contiguous, and
// the matrix records that input order: column j reads input feature inputOrder[j].
import Checkpoints
import Compute

/// One projection decoded to logical codes, not yet packed: codes (rows = output features ×
/// columns = input features, row-major) with per-group scales and zeros (rows × groups).
struct QuantizedLinear: Sendable {
    let name: String
    let rows: Int
    let columns: Int
    let bits: Int
    /// Petrel's group size: a multiple of the format's chunk, or 0 for one group per row.
    let groupSize: Int
    var codes: [UInt8]
    var scales: [Float]
    var zeros: [Float]
    /// Column j holds the checkpoint's input feature inputOrder[j]; nil: the checkpoint's order.
    var inputOrder: [Int32]?

    var groupCount: Int { groupSize == 0 ? 1 : (columns + groupSize - 1) / groupSize }

    /// Whether every zero is the symmetric one of its bit width (128 or 8).
    var isSymmetric: Bool { zeros.allSatisfy { $0 == Float(1 << (bits - 1)) } }

    /// The rows `order[0], order[1], …`.
    func reorderingRows(_ order: [Int32]) -> QuantizedLinear {
        var r = self
        let g = groupCount
        r.codes = []
        r.codes.reserveCapacity(codes.count)
        r.scales = []
        r.zeros = []
        for o in order.map(Int.init) {
            r.codes += codes[(o * columns)..<((o + 1) * columns)]
            r.scales += scales[(o * g)..<((o + 1) * g)]
            r.zeros += zeros[(o * g)..<((o + 1) * g)]
        }
        return r
    }

    /// Packed as a .w8 / .w4 matrix; zero points stored unless `hasZeros` is false (then every
    /// zero must be the symmetric one).
    func packed(hasZeros: Bool) -> HostTensor {
        precondition(hasZeros || isSymmetric)
        let format = WeightOnlyFormat(bits: bits, groupSize: groupSize, hasZeros: hasZeros)
        return format.pack(rows: rows, columns: columns, codes: codes, scales: scales, zeros: hasZeros ? zeros : nil)
    }
}

/// A projection as a checkpoint holds it: float, or quantized.
enum CheckpointLinear: Sendable {
    case float(HostTensor)
    case quantized(QuantizedLinear)
    /// A .e4m3 matrix (FP8Format), the checkpoint's codes as they are.
    case fp8(HostTensor)

    var inputOrder: [Int32]? {
        if case .quantized(let q) = self { return q.inputOrder }
        return nil
    }

    func reorderingRows(_ order: [Int32]) -> CheckpointLinear {
        switch self {
        case .float(let t): return .float(t.reorderingRows(order.map(Int.init)))
        case .fp8(let t): return .fp8(t.reorderingRows(order.map(Int.init)))
        case .quantized(let q): return .quantized(q.reorderingRows(order))
        }
    }

    /// The input order dropped: the caller has permuted this matrix's input some other way.
    func forgettingInputOrder() -> CheckpointLinear {
        guard case .quantized(var q) = self else { return self }
        q.inputOrder = nil
        return .quantized(q)
    }
}

extension CheckpointLinear {
    /// Projection `prefix` (its tensors are `prefix.weight`, or `prefix.qweight` and the rest)
    /// of (rows, columns); float when the file has `prefix.weight` (modules_to_not_convert).
    static func read(_ source: WeightSource, _ prefix: String, rows: Int, columns: Int,
                     quantization: CheckpointQuantization?) throws -> CheckpointLinear {
        if let q = quantization, q.method == .fp8, source.has(prefix + ".weight"),
           try source.rawTensor(prefix + ".weight").dtypeName == "F8_E4M3" {
            return .fp8(try readFP8(source, prefix, rows: rows, columns: columns, staticActivations: q.staticActivations))
        }
        guard let q = quantization, q.method != .fp8, !source.has(prefix + ".weight") else {
            return .float(try expect(source.tensor(prefix + ".weight"), [rows, columns], prefix + ".weight", source.path))
        }
        let d = QuantizedDecoder(source: source, prefix: prefix, rows: rows, columns: columns, q: q)
        return .quantized(try q.method == .awq ? d.awq() : d.gptq())
    }

    /// An FP8 projection: its E4M3 codes with per-row scales (a per-tensor scale repeated), and
    /// its static input scale when it has one.
    static func readFP8(_ source: WeightSource, _ prefix: String, rows: Int, columns: Int, staticActivations: Bool) throws -> HostTensor {
        func fail(_ tensor: String, _ why: String) -> CheckpointError { CheckpointError(source.path, "tensor '\(prefix).\(tensor)': \(why)") }
        let raw = try source.rawTensor(prefix + ".weight")
        guard raw.shape == [rows, columns] else { throw fail("weight", "shape \(raw.shape), expected \([rows, columns])") }
        guard source.has(prefix + ".weight_scale") else { throw fail("weight_scale", "missing (FP8 weights need their scale)") }
        let ws = try source.tensor(prefix + ".weight_scale")
        let scaleValues = ws.floatValues()
        let scales: [Float]
        if scaleValues.count == 1 && ws.shape.count <= 1 {
            scales = Array(repeating: scaleValues[0], count: rows)
        } else if ws.shape == [rows, 1] || ws.shape == [rows] {
            scales = scaleValues
        } else {
            throw fail("weight_scale", "shape \(ws.shape): expected [] or [1] (per tensor) or [\(rows), 1] (per channel)")
        }
        var inputScale: Float?
        if source.has(prefix + ".input_scale") {
            let t = try source.tensor(prefix + ".input_scale")
            let v = t.floatValues()
            guard v.count == 1, t.shape.count <= 1 else { throw fail("input_scale", "shape \(t.shape): expected [] or [1] (per tensor)") }
            guard v[0] > 0 && v[0].isFinite else { throw fail("input_scale", "\(v[0]) is not a positive finite scale") }
            inputScale = v[0]
        } else if staticActivations {
            throw fail("input_scale", "missing, but quantization_config says the activations have static scales")
        }
        do {
            return try FP8Format(inputScale: inputScale).pack(rows: rows, columns: columns, codes: raw.bytes, scales: scales)
        } catch let e as QuantizationError {
            throw fail("weight", "\(e)")
        }
    }

    /// Matrices that read the same input, fused by rows (q; k; v or gate; up), and their shared
    /// input order. Quantized parts share one format: zero points stored when any part needs them.
    static func fuse(_ parts: [CheckpointLinear], path: String) throws -> (HostTensor, [Int32]?) {
        let order = parts[0].inputOrder
        for p in parts.dropFirst() where p.inputOrder != order {
            let names = parts.compactMap { if case .quantized(let q) = $0 { return q.name } else { return nil } }
            throw CheckpointError(path, "\(names.joined(separator: ", ")) read the same input but their g_idx give different "
                                  + "act orders (GPTQ derives one order from the shared input)")
        }
        let hasZeros = parts.contains { if case .quantized(let q) = $0 { return !q.isSymmetric } else { return false } }
        let packed = parts.map { p -> HostTensor in
            switch p {
            case .float(let t), .fp8(let t): return t
            case .quantized(let q): return q.packed(hasZeros: hasZeros)
            }
        }
        let fp8 = packed.compactMap(\.fp8)
        if !fp8.isEmpty && (fp8.count < packed.count || Set(fp8.map { $0.inputScale == nil }).count > 1) {
            throw CheckpointError(path, "projections that read the same input must all be FP8 with static input scales, or all "
                                  + "FP8 without (found \(packed.map { $0.fp8.map { "\($0)" } ?? "\($0.dtype)" }))")
        }
        return (fuseRows(packed), order)
    }
}

/// Reads one quantized projection's tensors; every error names the checkpoint and the tensor.
private struct QuantizedDecoder {
    let source: WeightSource
    let prefix: String
    let rows: Int       // output features
    let columns: Int    // input features
    let q: CheckpointQuantization

    var fieldsPerWord: Int { 32 / q.bits }
    var mask: UInt32 { (1 << UInt32(q.bits)) - 1 }
    /// Groups as the file stores them (the file's group size, -1 being one group).
    var fileGroupSize: Int { q.groupSize == 0 ? columns : q.groupSize }
    var fileGroups: Int { (columns + fileGroupSize - 1) / fileGroupSize }

    func fail(_ tensor: String, _ why: String) -> CheckpointError {
        CheckpointError(source.path, "tensor '\(prefix).\(tensor)': \(why)")
    }

    func int32(_ tensor: String, _ shape: [Int]) throws -> Int32Words {
        guard source.has("\(prefix).\(tensor)") else {
            throw fail(tensor, "missing (\(q.method == .awq ? "AWQ" : "GPTQ") layers need qweight, qzeros and scales"
                       + "\(q.method == .gptq ? ", and g_idx with desc_act" : ""))")
        }
        let raw = try source.rawTensor("\(prefix).\(tensor)")
        guard raw.dtypeName == "I32" else { throw fail(tensor, "dtype \(raw.dtypeName), expected I32") }
        let t = Int32Words(raw: raw)
        guard t.shape == shape else {
            throw fail(tensor, "shape \(t.shape), expected \(shape) for \(q.bits)-bit \(q.method.rawValue) of a "
                       + "(\(rows) out, \(columns) in) projection with groups of \(fileGroupSize)")
        }
        return t
    }

    /// scales [groups, out] → rows × groups floats.
    func scales() throws -> [Float] {
        let name = "\(prefix).scales"
        guard source.has(name) else { throw fail("scales", "missing (quantized layers need qweight, qzeros and scales)") }
        let t = try source.tensor(name)
        guard t.shape == [fileGroups, rows] else {
            throw fail("scales", "shape \(t.shape), expected \([fileGroups, rows]) for groups of \(fileGroupSize)")
        }
        let v = t.floatValues()
        var out = [Float](repeating: 0, count: rows * fileGroups)
        for g in 0..<fileGroups { for o in 0..<rows { out[o * fileGroups + g] = v[g * rows + o] } }
        return out
    }

    /// Petrel's group size for the file's, or an error naming the tensor.
    func petrelGroupSize() throws -> Int {
        let chunk = q.bits == 8 ? 16 : 32
        guard columns % chunk == 0 else {
            throw fail("qweight", "\(columns) input features: Petrel's \(q.bits)-bit layout needs a multiple of \(chunk)")
        }
        if fileGroupSize >= columns { return 0 }
        guard fileGroupSize % chunk == 0 else {
            throw fail("qweight", "group size \(fileGroupSize) is not a multiple of \(chunk) columns, which Petrel's "
                       + "\(q.bits)-bit layout needs")
        }
        return fileGroupSize
    }

    /// AutoAWQ GEMM: w[o][i] = (q − z)·s.
    func awq() throws -> QuantizedLinear {
        guard rows % 8 == 0 else { throw fail("qweight", "\(rows) output features is not a multiple of 8") }
        let groupSize = try petrelGroupSize()
        let qweight = try int32("qweight", [columns, rows / 8])
        let qzeros = try int32("qzeros", [fileGroups, rows / 8])
        let scales = try scales()
        // Nibble n of a word holds output 8c + awqOrder[n].
        let awqOrder = [0, 2, 4, 6, 1, 3, 5, 7]
        var codes = [UInt8](repeating: 0, count: rows * columns)
        for i in 0..<columns {
            for c in 0..<(rows / 8) {
                let word = qweight.word(i * (rows / 8) + c)
                for n in 0..<8 { codes[(8 * c + awqOrder[n]) * columns + i] = UInt8((word >> UInt32(4 * n)) & 0xF) }
            }
        }
        var zeros = [Float](repeating: 0, count: rows * fileGroups)
        for g in 0..<fileGroups {
            for c in 0..<(rows / 8) {
                let word = qzeros.word(g * (rows / 8) + c)
                for n in 0..<8 { zeros[(8 * c + awqOrder[n]) * fileGroups + g] = Float((word >> UInt32(4 * n)) & 0xF) }
            }
        }
        return QuantizedLinear(name: "\(prefix)", rows: rows, columns: columns, bits: 4, groupSize: groupSize,
                               codes: codes, scales: scales, zeros: zeros, inputOrder: nil)
    }

    /// AutoGPTQ / GPTQModel: w[o][i] = (q − z)·s with the group g_idx[i].
    func gptq() throws -> QuantizedLinear {
        let f = fieldsPerWord
        guard columns % f == 0, rows % f == 0 else {
            throw fail("qweight", "(\(rows) out, \(columns) in) is not a whole number of \(f)-field words")
        }
        let groupSize = try petrelGroupSize()
        let qweight = try int32("qweight", [columns / f, rows])
        let qzeros = try int32("qzeros", [fileGroups, rows / f])
        let scales = try scales()
        let groupOf = try groupIndex()
        let shift = UInt32(q.bits)
        var codes = [UInt8](repeating: 0, count: rows * columns)
        for r in 0..<(columns / f) {
            for o in 0..<rows {
                let word = qweight.word(r * rows + o)
                for j in 0..<f { codes[o * columns + r * f + j] = UInt8((word >> (shift * UInt32(j))) & mask) }
            }
        }
        var zeros = [Float](repeating: 0, count: rows * fileGroups)
        for g in 0..<fileGroups {
            for c in 0..<(rows / f) {
                let word = qzeros.word(g * (rows / f) + c)
                for j in 0..<f {
                    zeros[(c * f + j) * fileGroups + g] = Float(Int((word >> (shift * UInt32(j))) & mask) + q.zeroOffset)
                }
            }
        }
        var linear = QuantizedLinear(name: "\(prefix)", rows: rows, columns: columns, bits: q.bits, groupSize: groupSize,
                                     codes: codes, scales: scales, zeros: zeros, inputOrder: nil)
        guard let order = try actOrder(groupOf) else { return linear }
        // Column j of the result is input order[j]: groups become contiguous.
        for o in 0..<rows {
            let row = codes[(o * columns)..<((o + 1) * columns)]
            for j in 0..<columns { linear.codes[o * columns + j] = row[row.startIndex + Int(order[j])] }
        }
        linear.inputOrder = order
        return linear
    }

    /// Each input's group (g_idx), checked against desc_act; i / group when the file has none.
    func groupIndex() throws -> [Int] {
        let name = "\(prefix).g_idx"
        guard source.has(name) else {
            if q.actOrder { throw fail("g_idx", "missing, but desc_act is true (act-order needs every input's group)") }
            return (0..<columns).map { $0 / fileGroupSize }
        }
        let t = try int32("g_idx", [columns])
        let groups = (0..<columns).map { Int(t[$0]) }
        if let i = groups.indices.first(where: { groups[$0] < 0 || groups[$0] >= fileGroups }) {
            throw fail("g_idx", "input \(i) is in group \(groups[i]), outside 0..<\(fileGroups)")
        }
        if !q.actOrder, let i = groups.indices.first(where: { groups[$0] != $0 / fileGroupSize }) {
            throw fail("g_idx", "input \(i) is in group \(groups[i]), not \(i / fileGroupSize) (= \(i) / group_size "
                       + "\(fileGroupSize)), but desc_act is false")
        }
        return groups
    }

    /// The input order that makes act-order groups contiguous (inputs sorted by group, stably),
    /// nil when it is the identity; errors unless group g then holds inputs g·size ..< (g+1)·size.
    func actOrder(_ groupOf: [Int]) throws -> [Int32]? {
        let order = groupOf.indices.sorted { groupOf[$0] != groupOf[$1] ? groupOf[$0] < groupOf[$1] : $0 < $1 }
        if order.elementsEqual(0..<columns) { return nil }
        for (j, i) in order.enumerated() where groupOf[i] != j / fileGroupSize {
            throw fail("g_idx", "group \(groupOf[i]) does not hold exactly \(fileGroupSize) inputs, so sorting by group "
                       + "does not give contiguous groups")
        }
        return order.map(Int32.init)
    }
}

/// An I32 tensor of packed fields, read in place.
private struct Int32Words {
    let raw: RawTensor
    var shape: [Int] { raw.shape }
    /// Element i of the row-major flattening (little-endian, as safetensors stores it).
    func word(_ i: Int) -> UInt32 { UInt32(littleEndian: raw.bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
    subscript(i: Int) -> Int32 { Int32(bitPattern: word(i)) }
}
