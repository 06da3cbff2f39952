// JSONCore: the parser under both callers' options (KServe bodies: strict; tokenizer files:
// lone surrogates replaced, deeper nesting), numbers, nesting limits, errors with their byte
// offsets, byte-exact keys, and the writer.
import JSONCore
import Testing

private let kserve = JSONParser.Options()  // HTTPFrontend's: the strict defaults
private let tokenizerFile = JSONParser.Options(loneSurrogate: .replace, maxDepth: 512)

private func parse(_ text: String, _ options: JSONParser.Options = kserve) throws -> JSON {
    try JSONParser.parse(Array(text.utf8), options: options)
}

private func parseError(_ bytes: [UInt8], _ options: JSONParser.Options = kserve) -> JSONParseError? {
    do {
        _ = try JSONParser.parse(bytes, options: options)
        return nil
    } catch let e as JSONParseError {
        return e
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

private func parseError(_ text: String, _ options: JSONParser.Options = kserve) -> JSONParseError? {
    parseError(Array(text.utf8), options)
}

@Suite struct ValueTests {
    @Test func scalarsArraysAndObjects() throws {
        #expect(try parse(" null ") == .null)
        #expect(try parse("true") == .bool(true))
        #expect(try parse("false") == .bool(false))
        #expect(try parse(#""x""#) == .string("x"))
        #expect(try parse("[]") == .array([]))
        #expect(try parse("{}") == .object(JSONObject()))
        let v = try parse(#"{"b": [1, {"c": null}], "a": "s"}"#)
        #expect(v == .object(JSONObject([("b", .array([.int(1), .object(JSONObject([("c", .null)]))])), ("a", .string("s"))])))
        #expect(v["a"] == .string("s"))
        #expect(v["missing"] == nil)
        #expect(v["b"]?["c"] == nil)  // not an object
        #expect(v["b"]?.typeName == "array")
    }

    @Test func membersKeepTheirOrderAndTheFirstOfARepeatedKeyAnswers() throws {
        guard case .object(let o) = try parse(#"{"z": 1, "a": 2, "z": 3}"#) else { Issue.record("not an object"); return }
        #expect(o.members.map(\.key) == ["z", "a", "z"])
        #expect(o["z"] == .int(1))
    }

    @Test func keysAndStringsCompareByteForByte() throws {
        // "é" precomposed and decomposed are canonically equivalent, and still different keys.
        let v = try parse(#"{"\u00e9": 1, "e\u0301": 2}"#, tokenizerFile)
        #expect(v["\u{E9}"] == .int(1))
        #expect(v["e\u{301}"] == .int(2))
        #expect(JSON.string("\u{E9}") != JSON.string("e\u{301}"))
        #expect(JSONObject([("\u{E9}", .null)]) != JSONObject([("e\u{301}", .null)]))
    }

    @Test func byteOrderMarkIsSkipped() throws {
        #expect(try JSONParser.parse([0xEF, 0xBB, 0xBF] + Array("[1]".utf8)) == .array([.int(1)]))
    }

    @Test func parsesNonContiguousCollections() throws {
        #expect(try JSONParser.parse("[true]".utf8.lazy.map { $0 }) == .array([.bool(true)]))
    }
}

@Suite struct NumberTests {
    @Test func integersKeepIntegernessAcrossInt64AndUInt64() throws {
        let v = try parse("[0, -0, -1, 9223372036854775807, -9223372036854775808, 9223372036854775808, 18446744073709551615]")
        #expect(v == .array([.int(0), .int(0), .int(-1), .int(.max), .int(.min), .uint(9223372036854775808), .uint(.max)]))
    }

    @Test func fractionsExponentsAndOverflowAreDoubles() throws {
        let v = try parse("[1.5, -0.0, 1e3, 1E-2, 2.5e+1, 18446744073709551616, -9223372036854775809]")
        #expect(v == .array([.double(1.5), .double(-0.0), .double(1000), .double(0.01), .double(25),
                             .double(18446744073709551616), .double(-0x1p63)]))
        #expect(try parse("1.0") != .int(1))  // integer-ness is kept, not inferred from the value
    }

    @Test func numberViewsEveryNumberAsDouble() throws {
        #expect(try parse("3").number == 3)
        #expect(try parse("18446744073709551615").number == 0x1p64)  // the nearest Double
        #expect(try parse("0.25").number == 0.25)
        #expect(try parse(#""3""#).number == nil)
    }

    @Test func rejectsMalformedNumbers() {
        for text in ["01", "-01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "1.2.3", "NaN", "Infinity", "--1"] {
            #expect(parseError(text) != nil, "\(text)")
            #expect(parseError(text, tokenizerFile) != nil, "\(text)")
        }
        #expect(parseError("01")?.message == "leading zero in a number")
    }
}

@Suite struct StringTests {
    @Test func escapesDecode() throws {
        let v = try parse(#""tab\there \u00e9 \ud83d\ude42 \"q\" \\ \/ \b\f\n\r""#)
        #expect(v == .string("tab\there é 🙂 \"q\" \\ / \u{8}\u{C}\n\r"))
        #expect(try parse(#""日本""#) == .string("日本"))
    }

    @Test func loneSurrogatesAreRejectedByDefault() {
        for text in [#""\ud800""#, #""\udc00""#, #""a\ud800b""#, #""\ud800\u0041""#, #""\ud800\ud800""#, #""\udc00\ud800""#] {
            let e = parseError(text)
            #expect(e?.message == "unpaired surrogate in a \\u escape", "\(text)")
        }
        // The offset names the escape.
        #expect(parseError(#""ab\udc00""#)?.offset == 3)
    }

    @Test func loneSurrogatesBecomeReplacementCharactersWhenAsked() throws {
        #expect(try parse(#""\ud800""#, tokenizerFile) == .string("\u{FFFD}"))
        #expect(try parse(#""\udc00x""#, tokenizerFile) == .string("\u{FFFD}x"))
        #expect(try parse(#""a\ud800b""#, tokenizerFile) == .string("a\u{FFFD}b"))
        // A high surrogate followed by a non-low escape: the second escape is read on its own.
        #expect(try parse(#""\ud800\u0041""#, tokenizerFile) == .string("\u{FFFD}A"))
        #expect(try parse(#""\ud800\ud83d\ude42""#, tokenizerFile) == .string("\u{FFFD}🙂"))
        #expect(try parse(#""\ud800\n""#, tokenizerFile) == .string("\u{FFFD}\n"))
        // Pairs decode the same under both options.
        #expect(try parse(#""\uD83D\uDE42""#, tokenizerFile) == parse(#""\uD83D\uDE42""#))
        // A bad escape after the high surrogate is still an error.
        #expect(parseError(#""\ud800\uzzzz""#, tokenizerFile)?.message == "invalid hex digit in a \\u escape")
    }

    @Test func invalidUTF8IsAnErrorAtItsByte() {
        // "ab" then a lone continuation byte: offset 3 (after the quote and "ab").
        #expect(parseError([0x22, 0x61, 0x62, 0x80, 0x22]) == JSONParseError(offset: 3, message: "invalid UTF-8 in a string"))
        // After an escape, on the slow path: "\n" é (valid) then a truncated 3-byte sequence.
        #expect(parseError([0x22, 0x5C, 0x6E, 0xC3, 0xA9, 0xE4, 0xBD, 0x22], tokenizerFile)?.offset == 5)
        // An encoded surrogate (CESU-8) and an overlong form are invalid too.
        #expect(parseError([0x22, 0xED, 0xA0, 0x80, 0x22])?.offset == 1)
        #expect(parseError([0x22, 0xC0, 0xAF, 0x22])?.offset == 1)
        // In a key as well.
        #expect(parseError([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D])?.offset == 2)
        // The generate route's case: {"text_input": "\xff\xfe"} names the first bad byte.
        #expect(parseError(Array(#"{"text_input": ""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8))
                == JSONParseError(offset: 16, message: "invalid UTF-8 in a string"))
    }

    @Test func bytesOutsideStringsNameInvalidUTF8() {
        // Where a value should begin: a byte that starts no UTF-8 sequence, a truncated one.
        #expect(parseError([0x5B, 0xFF, 0x5D]) == JSONParseError(offset: 1, message: "invalid UTF-8"))
        #expect(parseError([0x7B, 0x22, 0x61, 0x22, 0x3A, 0xE2, 0x82, 0x7D]) == JSONParseError(offset: 5, message: "invalid UTF-8"))
        // Valid UTF-8 that is not JSON is named as its character.
        #expect(parseError("[é]") == JSONParseError(offset: 1, message: "unexpected character 'é'"))
        #expect(parseError("[x]") == JSONParseError(offset: 1, message: "unexpected character 'x'"))
    }

    @Test func controlCharactersAndBadEscapesAreErrors() {
        #expect(parseError("\"a\u{1}\"")?.message == "control character in a string")
        #expect(parseError("\"a\\\u{1}\"") != nil)
        #expect(parseError(#""\x""#) == JSONParseError(offset: 1, message: "invalid escape '\\x'"))
        #expect(parseError(#""\u12""#)?.message.contains("truncated") == true)
    }
}

@Suite struct NestingTests {
    private func nested(_ depth: Int) -> String { String(repeating: "[", count: depth) + String(repeating: "]", count: depth) }

    @Test func depthUpToTheLimitParses() throws {
        _ = try parse(nested(100))
        _ = try parse(nested(512), tokenizerFile)
        _ = try parse(String(repeating: #"{"a":"#, count: 100) + "1" + String(repeating: "}", count: 100))
    }

    @Test func deeperIsAnErrorNamingTheLimit() {
        #expect(parseError(nested(101))?.message == "JSON nesting depth exceeds maximum allowed limit (100)")
        #expect(parseError(nested(101))?.offset == 100)
        #expect(parseError(nested(513), tokenizerFile)?.message == "JSON nesting depth exceeds maximum allowed limit (512)")
        #expect(parseError(nested(100_000), tokenizerFile) != nil)  // never recursed into
    }
}

@Suite struct ErrorTests {
    @Test func malformedTextIsRejectedUnderBothOptions() {
        for text in ["", " ", "{", "[1,]", "[1 2]", "{\"a\" 1}", "{\"a\":1,}", "{a:1}", "{1:1}", "tru", "nul", "True",
                     "[1] 2", "\"abc", "[", "{\"a\":", "'a'", "[,]"] {
            #expect(parseError(text) != nil, "\(text)")
            #expect(parseError(text, tokenizerFile) != nil, "\(text)")
        }
    }

    @Test func endOfInputSaysTruncatedAndWhere() {
        #expect(parseError("") == JSONParseError(offset: 0, message: "unexpected end of JSON (truncated?)"))
        #expect(parseError(#"{"a": [1, 2"#) == JSONParseError(offset: 11, message: "unexpected end of JSON inside an array (truncated?)"))
        #expect(parseError(#"{"a": 1"#)?.message == "unexpected end of JSON inside an object (truncated?)")
        #expect(parseError(#"{"a"#)?.message == "unexpected end of JSON inside a string (truncated?)")
        #expect(parseError("[tr")?.message == "unexpected end of JSON (truncated?)")
    }

    @Test func offsetsNameTheByte() {
        #expect(parseError("[1] 2") == JSONParseError(offset: 4, message: "unexpected text after the JSON value"))
        #expect(parseError("[1, x]") == JSONParseError(offset: 4, message: "unexpected character 'x'"))
        #expect(parseError(#"{"a" 1}"#) == JSONParseError(offset: 5, message: "expected ':'"))
        #expect(parseError("[trux]") == JSONParseError(offset: 1, message: "invalid literal"))
        #expect(parseError("[1] 2")?.description == "unexpected text after the JSON value at byte 4")
    }
}

@Suite struct WriterTests {
    @Test func writesCompactTextThatParsesBack() throws {
        let v = try parse(#"{"a": "tab\there \u00e9 \ud83d\ude42 \"q\" \\ \/", "b": [1, -2, 18446744073709551615, 0.5, true, null], "c": {}}"#)
        let text = String(decoding: JSONWriter.encode(v), as: UTF8.self)
        #expect(text == #"{"a":"tab\there é 🙂 \"q\" \\ /","b":[1,-2,18446744073709551615,0.5,true,null],"c":{}}"#)
        #expect(try parse(text) == v)
    }

    @Test func escapesControlCharactersOnly() {
        var w = JSONWriter()
        w.string("\u{1}\n\u{1F}é")
        #expect(String(decoding: w.bytes, as: UTF8.self) == #""\u0001\n\u001fé""#)
        var b = JSONWriter()
        b.string(bytes: [0xFF, 0x41])  // BYTES that are not UTF-8 pass through
        #expect(b.bytes == [0x22, 0xFF, 0x41, 0x22])
    }

    @Test func writesDoublesAsRapidJSONDoes() {
        var w = JSONWriter()
        w.value(.array([.double(1), .double(0.1), .double(-2.5e-8), .double(Double(Float(0.1))), .double(.nan),
                        .double(.infinity), .double(-.infinity)]))
        #expect(String(decoding: w.bytes, as: UTF8.self) == "[1.0,0.1,-2.5e-08,0.10000000149011612,NaN,Infinity,-Infinity]")
    }
}
