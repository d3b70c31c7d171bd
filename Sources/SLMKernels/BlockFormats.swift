/// Weight element types the kernels compute with. Raw values are ggml's type ids, so the
/// model layer can map a GGUF tensor type without this module knowing about files.
public enum WeightType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q5_0 = 6
    case q5_1 = 7
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14

    /// Elements per block: 256 for the K-quant super-blocks, 32 for the other quantized types.
    public var blockElements: Int {
        switch self {
        case .f32, .f16: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: QK
        case .q4_K, .q5_K, .q6_K: QKK
        }
    }

    /// Bytes per block. The quantized layouts are ggml's (f16 scales, little-endian):
    /// - Q4_0 (18 B): f16 d, 16 B nibbles; element j = (lo(qs[j]) - 8)·d, element j+16 = (hi(qs[j]) - 8)·d
    /// - Q4_1 (20 B): f16 d, f16 m, 16 B nibbles; element = q·d + m, same nibble order
    /// - Q5_0 (22 B): f16 d, u32 qh, 16 B nibbles; q = nibble | bit j of qh · 16; element = (q - 16)·d
    /// - Q5_1 (24 B): f16 d, f16 m, u32 qh, 16 B nibbles; element = q·d + m
    /// - Q8_0 (34 B): f16 d, 32 × int8; element = q·d
    /// - Q4_K (144 B / 256): f16 d, f16 dmin, 12 B of 6-bit scales and mins for eight 32-element
    ///   sub-blocks, 128 B nibbles; element = (d·sc)·q − dmin·mn
    /// - Q5_K (176 B / 256): Q4_K plus 32 B of high bits before the nibbles
    /// - Q6_K (210 B / 256): 128 B low nibbles, 64 B 2-bit highs, 16 int8 scales (one per 16
    ///   elements), f16 d; element = (d·sc)·(q − 32)
    /// (`KQuants` states where each element's bits are.)
    public var blockBytes: Int {
        switch self {
        case .f32: 4
        case .f16: 2
        case .q4_0: 18
        case .q4_1: 20
        case .q5_0: 22
        case .q5_1: 24
        case .q8_0: 34
        case .q4_K: 144
        case .q5_K: 176
        case .q6_K: 210
        }
    }

    /// Whether a matmul with this weight type takes int8-quantized activations.
    public var usesQuantizedActivations: Bool {
        switch self {
        case .f32, .f16: false
        default: true
        }
    }

    /// Whether the type has a `.tile16` layout (the repacked copy); the float types always
    /// compute from the row layout.
    public var hasTile16Layout: Bool {
        switch self {
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        }
    }
}

/// Elements per activation block and per weight (sub-)block: every quantized matmul works
/// in 32-element blocks of int8 activations.
public let QK = 32

/// Elements per K-quant super-block (Q4_K, Q5_K, Q6_K: eight 32-element sub-blocks).
public let QKK = 256

/// A failure to describe or use a matrix.
public struct KernelError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How a quantized matrix's bytes are arranged.
public enum WeightLayout: Sendable, Equatable {
    /// ggml's: row r at base + r·rowBytes, its blocks in order (what a GGUF file holds).
    case rows
    /// A permutation of `.rows` for the SIMD kernels (see slm_kernels.h): each whole
    /// 16-row tile keeps its bytes' place, but inside it block b of the 16 rows is stored
    /// together: their 16 f16 d (and m), for Q5 their 16 qh words with permuted bits (see
    /// `WeightMatrix.q5QhFromTile16`), then the quants with dword c of tile row i at
    /// 64·c + 4·i. The K-quants' super-blocks hold unpacked scales and Q4_1-form sub-blocks
    /// (see `WeightMatrix.copyQ45KRow`, `copyQ6KRow`). Rows past the last whole tile stay in
    /// `.rows` order.
    case tile16
}

/// A row-major weight matrix viewed in place (typically inside the model's mmap).
///
/// In `.rows` layout row `r` starts at `base + r * rowBytes` and holds `cols` elements in
/// `type`'s block layout; `.tile16` permutes those bytes (same size). Nothing is copied.
public struct WeightMatrix: @unchecked Sendable {
    // @unchecked: the pointer targets read-only mapped memory that outlives the model.
    public let base: UnsafeRawPointer
    public let type: WeightType
    public let rows: Int
    public let cols: Int
    public let rowBytes: Int
    public let layout: WeightLayout

