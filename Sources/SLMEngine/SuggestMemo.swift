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
    /// No entry: the parent of a first token's path on a fresh memo, the context itself
    /// (whose row is not stored here: it comes with the context's KV from the prefix cache).
    static let contextRow: Int32 = -1
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
    /// The parent of a first token's path: `contextRow`, or the entry of the path the
    /// context grew by when it was re-rooted (see `begin`).
    private(set) var root: Int32 = SuggestMemo.contextRow
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
    ///
    /// When the context is the old one grown by a path this memo expanded (the user typed
    /// the word that was suggested, then a space), that path's entry becomes the root: its
    /// subtree holds rows of exactly the token sequences the new search asks for, so the
    /// first keystroke of the next word replays them instead of recomputing ~2 of its 3
    /// passes. Entries outside the subtree become unreachable and stay until the next reset.
    mutating func begin(context: [Int32], room: Int) {
        search &+= 1
        if entries.count + room > Self.maxEntries { return reset(context: context) }
        if self.context == context { return }
        guard context.count > self.context.count, context.starts(with: self.context) else {
            return reset(context: context)
        }
        var e = root
        for t in context[self.context.count...] {
            guard let child = lookup(parent: e, token: t) else { return reset(context: context) }
            e = child
        }
        self.context = context
        root = e
    }

    mutating func reset(context: [Int32]) {
        self.context = context
        root = Self.contextRow
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
