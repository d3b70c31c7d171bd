import GGUF

/// Text <-> token ids for a GPT-2-style byte-level BPE vocabulary, built entirely from GGUF
/// metadata and matching llama.cpp's `llama_tokenize` / `llama_token_to_piece` id for id.
///
/// Supported: `tokenizer.ggml.model = gpt2` with the pre-tokenizers in `PreTokenizer`.
/// Anything else (SentencePiece `llama`, WordPiece `bert`, unknown `pre` names) is refused
/// at load with a `TokenizerError` naming the value, rather than tokenizing subtly wrong.
///
/// A byte the vocabulary has no token for (SmolLM lacks a few control bytes such as 0x04)
/// is dropped from the ids, as llama.cpp drops it; `decode(encode(s)) == s` holds for every
/// text without such bytes.
///
/// Immutable after init, so one instance is shared by every request.
public final class Tokenizer: Sendable {
    /// Number of tokens in the vocabulary (valid ids are `0..<vocabSize`).
    public let vocabSize: Int
    /// Beginning-of-sequence id, if the model names one.
    public let bosID: Int32?
    /// End-of-sequence id.
    public let eosID: Int32
    /// Whether prompts should start with `bosID` (`tokenizer.ggml.add_bos_token`).
    /// `encode` never adds it: the caller decides, because a chat template may already
    /// contain it as text.
    public let addBOS: Bool
    /// Every id that ends generation (see `SpecialTokens.endOfGeneration` for the rule).
    public let eogIDs: Set<Int32>
    /// The pre-tokenizer variant selected by `tokenizer.ggml.pre`.
    public let preTokenizer: PreTokenizer

    private let texts: [String]
    private let types: [TokenType]
    private let idOf: [String: Int32]
    private let bpe: BytePairEncoder
    private let specials: SpecialTokens
    /// The bytes each token renders as, concatenated; token i is
    /// `pieceBytes[pieceStart[i]..<pieceStart[i+1]]`. Precomputed because decoding runs once
    /// per generated token.
    private let pieceBytes: [UInt8]
    private let pieceStart: [Int32]

