// BPE: the merge loop shared by every model here. Symbols are token ids; a MergeTable says which
// adjacent pair merges into which token and how early (lower priority merges first; ties go to
// the leftmost pair). Byte-level and HF BPE use the merge rank as priority; SentencePiece-style
// GGUF vocabularies use the merged token's score, highest first (llama.cpp's llm_tokenizer_spm).

struct MergeTable: Sendable {
    /// (left << 32 | right) -> (priority << 32 | merged)
    private var table: [UInt64: UInt64] = [:]

    init() {}

    var count: Int { table.count }

    mutating func reserve(_ n: Int) { table.reserveCapacity(n) }

    /// Adds a merge; an existing entry for the same pair with an earlier priority is kept.
    mutating func insert(left: Int32, right: Int32, merged: Int32, priority: UInt32) {
        let key = Self.key(left, right)
        let value = UInt64(priority) << 32 | UInt64(UInt32(bitPattern: merged))
        if let old = table[key], old >> 32 <= UInt64(priority) { return }
        table[key] = value
    }

    @inline(__always) private static func key(_ l: Int32, _ r: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))
    }

    /// The merge of the pair, as (priority << 32 | merged id), or nil.
    @inline(__always) func lookup(_ l: Int32, _ r: Int32) -> UInt64? {
        table[Self.key(l, r)]
    }

    /// An order-preserving priority for a score where higher scores merge first.
    static func priority(score: Float) -> UInt32 {
        let bits = score.bitPattern
        let ascending = bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
        return ~ascending
    }

    /// Merges `symbols` in place until no adjacent pair has a merge. Negative ids never merge.
    func merge(_ symbols: inout [Int32]) {
        if symbols.count < 2 { return }
        if symbols.count <= 32 { mergeSmall(&symbols) } else { mergeLarge(&symbols) }
    }

    /// O(n²) scan: fastest for the short pieces that pre-tokenizers produce.
    func mergeSmall(_ s: inout [Int32]) {
        while s.count > 1 {
            var best = UInt64.max
            var bestIndex = -1
            for i in 0..<(s.count - 1) {
                if let m = lookup(s[i], s[i + 1]), m >> 32 < best >> 32 {
                    best = m
                    bestIndex = i
                }
            }
            if bestIndex < 0 { return }
            s[bestIndex] = Int32(bitPattern: UInt32(truncatingIfNeeded: best))
            s.remove(at: bestIndex + 1)
        }
    }

    /// Heap of candidate pairs over a linked list: O(n log n) for long words (a SentencePiece
    /// segment is one word however long it is).
    func mergeLarge(_ s: inout [Int32]) {
        let n = s.count
        var ids = s
        var next = [Int32](unsafeUninitializedCapacity: n) { b, c in
            for i in 0..<n { b[i] = i + 1 < n ? Int32(i + 1) : -1 }
            c = n
        }
        var prev = [Int32](unsafeUninitializedCapacity: n) { b, c in
            for i in 0..<n { b[i] = Int32(i - 1) }
            c = n
        }
        var heap = PairHeap()
        heap.reserve(n)
        @inline(__always) func push(_ l: Int32, _ r: Int32, _ heap: inout PairHeap, _ ids: [Int32]) {
            if let m = lookup(ids[Int(l)], ids[Int(r)]) {
                heap.push(PairHeap.Entry(key: (m >> 32) << 32 | UInt64(UInt32(l)),
                                         left: ids[Int(l)], right: ids[Int(r)],
                                         merged: Int32(bitPattern: UInt32(truncatingIfNeeded: m))))
            }
        }
        for i in 0..<(n - 1) { push(Int32(i), Int32(i + 1), &heap, ids) }
        let dead = Int32.min
        while let e = heap.pop() {
            let l = Int(UInt32(truncatingIfNeeded: e.key))
            let r = Int(next[l])
            if ids[l] != e.left || r < 0 || ids[r] != e.right { continue }
            ids[l] = e.merged
            ids[r] = dead
            let rn = next[r]
            next[l] = rn
            if rn >= 0 { prev[Int(rn)] = Int32(l) }
            if prev[l] >= 0 { push(prev[l], Int32(l), &heap, ids) }
            if rn >= 0 { push(Int32(l), rn, &heap, ids) }
        }
        s.removeAll(keepingCapacity: true)
        var i: Int32 = 0
        while i >= 0 {
            s.append(ids[Int(i)])
            i = next[Int(i)]
        }
    }
}

/// A binary min-heap of merge candidates ordered by key = priority << 32 | left position.
struct PairHeap {
    struct Entry {
        var key: UInt64
        var left: Int32
        var right: Int32
        var merged: Int32
    }
    private var a: [Entry] = []

    mutating func reserve(_ n: Int) { a.reserveCapacity(n) }

    mutating func push(_ e: Entry) {
        a.append(e)
        var i = a.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if a[p].key <= e.key { break }
            a[i] = a[p]
            i = p
        }
        a[i] = e
    }

    mutating func pop() -> Entry? {
        guard let top = a.first else { return nil }
        let last = a.removeLast()
        if a.isEmpty { return top }
        var i = 0
        let n = a.count
        while true {
            let l = 2 * i + 1
            if l >= n { break }
            var c = l
            if l + 1 < n && a[l + 1].key < a[l].key { c = l + 1 }
            if a[c].key >= last.key { break }
            a[i] = a[c]
            i = c
        }
        a[i] = last
        return top
    }
}
