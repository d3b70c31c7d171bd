/// How a token is treated, from `tokenizer.ggml.token_type` (llama.cpp's numbering).
public enum TokenType: Int32, Sendable {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// The tokens that are matched as whole strings before pre-tokenization, and the
/// end-of-generation set. Both follow llama.cpp, which decides them by token type and,
/// for end of generation, partly by token text.
struct SpecialTokens: Sendable {
    /// Candidates for splitting out of raw text, longest text first so that a special token
    /// that contains another is found before the shorter one can cut it apart.
    let ordered: [(id: Int32, bytes: [UInt8], isUserDefined: Bool, lstrip: Bool, rstrip: Bool)]

    /// Token texts llama.cpp treats as end of generation whatever their id
    /// (end of turn, end of text, end of message across the model families it knows).
    static let eogTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    ]
    /// Texts llama.cpp recognises as end-of-turn when the metadata names none.
    static let eotTexts: [String] = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
        "<EOT>", "_<EOT>", "[EOT]", "<end_of_utterance>",
    ]
    // Fill-in-the-middle markers that end generation: a code model emitting one has left
    // the file it was asked to complete.
    static let fimPadTexts: [String] = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]
    static let fimRepTexts: [String] = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]
    static let fimSepTexts: [String] = ["<|file_sep|>"]

    /// `lstrip`/`rstrip`: ids whose match also swallows the whitespace (C `isspace`) before
    /// or after it, llama.cpp's LSTRIP/RSTRIP token attributes.
    init(types: [TokenType], texts: [String], lstrip: Set<Int32> = [], rstrip: Set<Int32> = []) {
        var list: [(id: Int32, bytes: [UInt8], isUserDefined: Bool, lstrip: Bool, rstrip: Bool)] = []
        for (i, t) in types.enumerated() where t == .control || t == .userDefined || t == .unknown {
            let bytes = Array(texts[i].utf8)
            let id = Int32(i)
            if !bytes.isEmpty { list.append((id, bytes, t == .userDefined, lstrip.contains(id), rstrip.contains(id))) }
        }
        // Stable for equal lengths (lower id first), so results do not depend on sort internals.
        list.sort { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id }
        self.ordered = list
    }

    /// The end-of-generation ids, chosen as llama.cpp chooses them: the FIM pad/repo/separator
    /// tokens, every token whose text is in `eogTexts`, and the EOS, EOT and EOM ids.
    /// Returns also the ids whose type llama.cpp forces to control because their text says so.
    static func endOfGeneration(texts: [String], idOf: [String: Int32], eos: Int32?,
                                eot: Int32?, eom: Int32?, fimPad: Int32?, fimRep: Int32?, fimSep: Int32?)
        -> (eog: Set<Int32>, forcedControl: Set<Int32>)
    {
        var forced = Set<Int32>()
        // llama.cpp scans a hash map, so "first match" is unspecified there; the lowest id is
        // the deterministic choice. It only matters when several candidates exist.
        func find(_ candidates: [String]) -> Int32? {
            let found = candidates.compactMap { idOf[$0] }.min()
            if let found { forced.insert(found) }
            return found
        }
        let eot = eot ?? find(eotTexts)
        let eom = eom ?? find(["<|eom_id|>"])
        var eog = Set<Int32>()
        for id in [fimPad ?? find(fimPadTexts), fimRep ?? find(fimRepTexts), fimSep ?? find(fimSepTexts)] {
            if let id { eog.insert(id) }
        }
        for (i, t) in texts.enumerated() where eogTexts.contains(t) {
            eog.insert(Int32(i))
            forced.insert(Int32(i))
        }
        for id in [eos, eot, eom] { if let id { eog.insert(id) } }
        return (eog, forced)
    }

    /// A piece of input: raw text to pre-tokenize (a byte range), or a special token.
    enum Fragment {
        case text(Range<Int>)
        case token(Int32)
    }

    /// Splits `bytes` around special tokens the way llama.cpp does: for each special token in
    /// `ordered` (longest first), every occurrence in every still-raw fragment, left to right.
    /// Control and unknown tokens are only recognised when `parseSpecial`; user-defined
    /// tokens always are, as in Hugging Face tokenizers.
    func partition(_ bytes: UnsafeBufferPointer<UInt8>, parseSpecial: Bool) -> [Fragment] {
        var fragments: [Fragment] = bytes.isEmpty ? [] : [.text(0..<bytes.count)]
        for special in ordered where parseSpecial || special.isUserDefined {
            let needle = special.bytes
            var out: [Fragment] = []
            var changed = false
            for f in fragments {
                guard case .text(let range) = f, range.count >= needle.count else { out.append(f); continue }
                var start = range.lowerBound
                var i = range.lowerBound
                let last = range.upperBound - needle.count
                let first = needle[0]
                while i <= last {
                    if bytes[i] == first && Self.matches(bytes, at: i, needle) {
                        var leftEnd = i
                        if special.lstrip {
                            while leftEnd > start && Self.isCSpace(bytes[leftEnd - 1]) { leftEnd -= 1 }
                        }
                        if start < leftEnd { out.append(.text(start..<leftEnd)) }
                        out.append(.token(special.id))
                        changed = true
                        i += needle.count
                        if special.rstrip {
                            while i < range.upperBound && Self.isCSpace(bytes[i]) { i += 1 }
                        }
                        start = i
                    } else {
                        i += 1
                    }
                }
                if start < range.upperBound { out.append(.text(start..<range.upperBound)) }
            }
            if changed { fragments = out }
        }
        return fragments
    }

    /// C's `isspace` in the C locale, which llama.cpp's strip attributes use.
    @inline(__always)
    static func isCSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }

    @inline(__always)
    private static func matches(_ hay: UnsafeBufferPointer<UInt8>, at i: Int, _ needle: [UInt8]) -> Bool {
        for k in 1..<needle.count where hay[i + k] != needle[k] { return false }
        return true
    }
}
