// Paged KV cache bookkeeping: fixed-size blocks, reference counts, a free list that doubles as
// the LRU of reusable cached blocks, prefix reuse by chained block hashes, copy-on-write forks.
// Block ids only; the runner owns the memory they index.

/// Copy the whole KV block `from` into block `to` (every layer, K and V) before the forward pass.
public struct BlockCopy: Equatable, Hashable, Sendable {
    public var from: Int32
    public var to: Int32
    public init(from: Int32, to: Int32) { self.from = from; self.to = to }
}

/// Contracts:
/// - A block is free exactly when its reference count is 0. Free blocks that hold a registered
///   full block (cached) stay findable by hash until `allocate` or `appendSlots` takes them
///   for new content; free uncached blocks are handed out first, then cached ones oldest-freed
///   first (LRU).
/// - Only full, computed blocks are registered (`commitFullBlocks`), so a cached block is never
///   written again. Partially filled blocks are shared only by `fork`; the next write into a
///   shared partial block copies it first (`appendSlots` returns the copy).
public struct BlockManager: Sendable {
    public let blockSize: Int
    public let numBlocks: Int
    public let enableReuse: Bool
    /// Full blocks found in the cache by `allocate` (TRT-LLM's reused blocks).
    public private(set) var reuseHits = 0
    /// Full blocks looked up by `allocate` (hits + misses).
    public private(set) var reuseQueries = 0

    private var refCounts: [Int32]
    /// The content of each registered block; nil for blocks that are not in the cache.
    private var keys: [BlockKey?]
    private var cached: [BlockKey: Int32] = [:]
    private var free: FreeList

    /// Identity of a full block: the chain hash of everything before it plus its own tokens.
    /// Equality compares the tokens, so only a 64-bit collision of the parent chain can alias.
    struct BlockKey: Hashable, Sendable {
        var parent: UInt64
        var tokens: [Int32]

        /// The chain hash this block passes to the next one (deterministic across runs).
        var chainHash: UInt64 {
            var h = parent ^ 0x9E37_79B9_7F4A_7C15
            for t in tokens {
                h = (h ^ UInt64(UInt32(bitPattern: t))) &* 0xBF58_476D_1CE4_E5B9
                h ^= h >> 31
            }
            return h
        }
    }

    /// The chain hash before the first block.
    static let rootHash: UInt64 = 0

    public init(blockSize: Int = 32, numBlocks: Int, enableReuse: Bool = false) {
        precondition(blockSize > 0 && numBlocks >= 0, "blockSize must be > 0 and numBlocks >= 0")
        self.blockSize = blockSize
        self.numBlocks = numBlocks
        self.enableReuse = enableReuse
        refCounts = Array(repeating: 0, count: numBlocks)
        keys = Array(repeating: nil, count: numBlocks)
        free = FreeList(count: numBlocks)
    }

    public var numFreeBlocks: Int { free.count }
    public var numUsedBlocks: Int { numBlocks - free.count }
    /// Registered full blocks, in use or free.
    public var numCachedBlocks: Int { cached.count }
    public func refCount(_ block: Int32) -> Int { Int(refCounts[Int(block)]) }
    /// Blocks that hold `tokenCount` tokens.
    public func blocksFor(_ tokenCount: Int) -> Int { (tokenCount + blockSize - 1) / blockSize }

    // MARK: allocate / deallocate

    public struct Allocation: Equatable, Sendable {
        public var blockTable: [Int32]
        /// Leading tokens whose KV is already in the table's cached blocks (a multiple of blockSize).
        public var cachedTokenCount: Int
        /// Chain hashes of the cached blocks, for `commitFullBlocks` to continue.
        public var blockHashes: [UInt64]
    }

    /// Free blocks that `allocate(tokens)` would take: new blocks plus cache hits that sit in
    /// the free list (a hit on a block in use costs nothing).
    public func blocksNeeded(toAllocate tokens: [Int32]) -> Int {
        let hits = lookup(tokens).blocks
        return blocksFor(tokens.count) - hits.count + hits.filter { refCounts[Int($0)] == 0 }.count
    }

    /// Leading tokens whose KV `allocate(tokens)` would find in the cache.
    public func cachedTokenCount(_ tokens: [Int32]) -> Int { lookup(tokens).blocks.count * blockSize }

    public func canAllocate(_ tokens: [Int32]) -> Bool { blocksNeeded(toAllocate: tokens) <= free.count }

