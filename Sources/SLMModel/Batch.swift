/// The tokens one forward pass computes: any mix of sequences, each token at its own
/// position in its own KV cache.
///
/// Storage is allocated once with a fixed capacity and refilled every step, so the
/// decode loop allocates nothing. Within one batch, a sequence's tokens must appear in
/// position order with no gaps after the cache's current count.
public final class Batch: @unchecked Sendable {
    // @unchecked: filled by the single thread that then runs the forward pass.
    public let capacity: Int
    public private(set) var count = 0
    /// Number of entries asking for logits, in batch order.
    public private(set) var logitCount = 0
    let tokens: UnsafeMutablePointer<Int32>
    let positions: UnsafeMutablePointer<Int>
    /// For each entry: its row in the logits output, or -1.
    let logitRow: UnsafeMutablePointer<Int>
    /// For each logits row: its batch entry.
    let logitEntry: UnsafeMutablePointer<Int>
    var caches: [KVCache?]
    /// For each entry: its cache's key and value storage and capacity (the cache itself is
    /// held by `caches`). A forward pass's parallel regions reach the caches through these:
    /// each read of `caches[i]` retained and released the cache, thousands of times a pass
    /// with both threads on the same reference counts (2.5% of a 16-token pass in
    /// swift_release).
    let keyBase: UnsafeMutablePointer<UnsafeMutablePointer<UInt16>>
    let valueBase: UnsafeMutablePointer<UnsafeMutablePointer<UInt16>>
    let cacheCapacity: UnsafeMutablePointer<Int>

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        tokens = .allocate(capacity: capacity)
        positions = .allocate(capacity: capacity)
        logitRow = .allocate(capacity: capacity)
        logitEntry = .allocate(capacity: capacity)
        caches = Array(repeating: nil, count: capacity)
        keyBase = .allocate(capacity: capacity)
        valueBase = .allocate(capacity: capacity)
        cacheCapacity = .allocate(capacity: capacity)
    }

    deinit {
        tokens.deallocate(); positions.deallocate(); logitRow.deallocate(); logitEntry.deallocate()
        keyBase.deallocate(); valueBase.deallocate(); cacheCapacity.deallocate()
    }

    /// Entry `i`'s key row for `layer` at `position` (see `keyBase`).
    @inline(__always)
    func keyRow(_ i: Int, layer: Int, position: Int, kvDim: Int) -> UnsafeMutablePointer<UInt16> {
        KVCache.row(keyBase[i], layer: layer, position: position, capacity: cacheCapacity[i], kvDim: kvDim)
    }

    /// Entry `i`'s value row for `layer` at `position` (see `keyBase`).
    @inline(__always)
    func valueRow(_ i: Int, layer: Int, position: Int, kvDim: Int) -> UnsafeMutablePointer<UInt16> {
        KVCache.row(valueBase[i], layer: layer, position: position, capacity: cacheCapacity[i], kvDim: kvDim)
    }

    public var isFull: Bool { count == capacity }

    public func clear() {
        for i in 0..<count { caches[i] = nil }
        count = 0
        logitCount = 0
    }

    /// Appends one token of the sequence owning `cache` at `position`; `logits` asks for
    /// the distribution of the next token after it.
    public func add(_ token: Int32, position: Int, cache: KVCache, logits: Bool) {
        precondition(count < capacity, "batch capacity \(capacity) exceeded")
        tokens[count] = token
        positions[count] = position
        caches[count] = cache
        keyBase[count] = cache.keys
        valueBase[count] = cache.values
        cacheCapacity[count] = cache.capacity
        if logits {
            logitRow[count] = logitCount
            logitEntry[logitCount] = count
            logitCount += 1
        } else {
            logitRow[count] = -1
        }
        count += 1
    }

    public func token(_ i: Int) -> Int32 { tokens[i] }
    public func position(_ i: Int) -> Int { positions[i] }
}
