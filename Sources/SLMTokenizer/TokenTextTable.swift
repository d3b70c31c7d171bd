/// Exact lookup of a token by the bytes of its vocabulary text, without building a `String`.
///
/// llama.cpp's `text_to_token` is a hash map from token text to id; SentencePiece merging
/// asks it once per candidate pair and byte-level BPE with `ignore_merges` once per word.
/// Here the texts are concatenated into one buffer and indexed by an open-addressing table
/// (linear probing, FNV-1a), so a lookup is a hash of the query bytes and a compare: no
/// allocation per query.
///
/// A text that occurs twice keeps its first id (llama.cpp refuses such vocabularies at load).
struct TokenTextTable: Sendable {
    private let bytes: [UInt8]
    private let start: [Int32]  // token i is bytes[start[i]..<start[i+1]]
    private let slots: [Int32]  // token id, or -1 for an empty slot
    private let mask: Int
    /// The longest text: a longer query is answered without hashing it.
    let maxLength: Int

    /// - Precondition: the texts' total size fits in `Int32` (the tokenizer checks it).
    init(texts: [String]) {
        var bytes: [UInt8] = []
        var start: [Int32] = [0]
        start.reserveCapacity(texts.count + 1)
        for t in texts {
            bytes.append(contentsOf: t.utf8)
            start.append(Int32(bytes.count))
        }
        var capacity = 16
        while capacity < texts.count * 2 { capacity <<= 1 }
        var slots = [Int32](repeating: -1, count: capacity)
        let mask = capacity - 1
        bytes.withUnsafeBufferPointer { b in
            for i in 0..<texts.count {
                let lo = Int(start[i]), hi = Int(start[i + 1])
                let key = UnsafeBufferPointer(rebasing: b[lo..<hi])
                var s = Int(truncatingIfNeeded: Self.hash(key)) & mask
                while true {
                    let occupant = slots[s]
                    if occupant < 0 { slots[s] = Int32(i); break }
                    let olo = Int(start[Int(occupant)]), ohi = Int(start[Int(occupant) + 1])
                    if Self.equal(UnsafeBufferPointer(rebasing: b[olo..<ohi]), key) { break }  // first id wins
                    s = (s + 1) & mask
                }
            }
        }
        self.bytes = bytes
        self.start = start
        self.slots = slots
        self.mask = mask
        self.maxLength = texts.reduce(0) { max($0, $1.utf8.count) }
    }

    @inline(__always)
    static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h ^ (h >> 29)
    }

    @inline(__always)
    private static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where a[i] != b[i] { return false }
        return true
    }

    /// The id of the token whose text is exactly `key`, or nil.
    func id(of key: UnsafeBufferPointer<UInt8>) -> Int32? {
        if key.count > maxLength { return nil }
        return bytes.withUnsafeBufferPointer { b in
            var s = Int(truncatingIfNeeded: Self.hash(key)) & mask
            while true {
                let occupant = slots[s]
                if occupant < 0 { return nil }
                let lo = Int(start[Int(occupant)]), hi = Int(start[Int(occupant) + 1])
                if Self.equal(UnsafeBufferPointer(rebasing: b[lo..<hi]), key) { return occupant }
                s = (s + 1) & mask
            }
        }
    }

    /// The id of the token whose text is `text`, or nil (for setup code; allocates).
    func id(of text: String) -> Int32? {
        var t = text
        return t.withUTF8 { id(of: $0) }
    }
}
