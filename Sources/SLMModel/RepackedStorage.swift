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
/// It is a 4096-byte header, then the data exactly as it would be laid out in memory. The
/// header names the source file (device, inode, size, mtime), the layout version and a
/// digest of the repacked tensors' shapes and offsets; any difference rebuilds the file.
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

    static let headerBytes = 4096
    /// Bump when the tile16 layout or this file format changes.
    static let formatVersion: UInt32 = 1

    /// Anonymous memory, filled by `fill`, then made read-only. It is 2 MiB aligned and
    /// advised MADV_HUGEPAGE: decode streams every weight once per token, and with 4 KiB
    /// pages that is a TLB miss every 4 KiB (transparent huge pages measured ~10% faster
    /// matmuls where the kernel grants them; without them this is plain memory).
    init(anonymous byteCount: Int, fill: (UnsafeMutableRawPointer) -> Void) {
        let huge = 2 << 20
        let length = (max(byteCount, 1) + huge - 1) / huge * huge + huge
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            fatalError("cannot map \(length) bytes for the repacked weights: \(String(cString: strerror(errno)))")
        }
        let aligned = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: p) + huge - 1) / huge * huge)!
        #if canImport(Glibc)
        _ = madvise(aligned, length - huge, MADV_HUGEPAGE)
        #endif
        self.byteCount = byteCount
        base = aligned
        cachePath = nil
        cacheHit = false
        mapping = (p, length)
        fill(base)
        _ = mprotect(p, length, PROT_READ)
    }

    /// `path` mapped read-only if its header matches `key`, else rebuilt with `fill` (written
    /// to a temporary file, synced, renamed into place) and then mapped.
    init(cacheFile path: String, byteCount: Int, source: FileIdentity, digest: UInt64,
         fill: (UnsafeMutableRawPointer) -> Void) throws(ModelError) {
        let header = Self.header(source: source, digest: digest, byteCount: byteCount)
        let length = Self.headerBytes + byteCount
        self.byteCount = byteCount
        cachePath = path
        if let m = Self.mapValid(path, header: header, length: length) {
            mapping = (m, length)
            base = m + Self.headerBytes
            cacheHit = true
            return
        }
        try Self.build(path, header: header, length: length, fill: fill)
        guard let m = Self.mapValid(path, header: header, length: length) else {
            throw ModelError("repack cache \(path): written but does not read back")
        }
        mapping = (m, length)
        base = m + Self.headerBytes
        cacheHit = false
    }

    deinit {
        if let mapping { munmap(mapping.start, mapping.length) }
    }

    /// The header's meaningful bytes (the rest of the 4096 is zero).
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

    private static func mapValid(_ path: String, header: [UInt8], length: Int) -> UnsafeMutableRawPointer? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) == length else { return nil }
        var got = [UInt8](repeating: 0, count: header.count)
        guard got.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, header.count, 0) }) == header.count, got == header else {
            return nil
        }
        guard let p = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else { return nil }
        return p
    }

    private static func build(_ path: String, header: [UInt8], length: Int,
                              fill: (UnsafeMutableRawPointer) -> Void) throws(ModelError) {
        func failure(_ what: String) -> ModelError {
            ModelError("repack cache \(path): \(what): \(String(cString: strerror(errno)))")
        }
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("cannot create \(tmp)") }
        defer { close(fd) }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        // Reserve the blocks first: running out of space while writing through a mapping
        // would be a SIGBUS, not an error.
        let rc = posix_fallocate(fd, 0, off_t(length))
        guard rc == 0 else { errno = rc; throw failure("cannot allocate \(length) bytes") }
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw failure("mmap")
        }
        fill(p + headerBytes)
        // The header last, then sync before the rename: a crash leaves no valid-looking file.
        header.withUnsafeBytes { (p + 0).copyMemory(from: $0.baseAddress!, byteCount: header.count) }
        let synced = msync(p, length, MS_SYNC) == 0
        munmap(p, length)
        guard synced else { throw failure("msync") }
        guard rename(tmp, path) == 0 else { throw failure("rename to \(path)") }
        ok = true
    }
}