    /// Reads the vocabulary, merges, token types and special ids from `gguf`'s metadata.
    public init(gguf: GGUFFile) throws(TokenizerError) {
        let model = try Self.string(gguf, "tokenizer.ggml.model")
        guard model == "gpt2" else {
            throw TokenizerError(.unsupportedModel, key: "tokenizer.ggml.model",
                                 "'\(model)' is not supported; slmd implements only 'gpt2' (byte-level BPE)")
        }
        let pre = gguf["tokenizer.ggml.pre"]?.stringValue ?? "default"
        guard let variant = PreTokenizer.byName[pre] else {
            let known = PreTokenizer.byName.keys.sorted().joined(separator: ", ")
            throw TokenizerError(.unsupportedPreTokenizer, key: "tokenizer.ggml.pre",
                                 "'\(pre)' is not supported; known: \(known)")
        }
        preTokenizer = variant

        let texts: [String]
        let merges: [String]
        do {
            texts = try gguf.stringArray("tokenizer.ggml.tokens")
            merges = try gguf.stringArray("tokenizer.ggml.merges")
        } catch {
            throw TokenizerError(.missingMetadata, key: error.field, error.detail)
        }
        let n = texts.count
        guard n > 0, n < Int(Int32.max) else {
            throw TokenizerError(.invalidVocabulary, key: "tokenizer.ggml.tokens", "vocabulary has \(n) tokens")
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
            // llama.cpp ignores an out-of-range special id (keeping its default); slmd has no
            // defaults to fall back on, so the id is simply absent.
            return (0..<n).contains(i) ? Int32(i) : nil
        }
        bosID = try optionalID("tokenizer.ggml.bos_token_id")
        guard let eos = try optionalID("tokenizer.ggml.eos_token_id") else {
            throw TokenizerError(.missingMetadata, key: "tokenizer.ggml.eos_token_id", "absent or out of range")
        }
        eosID = eos
        addBOS = gguf["tokenizer.ggml.add_bos_token"]?.boolValue ?? false

        let (eog, forced) = SpecialTokens.endOfGeneration(
            texts: texts, idOf: idOf, eos: eos,
            eot: try optionalID("tokenizer.ggml.eot_token_id"),
            eom: try optionalID("tokenizer.ggml.eom_token_id"),
            fimPad: try optionalID("tokenizer.ggml.fim_pad_token_id"),
            fimRep: try optionalID("tokenizer.ggml.fim_rep_token_id"),
            fimSep: try optionalID("tokenizer.ggml.fim_sep_token_id"))
        // As in llama.cpp, a token whose text marks it as an end/FIM marker is control even if
        // the converter typed it normal, so it is parsed out of text and hidden on render.
        for id in forced where types[Int(id)] == .normal { types[Int(id)] = .control }
        eogIDs = eog

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
        specials = SpecialTokens(types: types, texts: texts)

        var pieceBytes: [UInt8] = []
        pieceBytes.reserveCapacity(n * 6)
        var pieceStart: [Int32] = [0]
        pieceStart.reserveCapacity(n + 1)
        for (i, t) in texts.enumerated() {
            switch types[i] {
            case .normal:
                ByteLevel.decode(t, into: &pieceBytes)
            case .control, .unknown, .userDefined:
                pieceBytes.append(contentsOf: t.utf8)
            case .undefined, .unused, .byte:
                break  // llama.cpp renders these as nothing for BPE vocabularies
            }
            pieceStart.append(Int32(pieceBytes.count))
        }
        self.pieceBytes = pieceBytes
        self.pieceStart = pieceStart
        self.texts = texts
        self.types = types
        self.idOf = idOf
        self.vocabSize = n
    }

    private static func string(_ gguf: GGUFFile, _ key: String) throws(TokenizerError) -> String {
        guard let v = gguf[key] else { throw TokenizerError(.missingMetadata, key: key, "key is absent") }
        guard let s = v.stringValue else { throw TokenizerError(.missingMetadata, key: key, "expected a string, found \(v.type)") }
        return s
    }

    // MARK: Encoding

    /// Token ids for `text`. Never adds BOS (see `addBOS`).
    ///
    /// With `parseSpecial`, control-token texts such as `<|im_start|>` in `text` become their
    /// ids; without it they are tokenized as ordinary characters, which is what untrusted
    /// user content should get.
    public func encode(_ text: String, parseSpecial: Bool = true) -> [Int32] {
        var text = text  // withUTF8 may make it contiguous; the caller's copy is untouched
        return text.withUTF8 { encode($0, parseSpecial: parseSpecial) }
    }

    private func encode(_ bytes: UnsafeBufferPointer<UInt8>, parseSpecial: Bool) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(bytes.count / 3 + 4)
        var scalars: [UInt32] = []
        var classes: [ScalarClass] = []
        var offsets: [Int] = []  // byte offset of each scalar, plus one past the end
        var ends: [Int] = []
        var ws = BytePairEncoder.Workspace()
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
                    bpe.encode(word, into: &out, &ws)
                    start = end
                }
            }
        }
        return out
    }

    // MARK: Decoding

    /// The text of `ids`, byte-exact: `decode(encode(s)) == s`. Bytes that do not form valid
    /// UTF-8 (only possible when the ids were cut mid-character) become U+FFFD.
    /// With `renderSpecial` false, control and unknown tokens render as nothing.
    /// Ids outside the vocabulary render as nothing.
    public func decode(_ ids: [Int32], renderSpecial: Bool = true) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids { appendBytes(id, renderSpecial: renderSpecial, to: &bytes) }
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

    /// The token's text as stored in the vocabulary (byte-level spelling for normal tokens,
    /// e.g. `Ġhello`); empty for an invalid id.
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