    public init(base: UnsafeRawPointer, type: WeightType, rows: Int, cols: Int,
                layout: WeightLayout = .rows) throws(KernelError) {
        guard rows > 0, cols > 0, cols % type.blockElements == 0 else {
            throw KernelError("\(type) matrix \(rows)x\(cols): columns must be a positive multiple of \(type.blockElements)")
        }
        guard layout == .rows || type.hasTile16Layout else {
            throw KernelError("\(type) matrix: only quantized matrices have a tile16 layout")
        }
        self.base = base
        self.type = type
        self.rows = rows
        self.cols = cols
        self.rowBytes = cols / type.blockElements * type.blockBytes
        self.layout = layout
    }

    /// Bytes of the whole matrix (either layout).
    public var byteCount: Int { rows * rowBytes }

    /// Row `r`'s bytes; `.rows` layout only (see `copyRow` for either layout).
    @inlinable
    public func row(_ r: Int) -> UnsafeRawPointer {
        precondition(layout == .rows, "row(_:) of a \(layout) matrix")
        return base + r * rowBytes
    }

    /// Writes row `r` in `.rows` layout to `out` (`rowBytes` bytes), from either layout.
    /// The Swift statement of the tile16 permutation (the C repacker is tested against it).
    public func copyRow(_ r: Int, into out: UnsafeMutableRawPointer) {
        let full = rows / 16 * 16
        guard layout == .tile16, r < full else {
            out.copyMemory(from: base + r * rowBytes, byteCount: rowBytes)
            return
        }
        switch type {
        case .q4_K, .q5_K: return copyQ45KRow(r, into: out)
        case .q6_K: return copyQ6KRow(r, into: out)
        default: break
        }
        // Quants after d (Q4_0, Q8_0), d m (Q4_1), d qh (Q5_0), d m qh (Q5_1).
        let bb = type.blockBytes, i = r % 16
        let hasM = type == .q4_1 || type == .q5_1, qh = type == .q5_0 ? 2 : type == .q5_1 ? 4 : nil
        let qo = (hasM ? 4 : 2) + (qh == nil ? 0 : 4)
        let tile = base + (r / 16) * 16 * rowBytes
        for b in 0..<cols / QK {
            let blk = tile + b * 16 * bb, o = out + b * bb
            o.copyMemory(from: blk + 2 * i, byteCount: 2)
            if hasM { (o + 2).copyMemory(from: blk + 32 + 2 * i, byteCount: 2) }
            if let qh {
                let p = blk.loadUnaligned(fromByteOffset: 16 * qh + 4 * i, as: UInt32.self)
                (o + qh).storeBytes(of: Self.q5QhFromTile16(UInt32(littleEndian: p)).littleEndian, as: UInt32.self)
            }
            for q in 0..<(bb - qo) {
                o.storeBytes(of: blk.load(fromByteOffset: 16 * qo + 64 * (q / 4) + 4 * i + q % 4, as: UInt8.self),
                             toByteOffset: qo + q, as: UInt8.self)
            }
        }
    }
}

