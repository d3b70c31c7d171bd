import SLMTokenizer

/// The vocabulary as constrained decoding sees it: every token's bytes and a byte trie over
/// all tokens, built once per model and shared (immutable) by every request.
///
/// The trie is stored in depth-first preorder with each node's subtree end, so a mask is one
/// forward scan over the nodes that skips a whole subtree as soon as its first byte is
/// refused (see `ConstrainedDecoder.computeMask`).
///
/// Only tokens of type `normal` with at least one byte are in the trie: control tokens
/// (`<|im_start|>`, `<|endoftext|>`), byte/unused placeholders and user-defined tokens are
/// never allowed inside JSON. End-of-generation ids are handled separately (`eogIDs`).
public final class ConstraintVocabulary: Sendable {
    public let tokenizer: Tokenizer
    public let vocabSize: Int
    /// Ids that end generation, allowed only once the document is whole.
    public let eogIDs: [Int32]
    /// Longest token in bytes (bounds how far one token can move the automaton).
    public let maxTokenBytes: Int
    /// Tokens in the trie (normal tokens with bytes).
    public let eligibleCount: Int

    /// Token i's bytes are `bytes[start[i]..<start[i+1]]`.
    let bytes: [UInt8]
    let start: [Int32]
    let eligible: [Bool]
    let isEOG: [Bool]

    // Trie in preorder; node 0 is the root (empty prefix).
    let nodeByte: [UInt8]
    let nodeDepth: [Int32]
    /// One past the last node of the node's subtree.
    let subtreeEnd: [Int32]
    /// Tokens whose bytes end exactly at node n: `nodeTokens[nodeTokenStart[n]..<nodeTokenStart[n+1]]`.
    let nodeTokenStart: [Int32]
    let nodeTokens: [Int32]
    /// For each token: how many characters it adds as plain JSON string content (printable
    /// ASCII other than `"` and `\`, or whole well-formed UTF-8 characters), -1 if it is not
    /// plain content. Inside a string at a character boundary such a token is allowed exactly
    /// when that many characters still fit, whatever the rest of the state.
    let plainChars: [Int16]
    /// Whether the node's subtree holds any token that is not plain string content; the
    /// mask scan inside a string visits only those subtrees.
    let subtreeHasNonPlain: [Bool]

    /// Bytes held by the tables above (what one model's vocabulary costs, shared by all requests).
    public var tableBytes: Int {
        bytes.count + start.count * 4 + eligible.count * 2 + nodeByte.count + nodeDepth.count * 4
            + subtreeEnd.count * 4 + nodeTokenStart.count * 4 + nodeTokens.count * 4
            + plainChars.count * 2 + subtreeHasNonPlain.count
    }
    public var trieNodeCount: Int { nodeByte.count }

