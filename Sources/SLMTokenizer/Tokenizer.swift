import GGUF

/// Text <-> token ids, built entirely from GGUF metadata and matching llama.cpp's
/// `llama_tokenize` / `llama_token_to_piece` / `llama_detokenize` id for id.
///
/// Supported (`tokenizer.ggml.model`):
/// - `gpt2`: byte-level BPE with the pre-tokenizers in `PreTokenizer` (`tokenizer.ggml.pre`);
/// - `llama`: SentencePiece BPE (scores, `<0xNN>` byte fallback, the `▁` leading space).
/// Anything else (WordPiece `bert`, Unigram `t5`, unknown `pre` names) is refused at load
/// with a `TokenizerError` naming the value and the supported ones, rather than tokenizing
/// subtly wrong. A vocabulary-only GGUF (no tensors) is enough.
///
/// A byte the vocabulary has no token for (SmolLM lacks a few control bytes such as 0x04)
/// is dropped from the ids, as llama.cpp drops it; `decode(encode(s)) == s` holds for every
/// text without such bytes.
///
/// Immutable after init, so one instance is shared by every request.
public final class Tokenizer: Sendable {
    /// The tokenizer families slmd implements, by their `tokenizer.ggml.model` name.
    public enum Model: String, Sendable, CaseIterable {
        /// GPT-2 byte-level BPE.
        case gpt2
        /// SentencePiece BPE (LLaMA 1/2, Mistral v0.1, TinyLlama, Phi-3).
        case llama
    }

    /// Upper bounds on what metadata may ask for (they come from untrusted files). The
    /// largest real vocabularies are ~260K tokens and ~300K merges.
    public static let maxVocabularySize = 1 << 21
    public static let maxMerges = 1 << 22
    public static let maxTokenBytes = 1 << 16

    /// Which family this is.
    public let model: Model
    /// Number of tokens in the vocabulary (valid ids are `0..<vocabSize`).
    public let vocabSize: Int
    /// Beginning-of-sequence id, if the model names one.
    public let bosID: Int32?
    /// End-of-sequence id.
    public let eosID: Int32
    /// Unknown-token id, if any (SentencePiece writes it for a byte without a token).
    public let unknownID: Int32?
    /// Whether prompts should start with `bosID` (`tokenizer.ggml.add_bos_token`; the
    /// family's default when absent: SentencePiece and `llama3` yes, other BPE no).
    /// `encode` never adds it; `tokenize(_:addSpecial:)` does, as `llama_tokenize` does.
    public let addBOS: Bool
    /// Whether `tokenize(_:addSpecial: true)` ends with `eosID` (`tokenizer.ggml.add_eos_token`).
    public let addEOS: Bool
    /// SentencePiece's leading space (`tokenizer.ggml.add_space_prefix`, default on for
    /// `llama`): a `▁` before the first fragment and each one after a special token, and one
    /// leading space dropped from the first token by `decode`.
    public let addSpacePrefix: Bool
    /// Every id that ends generation (see `SpecialTokens.endOfGeneration` for the rule).
    public let eogIDs: Set<Int32>
    /// The pre-tokenizer variant selected by `tokenizer.ggml.pre` (BPE only).
    public let preTokenizer: PreTokenizer?

    private let texts: [String]
    private let types: [TokenType]
    private let idOf: [String: Int32]
    private let textTable: TokenTextTable
    private let bpe: BytePairEncoder?
    private let spm: SentencePieceEncoder?
    private let specials: SpecialTokens
    /// The bytes each token renders as, concatenated; token i is
    /// `pieceBytes[pieceStart[i]..<pieceStart[i+1]]`. Precomputed because decoding runs once
    /// per generated token.
    private let pieceBytes: [UInt8]
    private let pieceStart: [Int32]

