import SLMModel

// The suggest search's data: its nodes, the branch KV caches one search uses, and the
// working arrays (node store and best-first queue) the engine keeps between requests.

/// One node of the search: a path of tokens after the healed context.
struct SuggestNode {
    /// The node one token shorter, or −1 for a first token.
    var parent: Int32
    var token: Int32
    /// The memo entry of the parent's path (`suggestCaches.memo.root` for a first token).
    var memoParent: Int32
    /// This path's memo entry once its row is known, else −1.
    var memo: Int32 = -1
    /// log P(path | typed text).
    var logprob: Double
    var depth: Int32
    /// Words in its text (phrase mode's `max_words`).
    var words: Int32
    /// Its text ends inside a word (the next token continues that word unless it starts
    /// with a space).
    var inWord: Bool
    /// Its text is not empty (a first token may be exactly the healed bytes).
    var hasText: Bool
    /// A finished suggestion: taken from the queue, it is a result; otherwise it is rolled out.
    var complete: Bool
}

/// One branch KV cache in use by a search: `tokens` (context and path) are what it holds
/// once the pending pass has run; `valid` how many of them it holds now.
struct BranchSlot {
    let cache: KVCache
    var tokens: [Int32]
    var valid: Int
    var busy = false
}

/// The search's working arrays, kept by the engine between requests (their capacity is
/// reused: a search allocates nothing once they have grown).
struct SuggestScratch {
    var nodes: [SuggestNode] = []
    /// Node indices, a binary max-heap by (logprob, then lower index).
    var heap: [Int32] = []
    var selected: [Int32] = []
    /// A copy of `heap` the look-ahead for speculative rows works on.
    var lookahead: [Int32] = []
    var lookingAhead = false
    var path: [Int32] = []
    var target: [Int32] = []
    var topIDs = [Int32](repeating: -1, count: SuggestMemo.width)
    var topValues = [Float](repeating: 0, count: SuggestMemo.width)

    mutating func clear() {
        nodes.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        selected.removeAll(keepingCapacity: true)
        lookingAhead = false
    }

    @inline(__always) func before(_ a: Int32, _ b: Int32) -> Bool {
        let x = nodes[Int(a)].logprob, y = nodes[Int(b)].logprob
        return x > y || (x == y && a < b)
    }

    /// Queues `node` (in the look-ahead's copy of the queue while `lookingAhead`).
    mutating func push(_ node: SuggestNode) {
        let i = add(node)
        var h = takeQueue()
        h.append(i)
        var c = h.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            guard before(h[c], h[p]) else { break }
            h.swapAt(c, p)
            c = p
        }
        putQueue(h)
    }

    /// Removes the best node of the queue (the look-ahead's while `lookingAhead`).
    mutating func pop() {
        var h = takeQueue()
        let last = h.removeLast()
        if !h.isEmpty {
            h[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < h.count && before(h[l], h[best]) { best = l }
                if r < h.count && before(h[r], h[best]) { best = r }
                if best == i { break }
                h.swapAt(i, best)
                i = best
            }
        }
        putQueue(h)
    }

    /// The best node of the queue (the look-ahead's while `lookingAhead`).
    var top: Int32? { lookingAhead ? lookahead.first : heap.first }

    /// The queue, moved out (no copy) so it can be reordered while `before` reads `nodes`.
    private mutating func takeQueue() -> [Int32] {
        var h: [Int32] = []
        if lookingAhead { swap(&h, &lookahead) } else { swap(&h, &heap) }
        return h
    }

    private mutating func putQueue(_ h: [Int32]) {
        if lookingAhead { lookahead = h } else { heap = h }
    }

    /// Starts a look-ahead: a copy of the queue that pushes and pops change instead, and
    /// nodes added from here on are dropped by `endLookahead`.
    mutating func beginLookahead() -> Int {
        lookahead.removeAll(keepingCapacity: true)
        lookahead.append(contentsOf: heap)
        lookingAhead = true
        return nodes.count
    }

    mutating func endLookahead(_ mark: Int) {
        lookingAhead = false
        nodes.removeLast(nodes.count - mark)
    }

    /// Adds a node without queueing it (a rollout's next step, a finished suggestion).
    mutating func add(_ node: SuggestNode) -> Int32 {
        nodes.append(node)
        return Int32(nodes.count - 1)
    }

    /// `path` = the node's tokens, first to last.
    mutating func loadPath(_ node: Int32) {
        path.removeAll(keepingCapacity: true)
        var i = node
        while i >= 0 {
            path.append(nodes[Int(i)].token)
            i = nodes[Int(i)].parent
        }
        path.reverse()
    }
}

@inline(__always) func sharedPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
    let limit = min(a.count, b.count)
    var n = 0
    while n < limit && a[n] == b[n] { n += 1 }
    return n
}
