// Block manager: counts, append at block boundaries, fork and copy-on-write, prefix reuse, LRU
// eviction, cache sizing.
import Engine
import Testing

@Suite struct BlockManagerTests {
    @Test func allocateAndDeallocate() throws {
        var m = BlockManager(blockSize: 16, numBlocks: 4)
        #expect(m.canAllocate(prompt(64)))
        #expect(!m.canAllocate(prompt(65)))
        #expect(m.allocate(prompt(65)) == nil)
        #expect(m.numFreeBlocks == 4)

        let a = try unwrap(m.allocate(prompt(20)))
        #expect(a.blockTable.count == 2 && a.cachedTokenCount == 0)
        #expect(m.numUsedBlocks == 2 && m.numFreeBlocks == 2)
        #expect(a.blockTable.allSatisfy { m.refCount($0) == 1 })
        m.deallocate(a.blockTable)
        #expect(m.numFreeBlocks == 4 && m.numUsedBlocks == 0)
    }

    @Test func appendTakesABlockOnlyAtBoundaries() throws {
        var m = BlockManager(blockSize: 4, numBlocks: 3)
        var table = try unwrap(m.allocate(prompt(3))).blockTable
        #expect(table.count == 1)
        for computed in 3 ..< 12 {
            let before = table.count
            let copies = try unwrap(m.appendSlots(&table, computedCount: computed))
            #expect(copies.isEmpty)
            #expect(table.count == before + (computed % 4 == 0 ? 1 : 0))
        }
        #expect(table.count == 3 && m.numFreeBlocks == 0)
        #expect(!m.canAppend(table, computedCount: 12))
        #expect(m.appendSlots(&table, computedCount: 12) == nil)
        #expect(table.count == 3)
    }

    @Test func forkSharesBlocksAndCopiesAPartialBlockOnWrite() throws {
        var m = BlockManager(blockSize: 4, numBlocks: 8)
        let parent = try unwrap(m.allocate(prompt(6))).blockTable   // blocks 0 (full), 1 (2 of 4)
        var beams = [parent, m.fork(parent), m.fork(parent)]
        #expect(m.refCount(parent[0]) == 3 && m.refCount(parent[1]) == 3)
        #expect(m.numUsedBlocks == 2)
        // Three sharers of the partial block: two copies, the last one writes in place.
        #expect(m.blocksNeeded(toAppend: 1, to: beams.map { ($0, 6) }) == 2)
        var copies: [BlockCopy] = []
        for i in beams.indices { copies += try unwrap(m.appendSlots(&beams[i], computedCount: 6)) }
        #expect(copies.count == 2)
        #expect(copies.allSatisfy { $0.from == parent[1] })
        #expect(Set(beams.map { $0[1] }).count == 3)                       // each beam owns its last block
        #expect(beams.allSatisfy { $0[0] == parent[0] })                   // the full block stays shared
        #expect(beams.allSatisfy { m.refCount($0[1]) == 1 })
        #expect(m.refCount(parent[0]) == 3)
        // At a block boundary nothing is copied: a new block is taken.
        var a = try unwrap(m.allocate(prompt(4))).blockTable
        var b = m.fork(a)
        #expect(try unwrap(m.appendSlots(&a, computedCount: 4)).isEmpty)
        #expect(try unwrap(m.appendSlots(&b, computedCount: 4)).isEmpty)
        #expect(a[0] == b[0] && a[1] != b[1])
        for t in beams + [a, b] { m.deallocate(t) }
        #expect(m.numFreeBlocks == 8)
    }

    @Test func prefixReuseByChainedHashOfFullBlocks() throws {
        var m = BlockManager(blockSize: 16, numBlocks: 16, enableReuse: true)
        let shared = prompt(64)
        let first = shared + prompt(8, from: 500)
        var a = try unwrap(m.allocate(first))
        #expect(a.cachedTokenCount == 0)
        m.commitFullBlocks(a.blockTable, tokens: first, computedCount: first.count, hashes: &a.blockHashes)
        #expect(a.blockHashes.count == 4 && m.numCachedBlocks == 4)

        let second = shared + prompt(8, from: 700)
        #expect(m.cachedTokenCount(second) == 64)
        #expect(m.blocksNeeded(toAllocate: second) == 1)                   // hits in use cost nothing
        let b = try unwrap(m.allocate(second))
        #expect(b.cachedTokenCount == 64)
        #expect(Array(b.blockTable.prefix(4)) == Array(a.blockTable.prefix(4)))
        #expect(b.blockHashes == a.blockHashes)
        #expect(m.reuseHits == 4)
        #expect(m.refCount(a.blockTable[0]) == 2)

        // The block holding the last token is never a hit: 64 tokens reuse 3 blocks.
        #expect(m.cachedTokenCount(shared) == 48)
        // The chain: the same tokens after a different prefix are a miss.
        #expect(m.cachedTokenCount(prompt(16, from: 116) + prompt(16, from: 100) + [1]) == 0)
        // Reuse off: nothing is registered or found.
        var off = BlockManager(blockSize: 16, numBlocks: 16)
        var c = try unwrap(off.allocate(first))
        off.commitFullBlocks(c.blockTable, tokens: first, computedCount: first.count, hashes: &c.blockHashes)
        #expect(off.numCachedBlocks == 0 && off.cachedTokenCount(second) == 0)
    }