extension WeightMatrix {
    /// `copyRow` for a whole tile's row of a tile16 Q4_K or Q5_K matrix. Super-block b of the
    /// tile (16·144 bytes at 2304·b; Q5_K 16·176 at 2816·b) holds the rows' f16 d at 2·i and
    /// dmin at 32 + 2·i; for row i = 8·h + k and sub-block j, (sc & 15) | (mn & 15) << 4 at 64 + 64·h + 8·j + k and the
    /// two top bits of each, sc >> 4 | (mn >> 4) << 2, at 192 + 32·h + 8·(j % 4) + k (the high
    /// nibble for j ≥ 4); then sub-block j at 256 + 256·j in Q4_1's tile form: byte e of row i
    /// (element e in the low nibble, element 16 + e in the high) at 64·(e / 4) + 4·i + e % 4.
    /// Q5_K's sub-blocks are 320 bytes apart (at 256 + 320·j), each followed by its fifth
    /// bits, row i's as a Q5 tile16 qh word (`q5QhFromTile16`) at + 256 + 4·i. In ggml's
    /// block, sub-block j's element e is nibble j % 2 of qs[32·(j / 2) + e] (qs at 16, Q5_K:
    /// at 48), Q5_K's fifth bit bit j of qh[e] (at 16).
    func copyQ45KRow(_ r: Int, into out: UnsafeMutableRawPointer) {
        let i = r % 16, h = i / 8, k = i % 8, q5 = type == .q5_K, bb = type.blockBytes
        let tile = base + (r / 16) * 16 * rowBytes
        for b in 0..<cols / QKK {
            let blk = tile + b * 16 * bb, o = out + b * bb
            if q5 { (o + 16).initializeMemory(as: UInt8.self, repeating: 0, count: 32) }
            o.copyMemory(from: blk + 2 * i, byteCount: 2)
            (o + 2).copyMemory(from: blk + 32 + 2 * i, byteCount: 2)
            func scaleMin(_ j: Int) -> (sc: UInt8, mn: UInt8) {
                let lo = blk.load(fromByteOffset: 64 + 64 * h + 8 * j + k, as: UInt8.self)
                let hi = blk.load(fromByteOffset: 192 + 32 * h + 8 * (j % 4) + k, as: UInt8.self) >> (j < 4 ? 0 : 4)
                return (lo & 15 | (hi & 3) << 4, lo >> 4 | (hi >> 2 & 3) << 4)
            }
            // The 12 scale bytes as ggml packs them (KQuants.scaleMin reads them back).
            for j in 0..<4 {
                let a = scaleMin(j), b = scaleMin(j + 4)
                (o + 4 + j).storeBytes(of: a.sc | (b.sc >> 4) << 6, as: UInt8.self)
                (o + 8 + j).storeBytes(of: a.mn | (b.mn >> 4) << 6, as: UInt8.self)
                (o + 12 + j).storeBytes(of: b.sc & 15 | (b.mn & 15) << 4, as: UInt8.self)
            }
            for j in 0..<8 {
                let qs = o + (q5 ? 48 : 16) + 32 * (j / 2), shift: UInt8 = j % 2 == 0 ? 0 : 4
                if q5 {
                    let p = blk.loadUnaligned(fromByteOffset: 256 + 320 * j + 256 + 4 * i, as: UInt32.self)
                    let qh = Self.q5QhFromTile16(UInt32(littleEndian: p))
                    for e in 0..<32 {
                        let at = o + 16 + e
                        at.storeBytes(of: at.load(as: UInt8.self) | UInt8(truncatingIfNeeded: qh >> UInt32(e) & 1) << UInt8(j),
                                      as: UInt8.self)
                    }
                }
                func put(_ at: Int, _ nib: UInt8) {
                    let kept = j % 2 == 0 ? 0 : qs.load(fromByteOffset: at, as: UInt8.self) & 15
                    qs.storeBytes(of: kept | nib << shift, toByteOffset: at, as: UInt8.self)
                }
                for e in 0..<16 {
                    let v = blk.load(fromByteOffset: 256 + (q5 ? 320 : 256) * j + 64 * (e / 4) + 4 * i + e % 4, as: UInt8.self)
                    put(e, v & 15)
                    put(16 + e, v >> 4)
                }
            }
        }
    }

    /// `copyRow` for a whole tile's row of a tile16 Q6_K matrix. Super-block b of the tile
    /// (16·210 bytes at 3360·b) holds the rows' f16 d at 2·i, then sub-block j at 32 + 416·j:
    /// row i's int8 scales of its two halves at 2·i (+1), then at + 32 the low 4 bits of
    /// u = q + 32 in Q4_1's tile form (256 bytes, as `copyQ45KRow`), then two 64-byte planes
    /// of the top 2 bits, row i's word at 256 + 4·i (elements 4·c + k, bits 8·k + 2·c) and at
    /// 320 + 4·i (elements 16 + 4·c + k). In ggml's block (`KQuants`), sub-block j = 4·h + g's
    /// element e has its low 4 bits in nibble g / 2 of ql[64·h + 32·(g % 2) + e], its top two
    /// in bits 2·g of qh[32·h + e], and its scales at 192 + 2·j; d at 208.
    func copyQ6KRow(_ r: Int, into out: UnsafeMutableRawPointer) {
        let i = r % 16
        let tile = base + (r / 16) * 16 * rowBytes
        for b in 0..<cols / QKK {
            let blk = tile + b * 16 * 210, o = out + b * 210
            o.initializeMemory(as: UInt8.self, repeating: 0, count: 210)
            (o + 208).copyMemory(from: blk + 2 * i, byteCount: 2)
            for j in 0..<8 {
                (o + 192 + 2 * j).copyMemory(from: blk + 32 + 416 * j + 2 * i, byteCount: 2)
                let q = blk + 64 + 416 * j, h = j / 4, g = j % 4
                let planes = (q.loadUnaligned(fromByteOffset: 256 + 4 * i, as: UInt32.self),
                              q.loadUnaligned(fromByteOffset: 320 + 4 * i, as: UInt32.self))
                for e in 0..<32 {
                    let byte = q.load(fromByteOffset: 64 * (e % 16 / 4) + 4 * i + e % 4, as: UInt8.self)
                    let plane = UInt32(littleEndian: e < 16 ? planes.0 : planes.1)
                    let top = UInt8(truncatingIfNeeded: plane >> UInt32(8 * (e % 4) + 2 * (e % 16 / 4))) & 3
                    let low = e < 16 ? byte & 15 : byte >> 4
                    let ql = o + 64 * h + 32 * (g % 2) + e, qh = o + 128 + 32 * h + e
                    ql.storeBytes(of: ql.load(as: UInt8.self) | low << (g < 2 ? 0 : 4), as: UInt8.self)
                    qh.storeBytes(of: qh.load(as: UInt8.self) | top << UInt8(2 * g), as: UInt8.self)
                }
            }
        }
    }

