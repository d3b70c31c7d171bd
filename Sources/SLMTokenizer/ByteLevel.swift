/// GPT-2's reversible byte <-> Unicode scalar mapping.
///
/// Byte-level BPE vocabularies store every token as text in which each byte of the real
/// UTF-8 is replaced by one printable scalar: printable Latin-1 bytes stand for themselves
/// and the other 68 bytes (controls, space, 0x7F-0xA0, 0xAD) are moved to U+0100 and up,
/// in byte order. That is why a leading space shows up as `Ġ` (U+0120) in the vocabulary.
enum ByteLevel {
    /// Scalar value standing for each byte.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if isSelfMapped(UInt8(b)) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// Inverse of `byteToScalar`, indexed by scalar value; -1 where no byte maps there.
    /// The highest mapped scalar is U+0143, so a small dense table suffices.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    private static func isSelfMapped(_ b: UInt8) -> Bool {
        (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
    }

    /// The vocabulary spelling of one byte.
    static func text(forByte b: UInt8) -> String {
        String(Character(Unicode.Scalar(byteToScalar[Int(b)])!))
    }

    /// Appends the UTF-8 of byte `b`'s vocabulary spelling (one or two bytes: every mapped
    /// scalar is below U+0800).
    @inline(__always)
    static func appendSpelling(of b: UInt8, to out: inout [UInt8]) {
        let v = byteToScalar[Int(b)]
        if v < 0x80 {
            out.append(UInt8(v))
        } else {
            out.append(UInt8(0xC0 | (v >> 6)))
            out.append(UInt8(0x80 | (v & 0x3F)))
        }
    }

    /// The vocabulary spelling of arbitrary bytes.
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(s)
    }

    /// Appends the bytes a byte-level token text stands for. A scalar outside the mapping
    /// (possible only in a hand-edited vocabulary) is passed through as its own UTF-8, so
    /// decoding never fails and never loses text.
    static func decode(_ text: String, into out: inout [UInt8]) {
        for s in text.unicodeScalars {
            let v = Int(s.value)
            if v < scalarToByte.count, scalarToByte[v] >= 0 {
                out.append(UInt8(scalarToByte[v]))
            } else {
                out.append(contentsOf: String(s).utf8)
            }
        }
    }
}