    @Test func freedCachedBlocksStayReusableUntilEvictedLRU() throws {
        var m = BlockManager(blockSize: 4, numBlocks: 4, enableReuse: true)
        let x = prompt(9, from: 10), y = prompt(9, from: 50)
        var a = try unwrap(m.allocate(x))                                 // 3 blocks, 2 full
        m.commitFullBlocks(a.blockTable, tokens: x, computedCount: 8, hashes: &a.blockHashes)
        m.deallocate(a.blockTable)
        #expect(m.numFreeBlocks == 4 && m.numCachedBlocks == 2)
        // Still found after being freed.
        var again = try unwrap(m.allocate(x))
        #expect(again.cachedTokenCount == 8 && m.reuseHits == 2)
        m.deallocate(again.blockTable)

        // A request needing one block takes an uncached free block, not a cached one.
        let one = try unwrap(m.allocate([1, 2, 3]))
        #expect(m.numCachedBlocks == 2)
        m.deallocate(one.blockTable)

        // y needs 3 blocks: 2 uncached + 1 evicted; the deepest cached block goes first.
        var b = try unwrap(m.allocate(y))
        #expect(m.numCachedBlocks == 1)
        #expect(m.cachedTokenCount(x) == 4)
        m.commitFullBlocks(b.blockTable, tokens: y, computedCount: 8, hashes: &b.blockHashes)
        m.deallocate(b.blockTable)
        again = try unwrap(m.allocate(x))
        #expect(again.cachedTokenCount == 4)
    }

    @Test func duplicateContentIsRegisteredOnce() throws {
        var m = BlockManager(blockSize: 4, numBlocks: 8, enableReuse: true)
        let t = prompt(5)
        var a = try unwrap(m.allocate(t)), b = try unwrap(m.allocate(t))   // b allocated before a commits
        m.commitFullBlocks(a.blockTable, tokens: t, computedCount: 5, hashes: &a.blockHashes)
        m.commitFullBlocks(b.blockTable, tokens: t, computedCount: 5, hashes: &b.blockHashes)
        #expect(m.numCachedBlocks == 1 && a.blockHashes == b.blockHashes)
        m.deallocate(a.blockTable)
        m.deallocate(b.blockTable)
        #expect(m.numFreeBlocks == 8)
    }

    @Test func cacheSizing() {
        // Llama 3 8B-like: 32 layers, 8 KV heads, head dim 128, fp16, 32 tokens per block = 4 MiB.
        let perBlock = KVCacheSizing.bytesPerBlock(layerCount: 32, kvHeadCount: 8, headDim: 128, blockSize: 32, bytesPerElement: 2)
        #expect(perBlock == 4 << 20)
        let budget = KVCacheSizing.gpuBudget(freeBytesAfterWeights: 40 << 30, freeGPUMemoryFraction: 0.5)
        #expect(budget == 20 << 30)
        #expect(KVCacheSizing.gpuBudget(freeBytesAfterWeights: 10 << 30) == Int(Double(10 << 30) * 0.9))
        #expect(KVCacheSizing.blockCount(budgetBytes: budget, bytesPerBlock: perBlock, blockSize: 32) == 5120)
        #expect(KVCacheSizing.blockCount(budgetBytes: budget, bytesPerBlock: perBlock, blockSize: 32, maxTokens: 1000) == 32)
        #expect(KVCacheSizing.blockCount(budgetBytes: budget, bytesPerBlock: perBlock, blockSize: 32, maxTokens: 1 << 30) == 5120)
        #expect(KVCacheSizing.blockCount(budgetBytes: perBlock - 1, bytesPerBlock: perBlock, blockSize: 32) == 0)
    }
}
