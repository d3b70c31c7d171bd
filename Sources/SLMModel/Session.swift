/// One sequence on a runner: its KV cache and the tokens it holds. The simplest way to
/// run the model (tools, tests); the daemon's scheduler batches many of these.
public final class Session: @unchecked Sendable {
    // @unchecked: used by one thread at a time.
    public let runner: Runner
    public let cache: KVCache
    public private(set) var tokens: [Int32] = []
    private let batch: Batch

    public init(runner: Runner, capacity: Int) {
        self.runner = runner
        cache = KVCache(config: runner.config, capacity: min(capacity, runner.maxContext))
        batch = Batch(capacity: runner.maxBatch)
        tokens.reserveCapacity(cache.capacity)
    }

    /// Adopts `cache`, which already holds the KV of `tokens` (a reused prompt prefix).
    public init(runner: Runner, cache: KVCache, tokens: [Int32]) {
        precondition(cache.count == tokens.count && cache.capacity <= runner.maxContext)
        self.runner = runner
        self.cache = cache
        batch = Batch(capacity: runner.maxBatch)
        self.tokens = tokens
        self.tokens.reserveCapacity(cache.capacity)
    }

    public var position: Int { tokens.count }
    public var remaining: Int { cache.capacity - tokens.count }

    /// Feeds `ids` in batches of at most the runner's maximum and returns the logits after
    /// the last one. When `logitsFrom` is set, `onLogits(i, logits)` also receives the
    /// logits after every `ids[i]` with `i >= logitsFrom` (scoring a text); `alsoAt` asks
    /// for the logits after one more `ids[i]` the same way (one extra row, not a range).
    @discardableResult
    public func feed(_ ids: [Int32], logitsFrom: Int? = nil, alsoAt: Int? = nil,
                     onLogits: ((Int, UnsafeMutableBufferPointer<Float>) -> Void)? = nil)
        throws(ModelError) -> UnsafeMutableBufferPointer<Float>
    {
        guard !ids.isEmpty else { throw ModelError("nothing to feed") }
        guard ids.count <= remaining else {
            throw ModelError("\(ids.count) tokens do not fit: the context holds \(cache.capacity), \(tokens.count) used")
        }
        let from = logitsFrom ?? ids.count - 1
        var start = 0
        var last = runner.logits(row: 0)
        while start < ids.count {
            batch.clear()
            var i = start
            while i < ids.count && !batch.isFull {
                let wants = i >= from || i == ids.count - 1 || i == alsoAt
                if wants && batch.logitCount == runner.maxLogits { break }
                batch.add(ids[i], position: tokens.count + i - start, cache: cache, logits: wants)
                i += 1
            }
            try runner.forward(batch)
            if let onLogits, batch.logitCount > 0 {
                for e in start..<i where e >= from || e == alsoAt { onLogits(e, runner.logits(row: batch.logitRow[e - start])) }
            }
            if batch.logitCount > 0 { last = runner.logits(row: batch.logitCount - 1) }
            tokens.append(contentsOf: ids[start..<i])
            start = i
        }
        return last
    }

    /// Forgets everything after `position` tokens (reuse the prefix for a new prompt).
    public func rewind(to position: Int) {
        let p = max(0, min(position, tokens.count))
        tokens.removeLast(tokens.count - p)
        cache.truncate(to: p)
    }
}
