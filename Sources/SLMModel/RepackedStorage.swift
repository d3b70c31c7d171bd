#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GGUF

/// The memory holding repacked weight matrices: anonymous, or a cache file mapped read-only.
///
/// A cache file keeps the repacked weights file-backed like the model itself (RssFile:
/// reclaimable under pressure, shared between processes) at the cost of its disk space.
/// It is a header padded to 2 MiB (a hole), then the data exactly as laid out in memory.
/// The header names the source file (device, inode, size, mtime), the layout version and a
/// digest of the repacked tensors' shapes and offsets; any difference rebuilds the file.
///
/// Huge pages, both kinds: decode streams every weight once per token, and with 4 KiB pages
/// that is a TLB miss every 4 KiB. A single core streamed ~19 GB/s through 4 KiB pages and
/// 24–30 GB/s through 2 MiB ones here. The data starts 2 MiB aligned in memory and (for the
/// file) at a 2 MiB file offset, advised MADV_HUGEPAGE, and the file is written with large
/// write()s, so the page cache holds it in large folios the kernel can map with PMDs
/// (Linux ≥ 6.x on ext4/xfs; elsewhere it is simply 4 KiB pages).
final class RepackedStorage: @unchecked Sendable {
    // @unchecked: written once before any view of it exists, read-only afterwards.
    /// Start of the repacked data.
    let base: UnsafeMutableRawPointer
    let byteCount: Int
    /// The cache file, when the data lives in one.
    let cachePath: String?
    /// Whether the cache file was valid and reused (nothing repacked at this load).
    let cacheHit: Bool
    private let mapping: (start: UnsafeMutableRawPointer, length: Int)?

    static let huge = 2 << 20
    /// Where the data starts in a cache file (the header, then a hole).
    static let headerBytes = huge
    /// Bump when the tile16 layout or this file format changes.
    /// 3: Q5_0 and Q5_1 matrices are repacked too.
    static let formatVersion: UInt32 = 3

    /// A byte range of the repacked data and what fills it. A cache file is written piece by
    /// piece through one buffer the size of the largest piece, so building it needs that much
    /// extra memory, not a second copy of the weights (a 1B-class model's repacked weights
    /// are ~0.6 GB: as one anonymous buffer they were the first start's peak, on boards of
    /// 0.5-2 GB).
    struct Piece {
        let offset: Int
        let byteCount: Int
        /// Writes the piece's bytes at its argument (`byteCount` bytes).
        let fill: (UnsafeMutableRawPointer) -> Void
    }

    /// Anonymous memory holding `pieces`, then made read-only.
    convenience init(anonymous byteCount: Int, pieces: [Piece]) {
        self.init(anonymous: byteCount) { base in for p in pieces { p.fill(base + p.offset) } }
    }

    /// Anonymous memory, filled by `fill`, then made read-only.
    init(anonymous byteCount: Int, fill: (UnsafeMutableRawPointer) -> Void) {
        let (p, length, aligned) = Self.reserve(byteCount, prot: PROT_READ | PROT_WRITE)
        Self.adviseHuge(aligned, byteCount)
        self.byteCount = byteCount
        base = aligned
        cachePath = nil
        cacheHit = false
        mapping = (p, length)
        fill(base)
        _ = mprotect(p, length, PROT_READ)
    }

