/// The keys and values of one sequence, stored as f16 (as llama.cpp's default cache).
///
/// Sized from the context the caller asks for, not the model's trained context: a
/// 2048-token cache for SmolLM2-135M is 2048 × 30 layers × 192 × 2 (K,V) × 2 B = 45 MiB,
/// the 8192 default would be four times that. Memory is allocated once, here.
public final class KVCache: @unchecked Sendable {
    // @unchecked: one sequence is advanced by one forward pass at a time (the scheduler's
    // invariant); the pass itself writes disjoint rows from different threads.
    public let capacity: Int
    public let layerCount: Int
    public let kvDim: Int
    /// `[layer][position][kvDim]` f16 bit patterns.
    public let keys: UnsafeMutablePointer<UInt16>
    public let values: UnsafeMutablePointer<UInt16>
    /// Positions `0..<count` hold valid entries.
    public var count: Int = 0

    public init(config: ModelConfig, capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        layerCount = config.layerCount
        kvDim = config.kvDim
        let n = layerCount * capacity * kvDim
        // Not zeroed: a position is written whole (every layer's K and V row, by the pass
        // that feeds it) before anything reads it, and nothing reads at or past `count`
        // (attention reads the positions up to the one it computes; copyPrefix copies
        // below `count`), so what a reused allocation held is never seen. Zeroing here
        // touched every fresh page on the engine thread before the pass could start: 0.28
        // ms of a 16-token prompt's ~12 ms to its first token (perf: 31 page faults a
        // request, all in that memset); the pass's two threads now fault them in as they
        // write the rows. The budget counts the whole capacity from admission
        // (MemoryLedger), so the footprint stays within it.
        keys = .allocate(capacity: n)
        values = .allocate(capacity: n)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Bytes needed for a cache of `capacity` tokens.
    public static func bytes(config: ModelConfig, capacity: Int) -> Int {
        2 * config.layerCount * capacity * config.kvDim * MemoryLayout<UInt16>.size
    }

    public var bytes: Int { Self.bytes(layerCount: layerCount, kvDim: kvDim, capacity: capacity) }

    static func bytes(layerCount: Int, kvDim: Int, capacity: Int) -> Int {
        2 * layerCount * capacity * kvDim * MemoryLayout<UInt16>.size
    }

    @inline(__always)
    func keyRow(layer: Int, position: Int) -> UnsafeMutablePointer<UInt16> {
        Self.row(keys, layer: layer, position: position, capacity: capacity, kvDim: kvDim)
    }

    @inline(__always)
    func valueRow(layer: Int, position: Int) -> UnsafeMutablePointer<UInt16> {
        Self.row(values, layer: layer, position: position, capacity: capacity, kvDim: kvDim)
    }

    /// Row `position` of `layer` in a cache's key or value storage `base`: layer-major, each
    /// layer `capacity` rows of `kvDim` values.
    @inline(__always)
    static func row(_ base: UnsafeMutablePointer<UInt16>, layer: Int, position: Int, capacity: Int,
                    kvDim: Int) -> UnsafeMutablePointer<UInt16> {
        base + (layer * capacity + position) * kvDim
    }

    /// Forgets positions at and after `position` (the entries are simply overwritten later).
    public func truncate(to position: Int) {
        count = min(count, max(0, position))
    }

    /// Copies the first `n` positions of `other` (same model) into this cache: how a new
    /// request reuses a cached prompt prefix.
    public func copyPrefix(from other: KVCache, count n: Int) {
        precondition(other.kvDim == kvDim && other.layerCount == layerCount && n <= other.count && n <= capacity)
        for l in 0..<layerCount {
            keyRow(layer: l, position: 0).update(from: other.keyRow(layer: l, position: 0), count: n * kvDim)
            valueRow(layer: l, position: 0).update(from: other.valueRow(layer: l, position: 0), count: n * kvDim)
        }
        count = n
    }

    /// Copies `positions` of `other` (same model) into this cache and makes it hold
    /// `0..<positions.upperBound`: how a reused cache that already shares the first
    /// positions takes the rest of a new prefix.
    public func copy(from other: KVCache, positions: Range<Int>) {
        precondition(other.kvDim == kvDim && other.layerCount == layerCount
                     && positions.upperBound <= other.count && positions.upperBound <= capacity)
        let lo = positions.lowerBound, n = positions.count
        if n > 0 {
            for l in 0..<layerCount {
                keyRow(layer: l, position: lo).update(from: other.keyRow(layer: l, position: lo), count: n * kvDim)
                valueRow(layer: l, position: lo).update(from: other.valueRow(layer: l, position: lo), count: n * kvDim)
            }
        }
        count = positions.upperBound
    }
}
