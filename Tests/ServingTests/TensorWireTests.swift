// The raw tensor codec both frontends use (TensorWire): every datatype's layout, the size
// checks on request bytes, and the conversions and checks on response tensors.
import Compute
import Foundation
@testable import Serving
import Testing

private func le<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

private func decode(_ bytes: [UInt8], _ datatype: TensorDataType, _ count: Int) throws(TensorWire.DecodeError) -> TensorData {
    try TensorWire.decode(Data(bytes), datatype: datatype, count: count)
}

private func decodeError(_ bytes: [UInt8], _ datatype: TensorDataType, _ count: Int) -> TensorWire.DecodeError? {
    do {
        _ = try decode(bytes, datatype, count)
        return nil
    } catch {
        return error
    }
}

@Suite struct TensorWireTests {
    @Test func everyDatatypeRoundTrips() throws {
        let cases: [(TensorDataType, TensorData)] = [
            (.bool, .bools([true, false, true])),
            (.uint8, .ints([0, 255])), (.int8, .ints([-128, 127])),
            (.uint16, .ints([0, 65535])), (.int16, .ints([-32768, 32767])),
            (.uint32, .ints([0, 4_294_967_295])), (.int32, .ints([Int64(Int32.min), Int64(Int32.max)])),
            (.uint64, .ints([0, -1])),  // UINT64.max travels as the bit pattern of -1
            (.int64, .ints([.min, .max])),
            (.fp16, .floats([1, -2, 65504])), (.bf16, .floats([1, -2, 0.5])),
            (.fp32, .floats([Double(Float(0.1)), -3.5])), (.fp64, .floats([0.1, -.infinity])),
            (.bytes, .bytes([Data("one".utf8), Data(), Data([0xFF, 0x00])])),
        ]
        for (datatype, data) in cases {
            let t = InferTensor(name: "x", datatype: datatype, shape: [data.count], data: data)
            let raw = try TensorWire.encode(t)
            #expect(raw.count == (datatype.elementSize.map { $0 * data.count } ?? raw.count), "\(datatype)")
            #expect(try TensorWire.decode(raw, datatype: datatype, count: data.count) == data, "\(datatype)")
        }
    }

    @Test func layoutIsLittleEndianAndBytesAreLengthPrefixed() throws {
        #expect(try TensorWire.encode(.int32("x", [2], [1, -2])) == Data(le([Int32(1), -2])))
        #expect(try TensorWire.encode(InferTensor(name: "x", datatype: .fp16, shape: [1], data: .floats([1]))) == Data([0x00, 0x3C]))
        #expect(try TensorWire.encode(.text("x", [2], ["ab", ""])) == Data([2, 0, 0, 0, 0x61, 0x62, 0, 0, 0, 0]))
        #expect(try decode([1, 0, 0, 0, 0x7A], .bytes, 1) == .bytes([Data("z".utf8)]))
    }

    @Test func sizeErrorsSayWhatDisagrees() {
        #expect(decodeError(le([Int32(1)]), .int32, 2) == .byteSize(expected: 8, actual: 4))
        #expect(decodeError(le([Int32(1), 2, 3]), .int32, 2) == .byteSize(expected: 8, actual: 12))
        #expect(decodeError([], .fp64, Int.max / 4) == .byteSize(expected: nil, actual: 0))  // count × 8 overflows
        #expect(decodeError([5, 0], .bytes, 1) == .truncatedLength(offset: 0))
        #expect(decodeError([1, 0, 0, 0, 0x61, 9], .bytes, 2) == .truncatedLength(offset: 5))
        #expect(decodeError([1, 0, 0, 0, 0x61, 3, 0, 0, 0, 0x62], .bytes, 2) == .elementOverrun(index: 1, length: 3, remaining: 1))
        #expect(decodeError([1, 0, 0, 0, 0x61], .bytes, 2) == .elementCount(expected: 2, actual: 1))
        #expect(decodeError([], .bytes, 1) == .elementCount(expected: 1, actual: 0))
        #expect(decodeError([], .bytes, 0) == nil)
    }

    @Test func outputsOfAnotherFamilyAreConverted() throws {
        let asInt = InferTensor(name: "x", datatype: .int32, shape: [4], data: .floats([1.9, -2.5, .nan, .infinity]))
        #expect(try TensorWire.encode(asInt) == Data(le([Int32(1), -2, 0, 0])))
        let asFloat = InferTensor(name: "x", datatype: .fp64, shape: [2], data: .bools([true, false]))
        #expect(try TensorWire.encode(asFloat) == Data(le([Double(1).bitPattern, Double(0).bitPattern])))
    }

    @Test func outputsThatCannotBeWrittenAreInternalErrors() {
        let cases = [
            InferTensor(name: "x", datatype: .bytes, shape: [1], data: .ints([1])),
            InferTensor(name: "x", datatype: .int32, shape: [1], data: .bytes([Data()])),
            InferTensor(name: "x", datatype: .int32, shape: [3], data: .ints([1, 2])),
        ]
        for t in cases {
            #expect(throws: ServingError.self) { try TensorWire.encode(t) }
            do { _ = try TensorWire.encode(t) } catch let e as ServingError { #expect(e.status == .internalError) } catch {}
        }
    }

    @Test func elementCountRejectsNegativeAndOverflowingShapes() {
        #expect(TensorWire.elementCount([]) == 1)
        #expect(TensorWire.elementCount([2, 0, 3]) == 0)
        #expect(TensorWire.elementCount([2, 3]) == 6)
        #expect(TensorWire.elementCount([-1, 2]) == nil)
        #expect(TensorWire.elementCount([Int.max, 2]) == nil)
    }
}
