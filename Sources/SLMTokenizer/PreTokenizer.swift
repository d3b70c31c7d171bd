/// The regex-equivalent splitter that runs before BPE, chosen by `tokenizer.ggml.pre`.
///
/// llama.cpp expresses each variant as a list of regexes applied in sequence, each one
/// splitting the pieces left by the previous one, and runs the common ones through
/// hand-written scanners (unicode.cpp: `unicode_regex_split_custom_gpt2`, `_llama3`,
/// `_qwen2`). slmd writes each variant as a scanner over Unicode scalars too (no regex
/// engine, no ICU), a line-by-line port of llama.cpp's, including its treatment of piece
/// boundaries: a piece is scanned as if it were the whole text, so `' ?'` and `(?!\S)` never
/// look across a split made by an earlier stage.
///
/// Adding a variant means: a case here, its names in `byName`, and a scanner in `split`.
public enum PreTokenizer: String, Sendable, CaseIterable {
    /// GPT-2's regex alone:
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    case gpt2
    /// Every number scalar (`\p{N}`) isolated first, then GPT-2's regex on what is left.
    /// Used by SmolLM and the StarCoder family.
    case smollm
    /// Llama 3's regex: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`. With it llama.cpp also sets
    /// `ignore_merges` (a word that is itself a token is not split by BPE) and adds BOS by
    /// default.
    case llama3
    /// Qwen2's regex: Llama 3's with single digits (`\p{N}` for `\p{N}{1,3}`).
    case qwen2

    /// `tokenizer.ggml.pre` values that select each variant, as llama.cpp maps them (only
    /// names whose every tokenizer flag slmd reproduces are listed).
    public static let byName: [String: PreTokenizer] = [
        "gpt-2": .gpt2, "phi-2": .gpt2, "roberta-bpe": .gpt2, "mpt": .gpt2, "olmo": .gpt2,
        "smollm": .smollm, "starcoder": .smollm, "refact": .smollm, "command-r": .smollm,
        "codeshell": .smollm,
        "llama3": .llama3, "llama-v3": .llama3, "llama-bpe": .llama3, "falcon3": .llama3,
        "falcon-h1": .llama3, "pixtral": .llama3, "midm-2.0": .llama3, "lfm2": .llama3,
        "qwen2": .qwen2, "deepseek-r1-qwen": .qwen2, "megrez": .qwen2, "stablelm2": .qwen2,
        "hunyuan": .qwen2, "solar-open": .qwen2,
    ]

    /// llama.cpp's `ignore_merges` for this variant: a pre-tokenized word whose byte-level
    /// spelling is a token becomes that token without running BPE.
    var ignoresMerges: Bool { self == .llama3 }

    /// llama.cpp's default for `add_bos` when the file has no `tokenizer.ggml.add_bos_token`.
    var addsBOSByDefault: Bool { self == .llama3 }

    /// The pieces `text` is split into before BPE (no special-token handling). For tests and
    /// diagnostics; `Tokenizer.encode` runs the same scanner without building strings.
    public func split(_ text: String) -> [String] {
        let scalars = text.unicodeScalars.map(\.value)
        let classes = scalars.map(ScalarClass.of)
        var ends: [Int] = []
        scalars.withUnsafeBufferPointer { s in
            classes.withUnsafeBufferPointer { c in split(s, c, 0, s.count, into: &ends) }
        }
        var pieces: [String] = []
        var start = 0
        for end in ends {
            var piece = String.UnicodeScalarView()
            for v in scalars[start..<end] { piece.append(Unicode.Scalar(v)!) }
            pieces.append(String(piece))
            start = end
        }
        return pieces
    }

    /// Appends to `ends` the end index (exclusive) of every piece of `scalars[lo..<hi]`.
    func split(_ scalars: UnsafeBufferPointer<UInt32>, _ classes: UnsafeBufferPointer<ScalarClass>,
               _ lo: Int, _ hi: Int, into ends: inout [Int]) {
        switch self {
        case .gpt2:
            Self.splitGPT2(scalars, classes, lo, hi, into: &ends)
        case .llama3:
            Self.splitLlama3(scalars, classes, lo, hi, maxDigits: 3, into: &ends)
        case .qwen2:
            Self.splitLlama3(scalars, classes, lo, hi, maxDigits: 1, into: &ends)
        case .smollm:
            var start = lo
            for i in lo..<hi where classes[i] == .number {
                if start < i { Self.splitGPT2(scalars, classes, start, i, into: &ends) }
                ends.append(i + 1)
                start = i + 1
            }
            if start < hi { Self.splitGPT2(scalars, classes, start, hi, into: &ends) }
        }
    }

