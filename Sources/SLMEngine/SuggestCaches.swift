import SLMModel

/// Everything `suggest` keeps between keystrokes, and nothing else does: the expansion
/// memo, the search's working arrays, idle branch KV caches and the logits after a
/// context's first tokens, scoped to one owner.
///
/// Engine thread only. The type decides what is kept, found and evicted; it does not see
/// the memory budget, which sits under the engine's lock: every method that changes the
/// kept bytes reports them, and the `Engine` methods below charge them to the
/// `MemoryLedger` as cached (evictable) bytes, or move them to and from in use.
///
/// What bounds it: at most `maxBranchCaches` KV caches (each at most `max_context` tokens)
/// and `maxBranchStarts` logits rows, all inside the budget (`reserve` evicts them before
/// any prefix-cache entry); the memo is bounded by `SuggestMemo.maxEntries` (~300 KiB, not
/// charged: it is the size of one logits row of the default model).
struct SuggestCaches {
    /// Idle branch caches kept: a suggest searches with at most n + 2 ≤ 10 branches.
    static let maxBranchCaches = 10
    /// Logits rows kept (~200 KB each for a 49k vocabulary): the rows at a word's end
    /// (`Engine.keptStartWordEnd`) of the few keystrokes between a word being suggested and
    /// being typed.
    static let maxBranchStarts = 24

    /// Expansions `suggest` already computed on the current healed context.
    var memo = SuggestMemo()
    /// The search's working arrays, kept between requests so a search allocates nothing
    /// once they have grown.
    var scratch = SuggestScratch()
    /// Whose keystrokes these caches hold.
    private(set) var owner: UInt32?
    /// Branch KV caches kept between keystrokes, with the tokens each holds: allocating and
    /// page-faulting ~1 MiB per branch cost ~0.5 ms a branch, and a cache that already holds
    /// the context needs none of it copied again.
    private(set) var branches: [(cache: KVCache, tokens: [Int32])] = []
    /// Logits after a suggest context plus a branch's path where a word may end, from the
    /// pass that computed them, oldest first. When the user goes on to type that path
    /// (finishes the word and types a space), the next keystroke's context is exactly this:
    /// with a branch cache that holds it, no prefill pass is needed.
    private var starts: [(tokens: [Int32], logits: [Float])] = []

    /// Bytes of the kept KV caches and logits: what the ledger counts as cached for them.
    var bytes: Int { branches.reduce(0) { $0 + $1.cache.bytes } + starts.reduce(0) { $0 + Self.bytes($1.logits) } }

    static func bytes(_ logits: [Float]) -> Int { logits.count * MemoryLayout<Float>.size }

    /// Makes these the caches of `owner`: a suggest of another owner empties them first
    /// (memo, branch caches, logits), since replaying another user's steps or reusing their
    /// branch KV would reveal, by timing and by `reused_tokens`, what they typed. Returns
    /// the cached bytes freed. A device UI is one owner, so this costs nothing in the
    /// common case.
    mutating func scope(to owner: UInt32) -> Int {
        guard self.owner != owner else { return 0 }
        self.owner = owner
        memo.reset(context: [])
        let freed = bytes
        branches.removeAll()
        starts.removeAll()
        return freed
    }

    /// Takes out the idle branch cache of at least `capacity` tokens that shares the longest
    /// prefix with `target` (a suggest context of `contextCount` tokens and a node's path),
    /// and how many of `target`'s tokens it holds; nil when none is big enough.
    ///
    /// On a keystroke inside a word that is the context and often more, and nothing is
    /// copied. Caches that hold the context and one of its current first tokens
    /// (`firstTokens`) are left to nodes below that token: the word the user is typing is
    /// one of them, and its cache starts the next word (`takeStart`).
    mutating func takeBranch(for target: [Int32], contextCount: Int, capacity: Int,
                             keeping firstTokens: [Int32]) -> (cache: KVCache, holds: Int)? {
        var best: (index: Int, shared: Int)?
        for (i, p) in branches.enumerated() where p.cache.capacity >= capacity {
            var n = 0
            let limit = min(p.tokens.count, target.count)
            while n < limit && p.tokens[n] == target[n] { n += 1 }
            if n == contextCount && p.tokens.count > n && firstTokens.contains(p.tokens[n]) { continue }
            if best == nil || n > best!.shared { best = (i, n) }
        }
        guard let best else { return nil }
        return (branches.remove(at: best.index).cache, best.shared)
    }

    /// Keeps a finished branch's cache (holding `tokens`) for the next suggest; false when
    /// `maxBranchCaches` are kept already (the caller releases it).
    mutating func keepBranch(_ cache: KVCache, tokens: [Int32]) -> Bool {
        guard branches.count < Self.maxBranchCaches else { return false }
        branches.append((cache, tokens))
        return true
    }

    /// Keeps the logits after `tokens` (a suggest context and a branch's first tokens),
    /// replacing the oldest when `maxBranchStarts` are kept (its buffer is reused: no
    /// allocation). A new row is kept only when `charge(bytes)` says the budget has room
    /// (and counted them).
    mutating func keepStart(_ tokens: [Int32], _ logits: UnsafeBufferPointer<Float>, charge: (Int) -> Bool) {
        if let i = starts.firstIndex(where: { $0.tokens == tokens }) {
            // Already kept: the same logits (a step depends only on its tokens); now newest.
            starts.append(starts.remove(at: i))
            return
        }
        var entry: (tokens: [Int32], logits: [Float])
        if starts.count >= Self.maxBranchStarts {
            entry = starts.removeFirst()
            entry.tokens = tokens
            entry.logits.withUnsafeMutableBufferPointer { _ = $0.update(fromContentsOf: logits) }
        } else {
            guard charge(logits.count * MemoryLayout<Float>.size) else { return }
            entry = (tokens, Array(logits))
        }
        starts.append(entry)
    }

