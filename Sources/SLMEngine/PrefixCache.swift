import SLMModel

/// KV state of recently finished sequences, keyed by the tokens it holds, so a new
/// request that starts with the same tokens computes only what is new.
///
/// Owned by the engine thread. Its bytes count against the memory budget; entries are
/// evicted least recently used first whenever an admission needs the room, so the cache
/// only ever uses memory nobody else needs.
struct PrefixCache {
    struct Entry {
        var tokens: [Int32]
        let cache: KVCache
        /// The owner of the requests that computed it (`RequestHandle.owner`): only they
        /// may reuse it.
        let owner: UInt32
        var lastUse: UInt64
        /// The logits after the last token, when the producer kept them (suggest does, so
        /// the next keystroke on an unchanged context needs no forward pass at all).
        var lastLogits: [Float]?
        var bytes: Int { cache.bytes + (lastLogits?.count ?? 0) * MemoryLayout<Float>.size }
    }

    private(set) var entries: [Entry] = []
    private var clock: UInt64 = 0
    /// Bounds the linear lookup; memory is bounded by the budget.
    let maxEntries: Int
    var bytes: Int { entries.reduce(0) { $0 + $1.bytes } }

    init(maxEntries: Int) { self.maxEntries = maxEntries }

    /// Keeps `cache`, which holds the KV of `tokens` (`cache.count == tokens.count`).
    /// A shorter entry that is a prefix of it is dropped (the new one covers it).
    mutating func insert(tokens: [Int32], cache: KVCache, owner: UInt32, lastLogits: [Float]? = nil) -> [Entry] {
        guard maxEntries > 0, !tokens.isEmpty, cache.count == tokens.count else { return [] }
        clock += 1
        var dropped: [Entry] = []
        entries.removeAll { e in
            let covered = e.owner == owner && e.tokens.count <= tokens.count && tokens.starts(with: e.tokens)
            if covered { dropped.append(e) }
            return covered
        }
        entries.append(Entry(tokens: tokens, cache: cache, owner: owner, lastUse: clock, lastLogits: lastLogits))
        while entries.count > maxEntries, let victim = lruIndex() { dropped.append(entries.remove(at: victim)) }
        return dropped
    }

    /// The entry sharing the longest prefix with `tokens`, and that length.
    mutating func longestMatch(_ tokens: [Int32], owner: UInt32) -> (index: Int, length: Int)? {
        var best: (Int, Int)?
        for (i, e) in entries.enumerated() where e.owner == owner {
            var n = 0
            let limit = min(e.tokens.count, tokens.count)
            while n < limit && e.tokens[n] == tokens[n] { n += 1 }
            if n > 0 && n > (best?.1 ?? 0) { best = (i, n) }
        }
        if let (i, _) = best {
            clock += 1
            entries[i].lastUse = clock
        }
        return best.map { (index: $0.0, length: $0.1) }
    }

    mutating func remove(at i: Int) -> Entry { entries.remove(at: i) }

    /// The entry holding exactly `tokens` with their final logits, if any.
    mutating func exact(_ tokens: [Int32], owner: UInt32) -> Entry? {
        guard let i = entries.firstIndex(where: { $0.owner == owner && $0.lastLogits != nil && $0.tokens == tokens }) else { return nil }
        clock += 1
        entries[i].lastUse = clock
        return entries[i]
    }

    /// Removes the least recently used entry, except `keeping`; nil when nothing is left.
    mutating func evictOne(keeping: KVCache? = nil) -> Entry? {
        guard let i = lruIndex(excluding: keeping) else { return nil }
        return entries.remove(at: i)
    }

    private func lruIndex(excluding: KVCache? = nil) -> Int? {
        var best: Int?
        for (i, e) in entries.enumerated() where e.cache !== excluding {
            if best == nil || e.lastUse < entries[best!].lastUse { best = i }
        }
        return best
    }

    mutating func removeAll() { entries.removeAll() }
}
