// The two merge loops (quadratic scan for short pieces, heap for long ones) agree.
import Compute
import Testing
@testable import Tokenization

@Test func mergeLoopsAgree() {
    var rng = SplitMix64(seed: 7)
    for trial in 0..<200 {
        // A random merge table over a small alphabet, so that merges overlap and chain.
        var table = MergeTable()
        let symbols: Int32 = 6
        var next: Int32 = symbols
        for rank in 0..<40 {
            let l = Int32(rng.next() % UInt64(next)), r = Int32(rng.next() % UInt64(next))
            table.insert(left: l, right: r, merged: next, priority: UInt32(rank / (trial % 3 + 1)))
            next += 1
        }
        let n = Int(rng.next() % 80) + 2
        let input = (0..<n).map { _ in Int32(rng.next() % UInt64(symbols)) }
        var a = input, b = input
        table.mergeSmall(&a)
        table.mergeLarge(&b)
        #expect(a == b, "trial \(trial): \(input)")
    }
}

@Test func scorePriorityOrdersHighestFirst() {
    let scores: [Float] = [-1000, -3.5, -1, -0.0, 0, 0.5, 12]
    let priorities = scores.map(MergeTable.priority(score:))
    #expect(priorities == priorities.sorted(by: >) || zip(priorities, priorities.dropFirst()).allSatisfy { $0 >= $1 })
    #expect(MergeTable.priority(score: 2) < MergeTable.priority(score: 1))
}
