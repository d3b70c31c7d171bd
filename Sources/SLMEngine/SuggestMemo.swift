/// The node expansions `suggest` computed on one healed context: for a path of branch tokens
/// after the context, the best children of its logits row and the mass that ends a word
/// there.
///
/// While a word is typed the healed context stays the same and the next keystroke searches
/// mostly the same tree (its first tokens are a subset of the previous ones): expansions
/// found here are replayed instead of recomputed. An expansion depends only on the tokens
/// (the forward pass treats every batch row alike) and keeps a fixed number of children
/// whatever the request, so a replayed search is exactly the computed one. Engine thread only.
///
/// Paths are stored as a trie, (parent entry, token) → entry, so a lookup hashes two
/// integers instead of a token array, and a search node carries its path as one index.
struct SuggestMemo {
    /// Children kept per expansion: n (at most 8) plus 2 for suggestions that turn out equal.
    static let width = 10
    /// The parent of a first token's path: the context itself (whose row is not stored here:
    /// it comes with the context's KV from the prefix cache).
    static let root: Int32 = -1
    /// Bounds memory (each entry ~150 bytes): a search adds at most ~2·(n + 2)·max_tokens + n + 2
    /// entries, so a word's keystrokes fit with the default options.
    static let maxEntries = 2048

    struct Key: Hashable {
        let parent: Int32
        let token: Int32
    }

    struct Entry {
        /// The children are `tokens[start ..< start + count]`, best first (ties to the lower id).
        let start: Int32
        let count: Int32
        /// log of the probability that the next token does not continue a word (word mode).
        let endLogprob: Double
        /// The search that computed it (`SuggestMemo.search` at the time).
        let search: UInt32
    }

    private(set) var context: [Int32] = []
    private var index: [Key: Int32] = [:]
    private(set) var entries: [Entry] = []
    private(set) var tokens: [Int32] = []
    /// log p(child | path), unnormalised by the healed constraint (that applies to first tokens only).
    private(set) var logprobs: [Double] = []
    /// Counts searches, to tell expansions replayed from an earlier keystroke from those
    /// computed by the current one.
    private(set) var search: UInt32 = 0

    /// Starts a search on `context`: keeps the entries when the context is the one they
    /// were computed on and `room` more fit, else forgets them (never during a search:
    /// the search's nodes hold entry indices).
    mutating func begin(context: [Int32], room: Int) {
        search &+= 1
        if self.context != context || entries.count + room > Self.maxEntries { reset(context: context) }
    }

    mutating func reset(context: [Int32]) {
        self.context = context
        index.removeAll(keepingCapacity: true)
        entries.removeAll(keepingCapacity: true)
        tokens.removeAll(keepingCapacity: true)
        logprobs.removeAll(keepingCapacity: true)
    }

    func lookup(parent: Int32, token: Int32) -> Int32? { index[Key(parent: parent, token: token)] }

    /// Stores the expansion of path (parent, token): the valid ids of `topIDs` (best first)
    /// with log-probabilities `topValues[i] − lse`. Returns its entry.
    mutating func record(parent: Int32, token: Int32, topIDs: UnsafeMutableBufferPointer<Int32>,
                         topValues: UnsafeMutableBufferPointer<Float>, lse: Double, endLogprob: Double) -> Int32 {
        let start = Int32(tokens.count)
        for i in topIDs.indices where topIDs[i] >= 0 {
            tokens.append(topIDs[i])
            logprobs.append(Double(topValues[i]) - lse)
        }
        let id = Int32(entries.count)
        entries.append(Entry(start: start, count: Int32(tokens.count) - start, endLogprob: endLogprob, search: search))
        index[Key(parent: parent, token: token)] = id
        return id
    }
}