    /// A block table for all of `tokens`, reusing cached blocks for the longest prefix of full
    /// blocks that excludes the last token (which must be computed to sample). nil, with
    /// nothing changed, when the free blocks do not suffice.
    public mutating func allocate(_ tokens: [Int32]) -> Allocation? {
        guard canAllocate(tokens) else { return nil }
        let (hits, hashes) = lookup(tokens)
        if enableReuse {
            reuseQueries += max(tokens.count - 1, 0) / blockSize
            reuseHits += hits.count
        }
        var table = hits
        for b in hits {
            if refCounts[Int(b)] == 0 { free.remove(b) }
            refCounts[Int(b)] += 1
        }
        while table.count < blocksFor(tokens.count) { table.append(takeFreeBlock()) }
        return Allocation(blockTable: table, cachedTokenCount: hits.count * blockSize, blockHashes: hashes)
    }

    /// Drops one reference to every block of `table`. Blocks reaching 0 become free: uncached
    /// ones to be handed out next, cached ones to the LRU tail, deepest block first so that a
    /// prefix outlives its continuation.
    public mutating func deallocate(_ table: [Int32]) {
        for b in table.reversed() {
            precondition(refCounts[Int(b)] > 0, "block \(b) freed more often than allocated")
            refCounts[Int(b)] -= 1
            if refCounts[Int(b)] == 0 {
                if keys[Int(b)] == nil { free.pushFront(b) } else { free.pushBack(b) }
            }
        }
    }

    // MARK: append / fork

    /// Free blocks needed to append `newTokenCount` tokens to each sequence, in order, the way
    /// `appendSlots` will: new blocks past the table's end, plus a copy of the block at the
    /// write position when it is partially filled and shared (a block shared only among these
    /// sequences is copied for all but the last of them).
    public func blocksNeeded(toAppend newTokenCount: Int, to sequences: [(blockTable: [Int32], computedCount: Int)]) -> Int {
        var released: [Int32: Int32] = [:]
        var needed = 0
        for (table, computed) in sequences {
            let index = computed / blockSize
            if computed % blockSize != 0 && index < table.count {
                let b = table[index]
                if refCounts[Int(b)] - released[b, default: 0] > 1 {
                    needed += 1
                    released[b, default: 0] += 1
                }
            }
            needed += max(0, blocksFor(computed + newTokenCount) - table.count)
        }
        return needed
    }

    public func canAppend(_ table: [Int32], computedCount: Int, newTokenCount: Int = 1) -> Bool {
        blocksNeeded(toAppend: newTokenCount, to: [(table, computedCount)]) <= free.count
    }

    /// Makes `table` hold `computedCount + newTokenCount` tokens with the write range owned by
    /// this sequence alone. Returns the block copies the runner must do first (0 or 1), or nil,
    /// with nothing changed, when the free blocks do not suffice.
    public mutating func appendSlots(_ table: inout [Int32], computedCount: Int, newTokenCount: Int = 1) -> [BlockCopy]? {
        guard canAppend(table, computedCount: computedCount, newTokenCount: newTokenCount) else { return nil }
        var copies: [BlockCopy] = []
        let index = computedCount / blockSize
        if computedCount % blockSize != 0 && index < table.count && refCounts[Int(table[index])] > 1 {
            let shared = table[index]
            let copy = takeFreeBlock()
            refCounts[Int(shared)] -= 1
            table[index] = copy
            copies.append(BlockCopy(from: shared, to: copy))
        }
        while table.count < blocksFor(computedCount + newTokenCount) { table.append(takeFreeBlock()) }
        return copies
    }

    /// A second reference to every block of `table` (a beam continuing from it).
    public mutating func fork(_ table: [Int32]) -> [Int32] {
        for b in table { refCounts[Int(b)] += 1 }
        return table
    }

    // MARK: prefix cache

    /// Registers the full blocks among the first `computedCount` tokens (whose KV is now
    /// written) that `hashes` does not cover yet, extending `hashes`. Content already cached in
    /// another block is not registered twice. No-op when reuse is off.
    public mutating func commitFullBlocks(_ table: [Int32], tokens: [Int32], computedCount: Int, hashes: inout [UInt64]) {
        guard enableReuse else { return }
        let full = min(computedCount, tokens.count) / blockSize
        while hashes.count < min(full, table.count) {
            let i = hashes.count
            let key = BlockKey(parent: hashes.last ?? Self.rootHash, tokens: Array(tokens[i * blockSize ..< (i + 1) * blockSize]))
            let b = table[i]
            if keys[Int(b)] == nil && cached[key] == nil {
                keys[Int(b)] = key
                cached[key] = b
            }
            hashes.append(key.chainHash)
        }
    }