    /// Reads the vocabulary, merges or scores, token types and special ids from `gguf`'s
    /// metadata. `endOfTurnTexts` are token texts the chat template ends a turn with; those
    /// present in the vocabulary join `eogIDs`.
    public init(gguf: GGUFFile, endOfTurnTexts: [String] = []) throws(TokenizerError) {
        let modelName = try Self.string(gguf, "tokenizer.ggml.model")
        guard let model = Model(rawValue: modelName) else {
            let known = Model.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
            throw TokenizerError(.unsupportedModel, key: "tokenizer.ggml.model",
                                 "'\(modelName)' is not supported; slmd implements \(known) (gpt2: byte-level BPE, llama: SentencePiece)")
        }
        self.model = model
        var variant: PreTokenizer?
        if model == .gpt2 {
            let pre = gguf["tokenizer.ggml.pre"]?.stringValue ?? "default"
            guard let v = PreTokenizer.byName[pre] else {
                let known = PreTokenizer.byName.keys.sorted().joined(separator: ", ")
                throw TokenizerError(.unsupportedPreTokenizer, key: "tokenizer.ggml.pre",
                                     "'\(pre)' is not supported; known: \(known)")
            }
            variant = v
        }
        preTokenizer = variant

        let texts: [String]
        do {
            texts = try gguf.stringArray("tokenizer.ggml.tokens")
        } catch {
            throw TokenizerError(.missingMetadata, key: error.field, error.detail)
        }
        let n = texts.count
        guard n > 0, n <= Self.maxVocabularySize else {
            throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.tokens",
                                 "vocabulary has \(n) tokens; 1...\(Self.maxVocabularySize) supported")
        }
        var totalBytes = 0
        for (i, t) in texts.enumerated() {
            let c = t.utf8.count
            guard c <= Self.maxTokenBytes else {
                throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.tokens",
                                     "token \(i) is \(c) bytes long; at most \(Self.maxTokenBytes) supported")
            }
            totalBytes += c  // n * maxTokenBytes < 2^37: cannot overflow
        }
        guard totalBytes < Int(Int32.max) / 4 else {
            throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.tokens", "token texts total \(totalBytes) bytes")
        }
        var types = [TokenType](repeating: .normal, count: n)
        if gguf["tokenizer.ggml.token_type"] != nil {
            let raw: [Int]
            do { raw = try gguf.intArray("tokenizer.ggml.token_type") } catch {
                throw TokenizerError(.missingMetadata, key: "tokenizer.ggml.token_type", error.detail)
            }
            guard raw.count == n else {
                throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.token_type",
                                     "\(raw.count) types for \(n) tokens")
            }
            for (i, t) in raw.enumerated() {
                guard let tt = Int32(exactly: t).flatMap(TokenType.init(rawValue:)) else {
                    throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.token_type", "token \(i) has type \(t)")
                }
                types[i] = tt
            }
        }

        var idOf: [String: Int32] = [:]
        idOf.reserveCapacity(n)
        for (i, t) in texts.enumerated() where idOf[t] == nil { idOf[t] = Int32(i) }

        func optionalID(_ key: String) throws(TokenizerError) -> Int32? {
            guard let v = gguf[key] else { return nil }
            guard let i = v.intValue else {
                throw TokenizerError(.missingMetadata, key: key, "expected an integer token id, found \(v.type)")
            }
            // llama.cpp ignores an out-of-range special id (keeping its default).
            return (0..<n).contains(i) ? Int32(i) : nil
        }
        func flag(_ key: String, default value: Bool) throws(TokenizerError) -> Bool {
            guard let v = gguf[key] else { return value }
            guard let b = v.boolValue else {
                throw TokenizerError(.missingMetadata, key: key, "expected a boolean, found \(v.type)")
            }
            return b
        }
        // llama.cpp's defaults for SentencePiece: <unk> 0, <s> 1, </s> 2 (when in range).
        // BPE has no meaningful defaults, so there an id is taken from the metadata only.
        func spmDefault(_ id: Int32) -> Int32? { model == .llama && Int(id) < n ? id : nil }
        bosID = try optionalID("tokenizer.ggml.bos_token_id") ?? spmDefault(1)
        unknownID = try optionalID("tokenizer.ggml.unknown_token_id") ?? spmDefault(0)
        guard let eos = try optionalID("tokenizer.ggml.eos_token_id") ?? spmDefault(2) else {
            throw TokenizerError(.missingMetadata, key: "tokenizer.ggml.eos_token_id", "absent or out of range")
        }
        eosID = eos
        addBOS = try flag("tokenizer.ggml.add_bos_token", default: model == .llama || variant?.addsBOSByDefault == true)
        addEOS = try flag("tokenizer.ggml.add_eos_token", default: false)
        addSpacePrefix = try flag("tokenizer.ggml.add_space_prefix", default: model == .llama)

        var (eog, forced) = SpecialTokens.endOfGeneration(
            texts: texts, idOf: idOf, eos: eos,
            eot: try optionalID("tokenizer.ggml.eot_token_id"),
            eom: try optionalID("tokenizer.ggml.eom_token_id"),
            fimPad: try optionalID("tokenizer.ggml.fim_pad_token_id"),
            fimRep: try optionalID("tokenizer.ggml.fim_rep_token_id"),
            fimSep: try optionalID("tokenizer.ggml.fim_sep_token_id"))
        for t in endOfTurnTexts {
            if let id = idOf[t] { eog.insert(id); forced.insert(id) }
        }
        // As in llama.cpp, a token whose text marks it as an end/FIM marker is control even if
        // the converter typed it otherwise (Phi-3's `</s>` is user-defined), so it is parsed
        // out of text only with parseSpecial and hidden on render without renderSpecial.
        for id in forced where types[Int(id)] != .control && types[Int(id)] != .unknown { types[Int(id)] = .control }
        eogIDs = eog

        let textTable = TokenTextTable(texts: texts)
        switch model {
        case .gpt2:
            let merges: [String]
            do {
                merges = try gguf.stringArray("tokenizer.ggml.merges")
            } catch {
                throw TokenizerError(.missingMetadata, key: error.field, error.detail)
            }
            guard merges.count <= Self.maxMerges else {
                throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.merges",
                                     "\(merges.count) merges; at most \(Self.maxMerges) supported")
            }
            // Some vocabularies (SmolLM's among them) have no token for a few control bytes.
            // llama.cpp then drops such a byte from the output; -1 marks it so BPE does the same.
            var byteTokens = [Int32](repeating: -1, count: 256)
            for b in 0..<256 {
                byteTokens[b] = idOf[ByteLevel.text(forByte: UInt8(b))] ?? -1
            }
            guard byteTokens.filter({ $0 >= 0 }).count >= 128 else {
                throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.tokens",
                                     "fewer than half of the 256 byte symbols are tokens; not a byte-level BPE vocabulary")
            }
            bpe = try BytePairEncoder(byteTokens: byteTokens, merges: merges, idOf: idOf)
            spm = nil
        case .llama:
            guard let v = gguf["tokenizer.ggml.scores"], case .array(_, let items) = v else {
                throw TokenizerError(.missingMetadata, key: "tokenizer.ggml.scores", "absent, or not an array of numbers")
            }
            guard items.count >= n else {
                throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.scores", "\(items.count) scores for \(n) tokens")
            }
            var scores = [Float](repeating: 0, count: n)
            for i in 0..<n {
                // llama.cpp accepts float32 or int32 scores.
                guard let f = items[i].floatValue ?? items[i].intValue.map(Float.init), f.isFinite else {
                    throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.scores", "score \(i) is \(items[i])")
                }
                scores[i] = f
            }
            var byteTokens = [Int32](repeating: -1, count: 256)
            let hex = Array("0123456789ABCDEF".utf8)
            for b in 0..<256 {
                let name = String(decoding: [0x3C, 0x30, 0x78, hex[b >> 4], hex[b & 15], 0x3E], as: UTF8.self)  // <0xNN>
                byteTokens[b] = textTable.id(of: name) ?? [UInt8(b)].withUnsafeBufferPointer { textTable.id(of: $0) } ?? -1
            }
            spm = SentencePieceEncoder(scores: scores, byteTokens: byteTokens, unknownID: unknownID)
            bpe = nil
        }

        // llama.cpp gives Phi-3's special tokens RSTRIP (whitespace after them is swallowed),
        // keyed on the model name; it is the only such rule for the families slmd supports.
        var rstrip = Set<Int32>()
        let name = (gguf["general.name"]?.stringValue ?? "").lowercased()
        if name.contains("phi-3") || name.contains("phi3") {
            for (i, t) in types.enumerated() where t == .control || t == .userDefined || t == .unknown { rstrip.insert(Int32(i)) }
            if let id = idOf["</s>"] { rstrip.insert(id) }
            for t in ["<unk>", "<s>", "<|endoftext|>"] { if let id = idOf[t] { rstrip.remove(id) } }
        }
        specials = SpecialTokens(types: types, texts: texts, rstrip: rstrip)

        var pieceBytes: [UInt8] = []
        pieceBytes.reserveCapacity(totalBytes + n)
        var pieceStart: [Int32] = [0]
        pieceStart.reserveCapacity(n + 1)
        for (i, t) in texts.enumerated() {
            switch (types[i], model) {
            case (.normal, .gpt2):
                ByteLevel.decode(t, into: &pieceBytes)
            case (.normal, .llama):
                Self.unescapeWhitespace(t, into: &pieceBytes)
            case (.control, _), (.unknown, _), (.userDefined, _):
                pieceBytes.append(contentsOf: t.utf8)
            case (.byte, .llama):
                if let b = Self.byteValue(t) { pieceBytes.append(b) }
            case (.undefined, _), (.unused, _), (.byte, .gpt2):
                break  // llama.cpp renders these as nothing
            }
            pieceStart.append(Int32(pieceBytes.count))
        }
        self.pieceBytes = pieceBytes
        self.pieceStart = pieceStart
        self.texts = texts
        self.types = types
        self.idOf = idOf
        self.textTable = textTable
        self.vocabSize = n
    }

    private static func string(_ gguf: GGUFFile, _ key: String) throws(TokenizerError) -> String {
        guard let v = gguf[key] else { throw TokenizerError(.missingMetadata, key: key, "key is absent") }
        guard let s = v.stringValue else { throw TokenizerError(.missingMetadata, key: key, "expected a string, found \(v.type)") }
        return s
    }

    /// `▁` back to a space (llama.cpp's `llama_unescape_whitespace`).
    private static func unescapeWhitespace(_ text: String, into out: inout [UInt8]) {
        let u = Array(text.utf8)
        var i = 0
        while i < u.count {
            if i + 2 < u.count && u[i] == 0xE2 && u[i + 1] == 0x96 && u[i + 2] == 0x81 {
                out.append(0x20); i += 3
            } else {
                out.append(u[i]); i += 1
            }
        }
    }

    /// The byte a `<0xNN>` token stands for; nil for any other spelling.
    static func byteValue(_ text: String) -> UInt8? {
        let u = Array(text.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x41...0x46: c - 0x41 + 10
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        guard let hi = nibble(u[3]), let lo = nibble(u[4]) else { return nil }
        return hi << 4 | lo
    }

    // MARK: Encoding

    /// Token ids for `text`. Never adds BOS or EOS (see `tokenize(_:addSpecial:parseSpecial:)`).
    ///
    /// With `parseSpecial`, control-token texts such as `<|im_start|>` in `text` become their
    /// ids; without it they are tokenized as ordinary characters, which is what untrusted
    /// user content should get.
    public func encode(_ text: String, parseSpecial: Bool = true) -> [Int32] {
        tokenize(text, addSpecial: false, parseSpecial: parseSpecial)
    }

    /// `llama_tokenize`: with `addSpecial`, BOS first when `addBOS` and EOS last when
    /// `addEOS`.
    public func tokenize(_ text: String, addSpecial: Bool, parseSpecial: Bool = true) -> [Int32] {
        var text = text  // withUTF8 may make it contiguous; the caller's copy is untouched
        return text.withUTF8 { bytes in
            var out: [Int32] = []
            out.reserveCapacity(bytes.count / 3 + 4)
            if addSpecial && addBOS, let bos = bosID { out.append(bos) }
            switch model {
            case .gpt2: encodeBPE(bytes, parseSpecial: parseSpecial, into: &out)
            case .llama: encodeSPM(bytes, parseSpecial: parseSpecial, into: &out)
            }
            if addSpecial && addEOS { out.append(eosID) }
            return out
        }
    }

    private func encodeSPM(_ bytes: UnsafeBufferPointer<UInt8>, parseSpecial: Bool, into out: inout [Int32]) {
        guard let spm else { return }
        var ws = SentencePieceEncoder.Workspace()
        var previousIsSpecial = true  // the first fragment gets the leading space
        for fragment in specials.partition(bytes, parseSpecial: parseSpecial) {
            switch fragment {
            case .token(let id):
                out.append(id)
                previousIsSpecial = true
            case .text(let range):
                spm.encode(UnsafeBufferPointer(rebasing: bytes[range]), prependSpace: addSpacePrefix && previousIsSpecial,
                           table: textTable, into: &out, &ws)
                previousIsSpecial = false
            }
        }
    }

    private func encodeBPE(_ bytes: UnsafeBufferPointer<UInt8>, parseSpecial: Bool, into out: inout [Int32]) {
        guard let bpe, let preTokenizer else { return }
        var scalars: [UInt32] = []
        var classes: [ScalarClass] = []
        var offsets: [Int] = []  // byte offset of each scalar, plus one past the end
        var ends: [Int] = []
        var spelled: [UInt8] = []  // a word's byte-level spelling, for ignore_merges
        var ws = BytePairEncoder.Workspace()
        let wholeWords = preTokenizer.ignoresMerges
        for fragment in specials.partition(bytes, parseSpecial: parseSpecial) {
            switch fragment {
            case .token(let id):
                out.append(id)
            case .text(let range):
                scalars.removeAll(keepingCapacity: true)
                classes.removeAll(keepingCapacity: true)
                offsets.removeAll(keepingCapacity: true)
                ends.removeAll(keepingCapacity: true)
                UTF8Scan.scalars(bytes, range, &scalars, &offsets)
                for s in scalars { classes.append(ScalarClass.of(s)) }
                scalars.withUnsafeBufferPointer { s in
                    classes.withUnsafeBufferPointer { c in
                        preTokenizer.split(s, c, 0, s.count, into: &ends)
                    }
                }
                var start = 0
                for end in ends {
                    let word = UnsafeBufferPointer(rebasing: bytes[offsets[start]..<offsets[end]])
                    start = end
                    if wholeWords {
                        spelled.removeAll(keepingCapacity: true)
                        for b in word { ByteLevel.appendSpelling(of: b, to: &spelled) }
                        if let id = spelled.withUnsafeBufferPointer({ textTable.id(of: $0) }) {
                            out.append(id)
                            continue
                        }
                    }
                    bpe.encode(word, into: &out, &ws)
                }
            }
        }
    }

    // MARK: Decoding

    /// The text of `ids`, byte-exact: `decode(encode(s)) == s`. Bytes that do not form valid
    /// UTF-8 (only possible when the ids were cut mid-character) become U+FFFD.
    /// With `renderSpecial` false, control and unknown tokens render as nothing.
    /// Ids outside the vocabulary render as nothing.
    /// With `addSpacePrefix` (SentencePiece) one leading space of the first token is dropped,
    /// as `llama_detokenize` does, so the `▁` that `encode` prepended does not come back.
    public func decode(_ ids: [Int32], renderSpecial: Bool = true) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for (i, id) in ids.enumerated() {
            let before = bytes.count
            appendBytes(id, renderSpecial: renderSpecial, to: &bytes)
            if i == 0 && addSpacePrefix && bytes.count > before && bytes[before] == 0x20 { bytes.remove(at: before) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The raw bytes token `id` renders as (a control token's own text); empty for an
    /// invalid id. A single token may end mid-character.
    public func tokenBytes(_ id: Int32) -> [UInt8] {
        var out: [UInt8] = []
        appendBytes(id, renderSpecial: true, to: &out)
        return out
    }

    @inline(__always)
    func appendBytes(_ id: Int32, renderSpecial: Bool, to out: inout [UInt8]) {
        guard id >= 0, Int(id) < vocabSize else { return }
        if !renderSpecial {
            let t = types[Int(id)]
            if t == .control || t == .unknown { return }
        }
        out.append(contentsOf: pieceBytes[Int(pieceStart[Int(id)])..<Int(pieceStart[Int(id) + 1])])
    }

    // MARK: Token properties

    /// Whether generating `id` should stop generation.
    public func isEOG(_ id: Int32) -> Bool { eogIDs.contains(id) }

    /// Whether `id` is a control token (`<|im_start|>`, `<|endoftext|>`, ...).
    public func isControl(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < vocabSize && types[Int(id)] == .control
    }

    /// How the vocabulary treats `id`; nil for an invalid id.
    public func tokenType(_ id: Int32) -> TokenType? {
        id >= 0 && Int(id) < vocabSize ? types[Int(id)] : nil
    }

    /// The token's text as stored in the vocabulary (byte-level spelling for normal BPE
    /// tokens, e.g. `Ġhello`; `▁hello` for SentencePiece); empty for an invalid id.
    public func tokenText(_ id: Int32) -> String {
        id >= 0 && Int(id) < vocabSize ? texts[Int(id)] : ""
    }

    /// The id whose vocabulary text is exactly `text`, if any.
    public func id(forTokenText text: String) -> Int32? { idOf[text] }
}

/// Decoding UTF-8 that is already known to be valid (it came from a `String`).
enum UTF8Scan {
    /// Appends the scalars of `bytes[range]` and the byte offset of each in `bytes`, then
    /// `range.upperBound`, so scalar i spans `offsets[i]..<offsets[i+1]`.
    static func scalars(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>,
                        _ scalars: inout [UInt32], _ offsets: inout [Int]) {
        var i = range.lowerBound
        while i < range.upperBound {
            offsets.append(i)
            let b0 = UInt32(bytes[i])
            if b0 < 0x80 {
                scalars.append(b0); i += 1
            } else if b0 < 0xE0 {
                scalars.append((b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F)); i += 2
            } else if b0 < 0xF0 {
                scalars.append((b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F)); i += 3
            } else {
                scalars.append((b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12
                               | UInt32(bytes[i + 2] & 0x3F) << 6 | UInt32(bytes[i + 3] & 0x3F)); i += 4
            }
        }
        offsets.append(range.upperBound)
    }
}
