// ExactString: a String dictionary key compared byte for byte. Swift's String == treats
// canonically equivalent text as equal ("é" == "e\u{301}"), but vocabularies may hold both.

struct ExactString: Hashable, Sendable {
    let value: String

    init(_ value: String) { self.value = value }

    static func == (a: ExactString, b: ExactString) -> Bool {
        a.value.utf8.count == b.value.utf8.count && a.value.utf8.elementsEqual(b.value.utf8)
    }

    func hash(into h: inout Hasher) {
        var s = value
        s.withUTF8 { h.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