    public init(tokenizer: Tokenizer) {
        self.tokenizer = tokenizer
        let n = tokenizer.vocabSize
        vocabSize = n
        var bytes: [UInt8] = []
        bytes.reserveCapacity(n * 8)
        var start: [Int32] = [0]
        start.reserveCapacity(n + 1)
        var eligible = [Bool](repeating: false, count: n)
        var isEOG = [Bool](repeating: false, count: n)
        var maxLen = 0
        for id in 0..<n {
            let b = tokenizer.tokenBytes(Int32(id))
            bytes.append(contentsOf: b)
            start.append(Int32(bytes.count))
            eligible[id] = tokenizer.tokenType(Int32(id)) == .normal && !b.isEmpty
            isEOG[id] = tokenizer.isEOG(Int32(id))
            if eligible[id] { maxLen = max(maxLen, b.count) }
        }
        self.bytes = bytes
        self.start = start
        self.eligible = eligible
        self.isEOG = isEOG
        eogIDs = tokenizer.eogIDs.sorted()
        maxTokenBytes = maxLen

        // Sort eligible ids by their bytes; a preorder trie then falls out of one pass.
        var ids = (0..<n).filter { eligible[$0] }.map(Int32.init)
        eligibleCount = ids.count
        bytes.withUnsafeBufferPointer { buf in
            ids.sort { x, y in
                let xs = Int(start[Int(x)]), xe = Int(start[Int(x) + 1])
                let ys = Int(start[Int(y)]), ye = Int(start[Int(y) + 1])
                var i = 0
                while xs + i < xe && ys + i < ye {
                    let a = buf[xs + i], b = buf[ys + i]
                    if a != b { return a < b }
                    i += 1
                }
                return (xe - xs, x) < (ye - ys, y)
            }
        }
        var nodeByte: [UInt8] = [0]
        var nodeDepth: [Int32] = [0]
        var subtreeEnd: [Int32] = [0]
        var nodeTokenStart: [Int32] = [0]
        var nodeTokens: [Int32] = []
        var parent: [Int32] = [-1]
        var path: [Int32] = [0]  // node ids along the current prefix; path[d] is at depth d
        var prev: ArraySlice<UInt8> = []
        for id in ids {
            let tb = bytes[Int(start[Int(id)])..<Int(start[Int(id) + 1])]
            var common = 0
            while common < prev.count && common < tb.count
                && prev[prev.startIndex + common] == tb[tb.startIndex + common] { common += 1 }
            // Close the nodes deeper than the common prefix.
            while path.count - 1 > common {
                subtreeEnd[Int(path.removeLast())] = Int32(nodeByte.count)
            }
            for d in common..<tb.count {
                let node = Int32(nodeByte.count)
                nodeByte.append(tb[tb.startIndex + d])
                nodeDepth.append(Int32(d + 1))
                subtreeEnd.append(0)
                parent.append(path[path.count - 1])
                nodeTokenStart.append(Int32(nodeTokens.count))
                path.append(node)
            }
            nodeTokens.append(id)  // ends at the newest node (duplicates of equal bytes too)
            prev = tb
        }
        while let last = path.popLast() { subtreeEnd[Int(last)] = Int32(nodeByte.count) }
        nodeTokenStart.append(Int32(nodeTokens.count))
        self.nodeByte = nodeByte
        self.nodeDepth = nodeDepth
        self.subtreeEnd = subtreeEnd
        self.nodeTokenStart = nodeTokenStart
        self.nodeTokens = nodeTokens

        var plain = [Int16](repeating: -1, count: n)
        for id in 0..<n where eligible[id] {
            plain[id] = Self.plainCharacterCount(bytes[Int(start[id])..<Int(start[id + 1])])
        }
        var nonPlain = [Bool](repeating: false, count: nodeByte.count)
        for node in stride(from: nodeByte.count - 1, through: 1, by: -1) {
            for t in Int(nodeTokenStart[node])..<Int(nodeTokenStart[node + 1]) where plain[Int(nodeTokens[t])] < 0 {
                nonPlain[node] = true
            }
            if nonPlain[node] { nonPlain[Int(parent[node])] = true }
        }
        plainChars = plain
        subtreeHasNonPlain = nonPlain
    }

    /// Characters in `b` if it is plain string content (see `plainChars`), else -1. Uses the
    /// same UTF-8 rules as `SchemaAutomaton` (no overlongs, no surrogates, at most U+10FFFF).
    static func plainCharacterCount(_ b: ArraySlice<UInt8>) -> Int16 {
        var i = b.startIndex
        var chars: Int16 = 0
        while i < b.endIndex {
            let c = b[i]
            var need = 0
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case 0x22, 0x5C: return -1  // quote and backslash end or escape, not plain
            case 0x20...0x7F: need = 0
            case 0xC2...0xDF: need = 1
            case 0xE0...0xEF: need = 2; if c == 0xE0 { lo = 0xA0 }; if c == 0xED { hi = 0x9F }
            case 0xF0...0xF4: need = 3; if c == 0xF0 { lo = 0x90 }; if c == 0xF4 { hi = 0x8F }
            default: return -1
            }
            i += 1
            for k in 0..<need {
                guard i < b.endIndex else { return -1 }
                let x = b[i]
                guard x >= (k == 0 ? lo : 0x80) && x <= (k == 0 ? hi : 0xBF) else { return -1 }
                i += 1
            }
            chars += 1
        }
        return chars
    }

    /// The bytes of token `id` (empty for an invalid id).
    public func bytes(of id: Int32) -> ArraySlice<UInt8> {
        guard id >= 0 && Int(id) < vocabSize else { return [] }
        return bytes[Int(start[Int(id)])..<Int(start[Int(id) + 1])]
    }

    /// Whether `id` may ever appear inside JSON output (a normal token with bytes).
    public func isEligible(_ id: Int32) -> Bool { id >= 0 && Int(id) < vocabSize && eligible[Int(id)] }

    public func isEndOfGeneration(_ id: Int32) -> Bool { id >= 0 && Int(id) < vocabSize && isEOG[Int(id)] }
}
