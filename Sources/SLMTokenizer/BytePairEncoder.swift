/// Byte-level BPE over one pre-tokenized word, with merges applied in rank order.
///
/// Symbols are token ids from the start (each byte's own token), so a merge is one hash
/// lookup of the id pair rather than string concatenation. The lowest-ranked adjacent pair
/// is merged first and ties go to the leftmost pair, which is exactly llama.cpp's order, so
/// the resulting ids agree with it even where BPE is ambiguous.
struct BytePairEncoder: Sendable {
    /// Token of each byte's one-scalar spelling; -1 where the vocabulary has none.
    let byteTokens: [Int32]
    /// Marks a symbol absorbed by its left neighbour (distinct from -1, a byte with no token).
    private static let deleted = Int32.min
    /// (left id << 32 | right id) -> (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]

    /// Merges whose parts or result are not in the vocabulary could never surface in the
    /// output and are dropped; `droppedMerges` reports how many, for diagnostics.
    let droppedMerges: Int

    init(byteTokens: [Int32], merges mergeLines: [String], idOf: [String: Int32]) throws(TokenizerError) {
        self.byteTokens = byteTokens
        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(mergeLines.count)
        var dropped = 0
        for (rank, line) in mergeLines.enumerated() {
            // Byte-level texts never contain U+0020 (a space is spelled `Ġ`), so the first
            // space after the first character is the separator.
            let u = line.utf8
            guard !u.isEmpty, let sep = u.dropFirst().firstIndex(of: 0x20) else {
                throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.merges",
                                     "merge \(rank) '\(line)' is not two space-separated parts")
            }
            let left = String(line[line.startIndex..<sep])
            let right = String(line[line.index(after: sep)...])
            guard let l = idOf[left], let r = idOf[right], let m = idOf[left + right] else {
                dropped += 1
                continue
            }
            let key = UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))
            // A repeated pair keeps its first (best) rank.
            if table[key] == nil {
                table[key] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: m))
            }
        }
        self.merges = table
        self.droppedMerges = dropped
    }

    /// Reusable buffers, so encoding a long text allocates per call, not per word.
    struct Workspace {
        var ids: [Int32] = []
        var prev: [Int32] = []
        var next: [Int32] = []
        var heap = MergeHeap()
    }

    @inline(__always)
    private func lookup(_ l: Int32, _ r: Int32) -> (rank: UInt32, merged: Int32)? {
        guard let v = merges[UInt64(UInt32(bitPattern: l)) << 32 | UInt64(UInt32(bitPattern: r))] else { return nil }
        return (UInt32(truncatingIfNeeded: v >> 32), Int32(bitPattern: UInt32(truncatingIfNeeded: v)))
    }

    /// Appends the tokens of one word (raw UTF-8 bytes) to `out`.
    func encode(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32], _ ws: inout Workspace) {
        let n = word.count
        if n == 0 { return }
        if n == 1 {
            let id = byteTokens[Int(word[0])]
            if id >= 0 { out.append(id) }
            return
        }

        ws.ids.removeAll(keepingCapacity: true)
        ws.prev.removeAll(keepingCapacity: true)
        ws.next.removeAll(keepingCapacity: true)
        for i in 0..<n {
            ws.ids.append(byteTokens[Int(word[i])])
            ws.prev.append(Int32(i - 1))
            ws.next.append(i + 1 < n ? Int32(i + 1) : -1)
        }
        ws.heap.removeAll()
        for i in 0..<(n - 1) {
            if let m = lookup(ws.ids[i], ws.ids[i + 1]) {
                ws.heap.push(.init(rank: m.rank, left: Int32(i), right: Int32(i + 1),
                                   leftID: ws.ids[i], rightID: ws.ids[i + 1], merged: m.merged))
            }
        }
        while let e = ws.heap.pop() {
            let l = Int(e.left), r = Int(e.right)
            // Entries are never removed when a neighbour changes; a stale one is recognised
            // here because one side's id or adjacency no longer matches what was queued.
            guard ws.ids[l] == e.leftID, ws.next[l] == e.right, ws.ids[r] == e.rightID else { continue }
            ws.ids[l] = e.merged
            ws.ids[r] = Self.deleted
            let after = ws.next[r]
            ws.next[l] = after
            if after >= 0 { ws.prev[Int(after)] = Int32(l) }
            let before = ws.prev[l]
            if before >= 0, let m = lookup(ws.ids[Int(before)], e.merged) {
                ws.heap.push(.init(rank: m.rank, left: before, right: Int32(l),
                                   leftID: ws.ids[Int(before)], rightID: e.merged, merged: m.merged))
            }
            if after >= 0, let m = lookup(e.merged, ws.ids[Int(after)]) {
                ws.heap.push(.init(rank: m.rank, left: Int32(l), right: after,
                                   leftID: e.merged, rightID: ws.ids[Int(after)], merged: m.merged))
            }
        }
        // Symbol 0 only ever absorbs its right neighbour, so it heads the list. A byte with
        // no token is dropped, as llama.cpp drops it.
        var i: Int32 = 0
        while i >= 0 {
            let id = ws.ids[Int(i)]
            if id >= 0 { out.append(id) }
            i = ws.next[Int(i)]
        }
    }
}

/// A binary min-heap of candidate merges ordered by (rank, left position).
struct MergeHeap {
    struct Entry {
        var rank: UInt32
        var left: Int32
        var right: Int32
        var leftID: Int32
        var rightID: Int32
        var merged: Int32

        @inline(__always)
        static func precedes(_ a: Entry, _ b: Entry) -> Bool {
            a.rank != b.rank ? a.rank < b.rank : a.left < b.left
        }
    }

    private var items: [Entry] = []

    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Entry.precedes(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < n && Entry.precedes(items[l], items[best]) { best = l }
                if r < n && Entry.precedes(items[r], items[best]) { best = r }
                if best == i { break }
                items.swapAt(i, best)
                i = best
            }
        }
        return top
    }
}
