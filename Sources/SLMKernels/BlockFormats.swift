/// Weight element types the kernels compute with. Raw values are ggml's type ids, so the
/// model layer can map a GGUF tensor type without this module knowing about files.
public enum WeightType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q8_0 = 8

    /// Elements per block.
    public var blockElements: Int {
        switch self {
        case .f32, .f16: 1
        case .q4_0, .q4_1, .q8_0: QK
        }
    }

    /// Bytes per block. The quantized layouts are ggml's:
    /// - Q4_0 (18 B): f16 d, 16 B nibbles; element j = (lo(qs[j]) - 8)·d, element j+16 = (hi(qs[j]) - 8)·d
    /// - Q4_1 (20 B): f16 d, f16 m, 16 B nibbles; element = q·d + m, same nibble order
    /// - Q8_0 (34 B): f16 d, 32 × int8; element = q·d
    public var blockBytes: Int {
        switch self {
        case .f32: 4
        case .f16: 2
        case .q4_0: 18
        case .q4_1: 20
        case .q8_0: 34
        }
    }

    /// Whether a matmul with this weight type takes int8-quantized activations.
    public var usesQuantizedActivations: Bool {
        switch self {
        case .q4_0, .q4_1, .q8_0: true
        case .f32, .f16: false
        }
    }

    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q8_0: "Q8_0"
        }
    }
}

/// Elements per quantization block (all supported quantized formats use 32).
public let QK = 32

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
    /// together: their 16 f16 d (and m), then the quants with dword c of tile row i at
    /// 64·c + 4·i. Rows past the last whole tile stay in `.rows` order.
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
        guard layout == .rows || type.usesQuantizedActivations else {
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
        let bb = type.blockBytes, qo = type == .q4_1 ? 4 : 2, i = r % 16
        let tile = base + (r / 16) * 16 * rowBytes
        for b in 0..<cols / QK {
            let blk = tile + b * 16 * bb, o = out + b * bb
            o.copyMemory(from: blk + 2 * i, byteCount: 2)
            if type == .q4_1 { (o + 2).copyMemory(from: blk + 32 + 2 * i, byteCount: 2) }
            for q in 0..<(bb - qo) {
                o.storeBytes(of: blk.load(fromByteOffset: 16 * qo + 64 * (q / 4) + 4 * i + q % 4, as: UInt8.self),
                             toByteOffset: qo + q, as: UInt8.self)
            }
        }
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
        }
    }
}
