/// SentencePiece BPE (`tokenizer.ggml.model = llama`), a port of llama.cpp's
/// `llm_tokenizer_spm_session`.
///
/// The fragment's spaces become `▁` (U+2581), with one `▁` prepended when the caller says so
/// (llama.cpp's leading-space convention: the first fragment, and each one after a special
/// token). The text is cut into UTF-8 characters; then the adjacent pair whose
/// concatenation is the highest-scoring token is merged, ties going to the leftmost pair,
/// until no pair is a token. A final symbol that is not a token is written as its bytes'
/// `<0xNN>` tokens (byte fallback).
struct SentencePieceEncoder: Sendable {
    /// `tokenizer.ggml.scores`, by id.
    let scores: [Float]
    /// Token of each byte: `<0xNN>`, else the one-byte text, else -1 (llama.cpp's
    /// `byte_to_token`).
    let byteTokens: [Int32]
    /// Written for a byte that has no token at all (llama.cpp throws there); nil drops it.
    let unknownID: Int32?

    /// The escaped whitespace, `▁`.
    static let escapedSpace: [UInt8] = [0xE2, 0x96, 0x81]

    /// Reusable buffers, so a request allocates per call, not per character.
    struct Workspace {
        var text: [UInt8] = []
        var start: [Int] = []
        var length: [Int] = []
        var prev: [Int] = []
        var next: [Int] = []
        var heap: [Bigram] = []
    }

    struct Bigram {
        var score: Float
        var left: Int
        var right: Int
        var size: Int

        /// llama.cpp's priority: higher score first, then the leftmost pair.
        @inline(__always)
        static func precedes(_ a: Bigram, _ b: Bigram) -> Bool {
            a.score != b.score ? a.score > b.score : a.left < b.left
        }
    }

    /// UTF-8 sequence length from its lead byte, as llama.cpp's `unicode_len_utf8`.
    @inline(__always)
    static func utf8Length(_ b: UInt8) -> Int {
        switch b >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }

    /// Appends the tokens of one raw-text fragment to `out`.
    func encode(_ fragment: UnsafeBufferPointer<UInt8>, prependSpace: Bool, table: TokenTextTable,
                into out: inout [Int32], _ ws: inout Workspace) {
        ws.text.removeAll(keepingCapacity: true)
        if prependSpace { ws.text.append(contentsOf: Self.escapedSpace) }
        for b in fragment {
            if b == 0x20 { ws.text.append(contentsOf: Self.escapedSpace) } else { ws.text.append(b) }
        }
        ws.text.withUnsafeBufferPointer { text in
            encodeEscaped(text, table: table, into: &out, &ws)
        }
    }

    private func encodeEscaped(_ text: UnsafeBufferPointer<UInt8>, table: TokenTextTable,
                               into out: inout [Int32], _ ws: inout Workspace) {
        let n = text.count
        if n == 0 { return }
        ws.start.removeAll(keepingCapacity: true)
        ws.length.removeAll(keepingCapacity: true)
        ws.prev.removeAll(keepingCapacity: true)
        ws.next.removeAll(keepingCapacity: true)
        ws.heap.removeAll(keepingCapacity: true)
        var offset = 0
        var index = 0
        while offset < n {
            let len = min(Self.utf8Length(text[offset]), n - offset)
            ws.start.append(offset)
            ws.length.append(len)
            ws.prev.append(index - 1)
            offset += len
            ws.next.append(offset == n ? -1 : index + 1)
            index += 1
        }

        func tryAdd(_ left: Int, _ right: Int, _ ws: inout Workspace) {
            if left < 0 || right < 0 { return }
            let size = ws.length[left] + ws.length[right]
            let lo = ws.start[left]
            guard let id = table.id(of: UnsafeBufferPointer(rebasing: text[lo..<(lo + size)])) else { return }
            Self.push(Bigram(score: scores[Int(id)], left: left, right: right, size: size), &ws.heap)
        }

        for i in 1..<index { tryAdd(i - 1, i, &ws) }
        while let bigram = Self.pop(&ws.heap) {
            let l = bigram.left, r = bigram.right
            // A pair one of whose symbols has merged since it was queued is stale.
            if ws.length[l] == 0 || ws.length[r] == 0 || ws.length[l] + ws.length[r] != bigram.size { continue }
            ws.length[l] += ws.length[r]
            ws.length[r] = 0
            ws.next[l] = ws.next[r]
            if ws.next[r] >= 0 { ws.prev[ws.next[r]] = l }
            tryAdd(ws.prev[l], l, &ws)
            tryAdd(l, ws.next[l], &ws)
        }

        var i = 0
        while i != -1 {
            let lo = ws.start[i], len = ws.length[i]
            if let id = table.id(of: UnsafeBufferPointer(rebasing: text[lo..<(lo + len)])) {
                out.append(id)
            } else {
                // Only a single character can fail to be a token (every merge is one).
                for k in lo..<(lo + len) {
                    let t = byteTokens[Int(text[k])]
                    if t >= 0 {
                        out.append(t)
                    } else if let unk = unknownID {
                        out.append(unk)
                    }
                }
            }
            i = ws.next[i]
        }
    }

    private static func push(_ e: Bigram, _ heap: inout [Bigram]) {
        heap.append(e)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Bigram.precedes(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private static func pop(_ heap: inout [Bigram]) -> Bigram? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            let n = heap.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < n && Bigram.precedes(heap[l], heap[best]) { best = l }
                if r < n && Bigram.precedes(heap[r], heap[best]) { best = r }
                if best == i { break }
                heap.swapAt(i, best)
                i = best
            }
        }
        return top
    }
}