    /// A Q5 block's qh word (bit j: bit 4 of element j) from its tile16 form, whose bit
    /// 8k + c is qh bit 4c + k and bit 8k + 4 + c is qh bit 16 + 4c + k (k, c in 0..<4): for
    /// quant dword c (bytes 4c..4c+3, whose low nibbles are elements 4c + k and high nibbles
    /// 16 + 4c + k), one shift of the word puts the fifth bits under bit 4 of each byte.
    static func q5QhFromTile16(_ p: UInt32) -> UInt32 {
        var qh: UInt32 = 0
        for c in 0..<4 {
            for k in 0..<4 {
                qh |= (p >> UInt32(8 * k + c) & 1) << UInt32(4 * c + k)
                qh |= (p >> UInt32(8 * k + 4 + c) & 1) << UInt32(16 + 4 * c + k)
            }
        }
        return qh
    }
}

@inlinable @inline(__always)
func f16(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

/// Scalar dequantization of one row, the definition every kernel is tested against.
public enum Dequantize {
    public static func row(_ w: WeightMatrix, _ r: Int, into out: UnsafeMutablePointer<Float>) {
        guard w.layout == .rows else {
            // One row back in row layout on the stack (612 B for a 576-wide Q8_0 row): the
            // token embedding is looked up one row per token, so this must not allocate.
            withUnsafeTemporaryAllocation(byteCount: w.rowBytes, alignment: 16) { buf in
                w.copyRow(r, into: buf.baseAddress!)
                // The row as a one-row `.rows` matrix (cannot fail: same type and cols).
                let one = try! WeightMatrix(base: buf.baseAddress!, type: w.type, rows: 1, cols: w.cols)
                row(one, 0, into: out)
            }
            return
        }
        let p = w.row(r)
        switch w.type {
        case .f32:
            for i in 0..<w.cols { out[i] = p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
        case .f16:
            for i in 0..<w.cols { out[i] = f16(p, 2 * i) }
        case .q8_0:
            for b in 0..<w.cols / QK {
                let blk = p + b * 34
                let d = f16(blk, 0)
                for j in 0..<QK { out[b * QK + j] = d * Float(blk.load(fromByteOffset: 2 + j, as: Int8.self)) }
            }
        case .q4_0:
            for b in 0..<w.cols / QK {
                let blk = p + b * 18
                let d = f16(blk, 0)
                for j in 0..<16 {
                    let byte = blk.load(fromByteOffset: 2 + j, as: UInt8.self)
                    out[b * QK + j] = Float(Int(byte & 0x0F) - 8) * d
                    out[b * QK + j + 16] = Float(Int(byte >> 4) - 8) * d
                }
            }
        case .q4_1:
            for b in 0..<w.cols / QK {
                let blk = p + b * 20
                let d = f16(blk, 0)
                let m = f16(blk, 2)
                for j in 0..<16 {
                    let byte = blk.load(fromByteOffset: 4 + j, as: UInt8.self)
                    out[b * QK + j] = Float(byte & 0x0F) * d + m
                    out[b * QK + j + 16] = Float(byte >> 4) * d + m
                }
            }
        case .q5_0, .q5_1, .q4_K, .q5_K, .q6_K:
            // ggml's dequantize_row_*: the float scale of a sub-block (d·sc) is formed first,
            // then times the integer quant, then the min subtracted (or added, Q5_1).
            for k in 0..<w.cols / QK {
                let s = KQuants.SubBlock(w.type, row: p, index: k)
                for j in 0..<QK {
                    let q = Float(s.quant(j))
                    switch w.type {
                    case .q5_0: out[k * QK + j] = q * s.d
                    case .q5_1: out[k * QK + j] = q * s.d + s.m
                    case .q4_K, .q5_K: out[k * QK + j] = (s.d * Float(s.scale(j))) * q - s.m * Float(s.min)
                    default: out[k * QK + j] = (s.d * Float(s.scale(j))) * q
                    }
                }
            }
        }
    }
}

/// The bit layouts of the K-quant and 5-bit types, one 32-element sub-block at a time: the
/// definition `Dequantize` and `ReferenceKernels` read and every C kernel is tested against.
/// Byte offsets are ggml's block structs (see `WeightType.blockBytes`).
public enum KQuants {
    /// Sub-block `index` (0-based over the row, 32 elements each) of a row of `type`.
    public struct SubBlock {
        @usableFromInline let type: WeightType
        /// The block holding the sub-block, and the sub-block's place in it (0..<8 for K types).
        @usableFromInline let blk: UnsafeRawPointer
        @usableFromInline let j: Int
        /// The float multiplier of `scale · quant`: the block's (super-block's) f16 d.
        public let d: Float
        /// Q5_1's m, Q4_K/Q5_K's dmin (else 0).
        public let m: Float
        /// Q4_K/Q5_K's 6-bit scale and min of this sub-block (else 1 and 0).
        public let sc: Int32
        public let min: Int32

        @inlinable
        public init(_ type: WeightType, row: UnsafeRawPointer, index k: Int) {
            let per = type.blockElements / QK
            self.type = type
            self.blk = row + (k / per) * type.blockBytes
            self.j = k % per
            switch type {
            case .q5_0:
                d = f16(blk, 0); m = 0; sc = 1; min = 0
            case .q5_1:
                d = f16(blk, 0); m = f16(blk, 2); sc = 1; min = 0
            case .q4_K, .q5_K:
                d = f16(blk, 0); m = f16(blk, 2)
                (sc, min) = KQuants.scaleMin(blk + 4, j)
            case .q6_K:
                d = f16(blk, 208); m = 0; sc = 1; min = 0
            default:
                preconditionFailure("KQuants.SubBlock of \(type)")
            }
        }

        /// The integer quant of element `e` (0..<32) as the dequantization multiplies it:
        /// Q5_0 minus 16, Q6_K minus 32, the others unsigned.
        @inlinable
        public func quant(_ e: Int) -> Int32 {
            switch type {
            case .q5_0, .q5_1:
                let o = type == .q5_0 ? 2 : 4
                let qh = blk.loadUnaligned(fromByteOffset: o, as: UInt32.self)
                let byte = blk.load(fromByteOffset: o + 4 + e % 16, as: UInt8.self)
                let nib = e < 16 ? byte & 0x0F : byte >> 4
                let q = Int32(nib) | Int32((qh >> UInt32(e)) & 1) << 4
                return type == .q5_0 ? q - 16 : q
            case .q4_K, .q5_K:
                let qs = type == .q4_K ? 16 : 48
                let byte = blk.load(fromByteOffset: qs + 32 * (j / 2) + e, as: UInt8.self)
                var q = Int32(j & 1 == 0 ? byte & 0x0F : byte >> 4)
                if type == .q5_K { q |= Int32((blk.load(fromByteOffset: 16 + e, as: UInt8.self) >> UInt8(j)) & 1) << 4 }
                return q
            default:  // Q6_K: half h = j / 4, group g = j % 4 of 32 elements inside the half
                let h = j / 4, g = j % 4
                let low = blk.load(fromByteOffset: 64 * h + 32 * (g & 1) + e, as: UInt8.self)
                let high = blk.load(fromByteOffset: 128 + 32 * h + e, as: UInt8.self)
                let q = Int32(g < 2 ? low & 0x0F : low >> 4) | Int32((high >> UInt8(2 * g)) & 3) << 4
                return q - 32
            }
        }

        /// The integer scale of element `e`: Q6_K's int8 scale of its 16 elements, the K
        /// sub-block scale, or 1.
        @inlinable
        public func scale(_ e: Int) -> Int32 {
            type == .q6_K ? Int32(blk.load(fromByteOffset: 192 + 2 * j + e / 16, as: Int8.self)) : sc
        }
    }

    /// The 6-bit scale and min of sub-block `j` (0..<8) from a Q4_K/Q5_K block's 12 packed
    /// bytes at `p`: sub-blocks 0..3 in the low 6 bits of bytes j and j+4; 4..7 in the
    /// nibbles of byte j+4 with their top two bits in the spare top bits of bytes j-4 and j.
    @inlinable
    public static func scaleMin(_ p: UnsafeRawPointer, _ j: Int) -> (Int32, Int32) {
        func b(_ i: Int) -> Int32 { Int32(p.load(fromByteOffset: i, as: UInt8.self)) }
        if j < 4 { return (b(j) & 63, b(j + 4) & 63) }
        return ((b(j + 4) & 0x0F) | (b(j - 4) >> 6) << 4, (b(j + 4) >> 4) | (b(j) >> 6) << 4)
    }
}