    /// Marks the kept logits after `context + path` as newest, so the ones kept are those
    /// of the latest candidates (a replayed branch does not recompute them). Allocates nothing.
    mutating func touchStart<P: Collection<Int32>>(context: [Int32], path: P) {
        guard let i = starts.firstIndex(where: {
            $0.tokens.count == context.count + path.count && $0.tokens[context.count...].elementsEqual(path)
                && $0.tokens.starts(with: context)
        }) else { return }
        starts.append(starts.remove(at: i))
    }

    /// Whether logits after exactly `tokens` are kept (for the trace).
    func hasStart(_ tokens: [Int32]) -> Bool { starts.contains { $0.tokens == tokens } }

    /// The next keystroke's start without a prefill: a branch cache holding `context`'s KV
    /// and the logits after it, both taken out of the caches, or nil. The cache may hold
    /// more than the context (`tokens`, the path the branch went on with): that KV is kept,
    /// not truncated, because the search re-rooted on the typed word replays that path and
    /// its branches copy it instead of computing it again.
    mutating func takeStart(for context: [Int32]) -> (cache: KVCache, tokens: [Int32], logits: [Float])? {
        guard let li = starts.firstIndex(where: { $0.tokens == context }),
              let ci = branches.firstIndex(where: { $0.tokens.starts(with: context) }) else { return nil }
        let logits = starts.remove(at: li).logits
        let (cache, tokens) = branches.remove(at: ci)
        return (cache, Array(tokens.prefix(cache.count)), logits)
    }

    /// Drops one kept item to make room, logits rows first (they only save one pass), then
    /// branch caches (they only save an allocation); the bytes freed, or nil when empty.
    mutating func evictOne() -> Int? {
        if let kept = starts.popLast() { return Self.bytes(kept.logits) }
        if let pooled = branches.popLast() { return pooled.cache.bytes }
        return nil
    }
}

// The engine's side: the same operations, charged to the memory ledger.
extension Engine {
    /// Empties the suggest caches when a suggest of another owner arrives (see
    /// `SuggestCaches.scope`).
    func scopeSuggestCaches(to owner: UInt32) {
        let freed = suggestCaches.scope(to: owner)
        guard freed > 0 else { return }
        lock.withLock {
            shared.memory.evict(freed)
            lock.broadcast()
        }
    }

    /// An idle KV cache of at least `capacity` tokens for a suggest node whose context and
    /// path are `target`, and how many of `target`'s first tokens it already holds (the
    /// caller copies or feeds the rest); nil when the budget cannot fit one now. Counts as
    /// in use until `poolBranchCache`.
    func branchCache(for target: [Int32], contextCount: Int, capacity: Int, base: KVCache,
                     keeping firstTokens: [Int32]) -> (cache: KVCache, holds: Int)? {
        if let taken = suggestCaches.takeBranch(for: target, contextCount: contextCount, capacity: capacity,
                                                keeping: firstTokens) {
            lock.withLock { shared.memory.promote(taken.cache.bytes) }
            return taken
        }
        // Room to grow: the next words of the same text reuse this cache.
        var size = max(capacity, min(config.maxContext, (capacity + 31) / 32 * 32))
        if !reserve(kvBytes(tokens: size), keeping: base) {
            size = capacity  // a tight budget still fits the exact size the request was admitted for
            guard reserve(kvBytes(tokens: size), keeping: base) else { return nil }
        }
        return (KVCache(config: model.config, capacity: size), 0)
    }

    /// Keeps the logits after `tokens` (a suggest context and a branch's first tokens), when
    /// the budget has room.
    func keepBranchStartLogits(_ tokens: [Int32], _ logits: UnsafeBufferPointer<Float>) {
        suggestCaches.keepStart(tokens, logits) { size in lock.withLock { shared.memory.cacheIfFits(size) } }
    }

    /// Marks the kept logits after `context + path` as newest.
    func touchBranchStart<P: Collection<Int32>>(context: [Int32], path: P) {
        suggestCaches.touchStart(context: context, path: path)
    }

    /// The next keystroke's start without a prefill (see `SuggestCaches.takeStart`); the
    /// cache counts as in use, the logits stop counting.
    func branchStart(for context: [Int32]) -> (cache: KVCache, tokens: [Int32], logits: [Float])? {
        guard let start = suggestCaches.takeStart(for: context) else { return nil }
        lock.withLock { shared.memory.promote(start.cache.bytes, dropping: SuggestCaches.bytes(start.logits)) }
        return start
    }

    /// Keeps a finished branch's cache (holding `tokens`) for the next suggest; its bytes
    /// move from in use to cached (evictable), or are released when the pool is full.
    func poolBranchCache(_ cache: KVCache, tokens: [Int32]) {
        guard suggestCaches.keepBranch(cache, tokens: tokens) else { return release(cache.bytes) }
        lock.withLock {
            shared.memory.retire(cache.bytes, kept: cache.bytes)
            lock.broadcast()
        }
    }
}