    /// Cached blocks for the longest prefix of full blocks of `tokens`, the last token excluded.
    private func lookup(_ tokens: [Int32]) -> (blocks: [Int32], hashes: [UInt64]) {
        guard enableReuse else { return ([], []) }
        var blocks: [Int32] = []
        var hashes: [UInt64] = []
        var parent = Self.rootHash
        for i in 0 ..< max(tokens.count - 1, 0) / blockSize {
            let key = BlockKey(parent: parent, tokens: Array(tokens[i * blockSize ..< (i + 1) * blockSize]))
            guard let b = cached[key] else { break }
            parent = key.chainHash
            blocks.append(b)
            hashes.append(parent)
        }
        return (blocks, hashes)
    }

    /// Takes the head of the free list for new content, evicting its cached content if any.
    private mutating func takeFreeBlock() -> Int32 {
        guard let b = free.popFront() else { preconditionFailure("no free KV block (callers check first)") }
        if let key = keys[Int(b)] {
            cached[key] = nil
            keys[Int(b)] = nil
        }
        refCounts[Int(b)] = 1
        return b
    }
}

/// Doubly linked list of block ids over arrays: O(1) push at either end, pop, and removal of
/// any member (a cache hit on a free block).
struct FreeList: Sendable {
    private var next: [Int32]
    private var prev: [Int32]
    private var isMember: [Bool]
    private var head: Int32 = -1
    private var tail: Int32 = -1
    private(set) var count = 0

    /// All blocks, in id order.
    init(count n: Int) {
        next = (0 ..< n).map { Int32($0 + 1) }
        prev = (0 ..< n).map { Int32($0 - 1) }
        isMember = Array(repeating: true, count: n)
        if n > 0 {
            next[n - 1] = -1
            head = 0
            tail = Int32(n - 1)
        }
        count = n
    }

    mutating func pushBack(_ b: Int32) {
        precondition(!isMember[Int(b)])
        isMember[Int(b)] = true
        prev[Int(b)] = tail
        next[Int(b)] = -1
        if tail >= 0 { next[Int(tail)] = b } else { head = b }
        tail = b
        count += 1
    }

    mutating func pushFront(_ b: Int32) {
        precondition(!isMember[Int(b)])
        isMember[Int(b)] = true
        next[Int(b)] = head
        prev[Int(b)] = -1
        if head >= 0 { prev[Int(head)] = b } else { tail = b }
        head = b
        count += 1
    }

    mutating func popFront() -> Int32? {
        guard head >= 0 else { return nil }
        let b = head
        remove(b)
        return b
    }

    mutating func remove(_ b: Int32) {
        precondition(isMember[Int(b)])
        let p = prev[Int(b)], n = next[Int(b)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { prev[Int(n)] = p } else { tail = p }
        isMember[Int(b)] = false
        count -= 1
    }
}

/// Sizing the KV cache, as TensorRT-LLM does from kv_cache_free_gpu_mem_fraction and
/// max_tokens_in_paged_kv_cache.
public enum KVCacheSizing {
    /// Bytes of one block: K and V of `blockSize` tokens in every layer.
    public static func bytesPerBlock(layerCount: Int, kvHeadCount: Int, headDim: Int, blockSize: Int, bytesPerElement: Int) -> Int {
        2 * layerCount * kvHeadCount * headDim * blockSize * bytesPerElement
    }

    /// The GPU's KV budget: `fraction` (kv_cache_free_gpu_mem_fraction, TRT-LLM's default 0.9)
    /// of the memory still free after the weights are loaded.
    public static func gpuBudget(freeBytesAfterWeights: Int, freeGPUMemoryFraction fraction: Double = 0.9) -> Int {
        Int(Double(max(freeBytesAfterWeights, 0)) * min(max(fraction, 0), 1))
    }

    /// Whole blocks that fit in `budgetBytes` (on the CPU, a byte budget given directly), and at
    /// most enough blocks for `maxTokens` tokens (max_tokens_in_paged_kv_cache, rounded up).
    public static func blockCount(budgetBytes: Int, bytesPerBlock: Int, blockSize: Int, maxTokens: Int? = nil) -> Int {
        precondition(bytesPerBlock > 0 && blockSize > 0)
        var blocks = max(budgetBytes, 0) / bytesPerBlock
        if let maxTokens { blocks = min(blocks, (max(maxTokens, 0) + blockSize - 1) / blockSize) }
        return blocks
    }
}