    /// GPT-2's regex over one piece. Contractions are lower-case only, as in the original
    /// regex; the optional leading space is only U+0020.
    static func splitGPT2(_ s: UnsafeBufferPointer<UInt32>, _ c: UnsafeBufferPointer<ScalarClass>,
                          _ lo: Int, _ hi: Int, into ends: inout [Int]) {
        // Outside the piece a scalar has no class at all, which is what stops every run.
        @inline(__always) func cls(_ i: Int) -> ScalarClass { i < hi ? c[i] : .none }
        let apostrophe: UInt32 = 0x27, space: UInt32 = 0x20
        var pos = lo
        while pos < hi {
            let cp = s[pos]
            if cp == apostrophe && pos + 1 < hi {
                let n1 = s[pos + 1]
                // 's 't 'm 'd
                if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {
                    pos += 2; ends.append(pos); continue
                }
                if pos + 2 < hi {
                    let n2 = s[pos + 2]
                    // 're 've 'll
                    if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) {
                        pos += 3; ends.append(pos); continue
                    }
                }
            }
            // ` ?X+`: the class that decides is the one after an optional leading space.
            let lead = cp == space ? cls(pos + 1) : c[pos]
            switch lead {
            case .letter, .number, .other:
                if cp == space { pos += 1 }
                while pos < hi && c[pos] == lead { pos += 1 }
                ends.append(pos)
                continue
            case .whitespace, .none:
                break
            }
            var n = 0
            while cls(pos + n) == .whitespace { n += 1 }
            if n > 1 && pos + n < hi {
                // `\s+(?!\S)`: leave the last whitespace scalar to prefix the next word.
                pos += n - 1
            } else if n > 0 {
                pos += n
            } else {
                pos += 1  // unreachable for real scalars: every one has a class
            }
            ends.append(pos)
        }
    }
}

extension PreTokenizer {
    /// Llama 3's regex over one piece (Qwen2's with `maxDigits` 1), ported from llama.cpp's
    /// `unicode_regex_split_custom_llama3`: contractions in either case, an optional
    /// non-letter before letters, digit runs cut every `maxDigits`, punctuation runs taking
    /// trailing CR/LF, and whitespace runs ending at their last CR/LF.
    static func splitLlama3(_ s: UnsafeBufferPointer<UInt32>, _ c: UnsafeBufferPointer<ScalarClass>,
                            _ lo: Int, _ hi: Int, maxDigits: Int, into ends: inout [Int]) {
        @inline(__always) func cls(_ i: Int) -> ScalarClass { i < hi ? c[i] : .none }
        @inline(__always) func cpt(_ i: Int) -> UInt32 { i < hi ? s[i] : UInt32.max }
        @inline(__always) func lower(_ v: UInt32) -> UInt32 { (0x41...0x5A).contains(v) ? v | 0x20 : v }
        @inline(__always) func isCRLF(_ v: UInt32) -> Bool { v == 0x0D || v == 0x0A }
        var prevEnd = lo
        @inline(__always) func add(_ end: Int) {
            if end > prevEnd { ends.append(end) }
            prevEnd = end
        }
        var pos = lo
        while pos < hi {
            let cp = s[pos]
            let flags = c[pos]
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if cp == 0x27 && pos + 1 < hi {
                let n1 = lower(s[pos + 1])
                if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {
                    add(pos + 2); pos += 2; continue
                }
                if pos + 2 < hi {
                    let n2 = lower(s[pos + 2])
                    if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65) || (n1 == 0x6C && n2 == 0x6C) {
                        add(pos + 3); pos += 3; continue
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(isCRLF(cp) || flags == .number) {
                if flags == .letter || cls(pos + 1) == .letter {
                    pos += 1
                    while cls(pos) == .letter { pos += 1 }
                    add(pos)
                    continue
                }
            }
            // \p{N}{1,maxDigits}
            if flags == .number {
                var ini = pos
                while cls(pos) == .number {
                    pos += 1
                    if pos - ini >= maxDigits { add(pos); ini = pos }
                }
                add(pos)
                continue
            }
            // <space>?[^\s\p{L}\p{N}]+[\r\n]*
            var flags2 = cp == 0x20 ? cls(pos + 1) : flags
            if flags2 != .whitespace && flags2 != .letter && flags2 != .number && flags != .none {
                if cp == 0x20 { pos += 1 }
                while flags2 != .whitespace && flags2 != .letter && flags2 != .number && flags2 != .none {
                    pos += 1
                    flags2 = cls(pos)
                }
                while isCRLF(cpt(pos)) { pos += 1 }
                add(pos)
                continue
            }
            var n = 0
            var lastCRLFEnd = 0
            while cls(pos + n) == .whitespace {
                if isCRLF(s[pos + n]) { lastCRLFEnd = pos + n + 1 }
                n += 1
            }
            if lastCRLFEnd > 0 {  // \s*[\r\n]+
                pos = lastCRLFEnd
            } else if n > 1 && pos + n < hi {  // \s+(?!\S)
                pos += n - 1
            } else if n > 0 {  // \s+
                pos += n
            } else {
                pos += 1  // no match: the scalar alone
            }
            add(pos)
        }
    }
}

/// The one property of a scalar that GPT-2-style pre-tokenizers look at.
/// Exactly one applies to every scalar; `.none` marks "outside the piece".
enum ScalarClass: UInt8, Sendable {
    case none = 0, letter, number, whitespace, other

    private static let ascii: [ScalarClass] = (0..<128).map { classify(UInt32($0)) }

    @inline(__always)
    static func of(_ v: UInt32) -> ScalarClass {
        v < 128 ? ascii[Int(v)] : classify(v)
    }

    private static func classify(_ v: UInt32) -> ScalarClass {
        if isWhitespace(v) { return .whitespace }
        guard let scalar = Unicode.Scalar(v) else { return .other }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    /// llama.cpp's whitespace set (Unicode White_Space), spelled out so a stdlib Unicode
    /// update cannot silently change tokenization.
    static func isWhitespace(_ v: UInt32) -> Bool {
        switch v {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }
}
