/// The books of the memory budget: KV bytes in use by running sequences and jobs, bytes
/// held by caches that can be evicted (prefix cache, suggest branch caches and their
/// logits), and the peak of the two together.
///
/// The one place the budget check is made and the peak is updated: every change goes
/// through a method here, so no caller can move bytes and forget the peak. It lives in
/// `Engine.Shared`, so every call is made under the engine lock.
struct MemoryLedger {
    /// Bytes the budget leaves for KV and caches: `memory_budget` minus the runner's
    /// scratch (which is allocated once, up front).
    let capacity: Int
    /// KV bytes of running sequences and jobs.
    private(set) var inUse = 0
    /// Bytes of evictable caches.
    private(set) var cached = 0
    /// The most `inUse + cached` has been.
    private(set) var peak = 0

    init(capacity: Int) { self.capacity = capacity }

    /// Whether `bytes` more fit next to what is in use and cached now.
    func fits(_ bytes: Int) -> Bool { inUse + cached + bytes <= capacity }

    /// Whether `bytes` could ever fit: with every cache evicted and nothing else running.
    /// A request that fails this is refused at once (`over_memory_budget`), not queued.
    func admissible(_ bytes: Int) -> Bool { bytes <= capacity }

    /// Counts `bytes` as in use. The caller checked `fits` (or made room first).
    mutating func reserve(_ bytes: Int) {
        inUse += bytes
        notePeak()
    }

    /// Stops counting `bytes` as in use.
    mutating func release(_ bytes: Int) { inUse -= bytes }

    /// Counts `bytes` more as cached when they fit; false (and nothing counted) otherwise.
    mutating func cacheIfFits(_ bytes: Int) -> Bool {
        guard fits(bytes) else { return false }
        cached += bytes
        notePeak()
        return true
    }

    /// Cached bytes freed (evicted, or dropped with their owner's cache).
    mutating func evict(_ bytes: Int) { cached -= bytes }

    /// A cached KV cache of `bytes` taken back into use; `dropping` more cached bytes that
    /// went with it (its logits) are freed.
    mutating func promote(_ bytes: Int, dropping: Int = 0) {
        cached -= bytes + dropping
        inUse += bytes
        notePeak()
    }

    /// In-use bytes handed to a cache, which kept `kept` bytes (0: it did not keep them)
    /// and evicted `evicted` bytes of older entries to make room.
    mutating func retire(_ bytes: Int, kept: Int, evicted: Int = 0) {
        inUse -= bytes
        cached += kept - evicted
        notePeak()
    }

    private mutating func notePeak() { peak = max(peak, inUse + cached) }
}