    /// An anonymous region with a 2 MiB aligned start inside it for `byteCount` bytes.
    private static func reserve(_ byteCount: Int, prot: Int32) -> (UnsafeMutableRawPointer, Int, UnsafeMutableRawPointer) {
        let length = (max(byteCount, 1) + huge - 1) / huge * huge + huge
        guard let p = mmap(nil, length, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("cannot map \(length) bytes for the repacked weights: \(String(cString: strerror(errno)))")
        }
        return (p, length, UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: p) + huge - 1) / huge * huge)!)
    }

    private static func adviseHuge(_ p: UnsafeMutableRawPointer, _ byteCount: Int) {
        #if canImport(Glibc)
        _ = madvise(p, (byteCount + huge - 1) / huge * huge, MADV_HUGEPAGE)
        #endif
    }

    /// `path` mapped read-only if its header matches `key`, else rebuilt from `pieces` (written
    /// to a temporary file, synced, renamed into place) and then mapped.
    init(cacheFile path: String, byteCount: Int, source: FileIdentity, digest: UInt64,
         pieces: [Piece]) throws(ModelError) {
        let header = Self.header(source: source, digest: digest, byteCount: byteCount)
        let length = Self.headerBytes + byteCount
        self.byteCount = byteCount
        cachePath = path
        if let m = Self.mapValid(path, header: header, length: length) {
            mapping = m
            base = m.start + Self.headerBytes
            cacheHit = true
            return
        }
        try Self.build(path, header: header, byteCount: byteCount, pieces: pieces)
        guard let m = Self.mapValid(path, header: header, length: length) else {
            throw ModelError("repack cache \(path): written but does not read back")
        }
        mapping = m
        base = m.start + Self.headerBytes
        cacheHit = false
    }

    deinit {
        if let mapping { munmap(mapping.start, mapping.length) }
    }

    /// The header's meaningful bytes (the rest of the first 2 MiB is a hole).
    static func header(source: FileIdentity, digest: UInt64, byteCount: Int) -> [UInt8] {
        var h: [UInt8] = Array("SLMDTL16".utf8)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { h.append(contentsOf: $0) } }
        put(formatVersion); put(UInt32(0))
        put(source.device); put(source.inode); put(source.size); put(source.mtimeNanoseconds)
        put(UInt64(byteCount)); put(digest)
        return h
    }

    /// FNV-1a over 64-bit words: enough to tell tensor tables apart, not a security check
    /// (the cache directory is the daemon's own).
    static func digest(_ words: [Int]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for w in words {
            withUnsafeBytes(of: UInt64(bitPattern: Int64(w)).littleEndian) { for b in $0 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 } }
        }
        return h
    }

    /// The whole file mapped read-only at a 2 MiB aligned address (so the data, at a 2 MiB
    /// offset, is 2 MiB aligned too), if its size and header are the expected ones.
    private static func mapValid(_ path: String, header: [UInt8], length: Int)
        -> (start: UnsafeMutableRawPointer, length: Int)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) == length else { return nil }
        var got = [UInt8](repeating: 0, count: header.count)
        guard got.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, header.count, 0) }) == header.count, got == header else {
            return nil
        }
        // Reserve an aligned range, map the file over its aligned start, release the rest.
        let (r, reserved, aligned) = reserve(length, prot: PROT_NONE)
        guard let p = mmap(aligned, length, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0), p != MAP_FAILED else {
            munmap(r, reserved)
            return nil
        }
        if aligned > r { munmap(r, aligned - r) }
        let mappedEnd = (Int(bitPattern: aligned) + length + 4095) / 4096 * 4096, reservedEnd = Int(bitPattern: r) + reserved
        if mappedEnd < reservedEnd { munmap(UnsafeMutableRawPointer(bitPattern: mappedEnd)!, reservedEnd - mappedEnd) }
        adviseHuge(p + headerBytes, length - headerBytes)
        return (p, length)
    }

    private static func build(_ path: String, header: [UInt8], byteCount: Int, pieces: [Piece]) throws(ModelError) {
        func failure(_ what: String) -> ModelError {
            ModelError("repack cache \(path): \(what): \(String(cString: strerror(errno)))")
        }
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("cannot create \(tmp)") }
        defer { close(fd) }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        // Reserve the data blocks first, so a full disk is an error here, not a short file.
        let rc = posix_fallocate(fd, off_t(headerBytes), off_t(byteCount))
        guard rc == 0 else { errno = rc; throw failure("cannot allocate \(byteCount) bytes") }
        // Repack piece by piece into a staging buffer and write it in whole 2 MiB units at
        // 2 MiB offsets, in file order: page cache filled that way is held in large folios
        // (see the type's comment). Written piece by piece at the pieces' own offsets, only
        // 344 of a 1B model's 617 MB were PMD-mapped afterwards, against 608 MB this way.
        // Pieces are in offset order; the gaps between them are zeros.
        let unit = 8 << 20, maxPiece = pieces.map(\.byteCount).max() ?? 0
        let capacity = unit + maxPiece + 64
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        defer { buffer.deallocate() }
        var start = 0, filled = 0  // the buffer holds data bytes [start, start + filled)
        func write(_ count: Int) throws(ModelError) {
            var done = 0
            while done < count {
                let n = pwrite(fd, buffer + done, count - done, off_t(headerBytes + start + done))
                guard n > 0 else { throw failure("write") }
                done += n
            }
        }
        for piece in pieces {
            let at = piece.offset - start
            precondition(at >= filled && at + piece.byteCount <= capacity, "repack pieces out of order")
            buffer.advanced(by: filled).initializeMemory(as: UInt8.self, repeating: 0, count: at - filled)
            piece.fill(buffer + at)
            filled = at + piece.byteCount
            if filled >= unit {
                let n = filled / huge * huge
                try write(n)
                buffer.copyMemory(from: buffer + n, byteCount: filled - n)
                start += n
                filled -= n
            }
        }
        try write(filled)
        // The header last, then sync before the rename: a crash leaves no valid-looking file.
        guard header.withUnsafeBytes({ pwrite(fd, $0.baseAddress, header.count, 0) }) == header.count else {
            throw failure("write header")
        }
        guard fdatasync(fd) == 0 else { throw failure("fdatasync") }
        guard rename(tmp, path) == 0 else { throw failure("rename to \(path)") }
        ok = true
    }
}
