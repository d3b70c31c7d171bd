#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which file, and which version of it (see `GGUFFile.identity`).
public struct FileIdentity: Sendable, Equatable {
    public let device: UInt64
    public let inode: UInt64
    public let size: UInt64
    public let mtimeNanoseconds: Int64
}

/// A GGUF file mapped read-only and validated.
///
/// The mapping is `PROT_READ, MAP_SHARED`: tensor bytes are never copied, so the weights
/// stay file-backed (they count as RssFile, can be dropped and re-read by the kernel under
/// memory pressure, and are shared between processes mapping the same model).
public final class GGUFFile: @unchecked Sendable {
    // Immutable after init; the mapping is read-only, so sharing across threads is safe.
    public let path: String
    public let size: Int
    public let header: GGUFHeader
    /// Device, inode, size and modification time of the file when it was mapped: what a
    /// cache derived from it (the repacked weights) is keyed on.
    public let identity: FileIdentity
    private let base: UnsafeRawPointer
    private let byName: [String: Int]
    private let metaIndex: [String: Int]

    /// Maps and parses `path`. Throws a `GGUFError` naming the field and offset on any defect.
    public init(path: String) throws(GGUFError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw GGUFError(.io, field: path, offset: -1, "open failed: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw GGUFError(.io, field: path, offset: -1, "fstat failed: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw GGUFError(.io, field: path, offset: -1, "not a regular file")
        }
        let size = Int(st.st_size)
        guard size >= 8 else {
            throw GGUFError(.truncated, field: "header", offset: 0, "file is \(size) bytes; a GGUF header needs at least 24")
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw GGUFError(.io, field: path, offset: -1, "mmap of \(size) bytes failed: \(String(cString: strerror(errno)))")
        }
        let base = UnsafeRawPointer(p)
        let header: GGUFHeader
        do {
            header = try GGUFParser.parse(base: base, size: size)
        } catch {
            munmap(p, size)
            throw error
        }
        self.size = size
        self.identity = FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: UInt64(size),
                                     mtimeNanoseconds: Self.mtimeNanoseconds(st))
        self.base = base
        self.header = header
        var byName: [String: Int] = [:]
        for (i, t) in header.tensors.enumerated() { byName[t.name] = i }
        self.byName = byName
        var metaIndex: [String: Int] = [:]
        for (i, kv) in header.metadata.enumerated() { metaIndex[kv.key] = i }
        self.metaIndex = metaIndex
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), size)
    }

    private static func mtimeNanoseconds(_ st: stat) -> Int64 {
        #if canImport(Darwin)
        Int64(st.st_mtimespec.tv_sec) * 1_000_000_000 + Int64(st.st_mtimespec.tv_nsec)
        #else
        Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        #endif
    }

    public var version: UInt32 { header.version }
    public var tensors: [GGUFTensor] { header.tensors }

    public func tensor(named name: String) -> GGUFTensor? {
        byName[name].map { header.tensors[$0] }
    }

    public subscript(key: String) -> GGUFValue? {
        metaIndex[key].map { header.metadata[$0].value }
    }

    // Typed accessors: a missing key or a wrong type is an error that names the key.

    public func int(_ key: String) throws(GGUFError) -> Int {
        guard let v = self[key] else { throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "key is absent") }
        guard let i = v.intValue else { throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "expected an integer, found \(v.type)") }
        return i
    }

    public func float(_ key: String) throws(GGUFError) -> Float {
        guard let v = self[key] else { throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "key is absent") }
        guard let f = v.floatValue else { throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "expected a number, found \(v.type)") }
        return f
    }

    public func string(_ key: String) throws(GGUFError) -> String {
        guard let v = self[key] else { throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "key is absent") }
        guard let s = v.stringValue else { throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "expected a string, found \(v.type)") }
        return s
    }

    public func stringArray(_ key: String) throws(GGUFError) -> [String] {
        guard let v = self[key] else { throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "key is absent") }
        guard case .array(.string, let items) = v else {
            throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "expected an array of strings")
        }
        return items.map { $0.stringValue! }
    }

    public func intArray(_ key: String) throws(GGUFError) -> [Int] {
        guard let v = self[key] else { throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "key is absent") }
        guard case .array(_, let items) = v else {
            throw GGUFError(.missing, field: "metadata '\(key)'", offset: -1, "expected an array of integers")
        }
        var out: [Int] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard let n = item.intValue else {
                throw GGUFError(.missing, field: "metadata '\(key)'[\(i)]", offset: -1, "expected an integer, found \(item.type)")
            }
            out.append(n)
        }
        return out
    }

    /// Asks the kernel to read the whole file ahead (a daemon does this at start so the
    /// first request does not pay the page faults).
    public func adviseWillNeed() {
        _ = madvise(UnsafeMutableRawPointer(mutating: base), size, MADV_WILLNEED)
    }

    /// Drops this process's mapping of the whole pages inside `[p, p + byteCount)` (a range
    /// of the file), so bytes copied elsewhere are not counted twice in RSS. The pages stay
    /// in the page cache and are read back if touched again (the mapping is shared and
    /// read-only, so MADV_DONTNEED loses nothing).
    public func dropPages(_ p: UnsafeRawPointer, byteCount: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (Int(bitPattern: p) + page - 1) / page * page, hi = (Int(bitPattern: p) + byteCount) / page * page
        guard hi > lo, Int(bitPattern: base) <= lo, hi <= Int(bitPattern: base) + size else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: lo), hi - lo, MADV_DONTNEED)
    }

    /// Touches one byte per page of `[p, p + byteCount)` so it is resident; returns a checksum.
    @discardableResult
    public func touchPages(_ p: UnsafeRawPointer, byteCount: Int) -> UInt8 {
        var acc: UInt8 = 0
        var o = 0
        while o < byteCount {
            acc ^= p.load(fromByteOffset: o, as: UInt8.self)
            o += 4096
        }
        if byteCount > 0 { acc ^= p.load(fromByteOffset: byteCount - 1, as: UInt8.self) }
        return acc
    }

    /// Touches one byte per page so all weights are resident; returns a checksum so the
    /// loop cannot be optimised away.
    @discardableResult
    public func touchAllPages() -> UInt8 {
        var acc: UInt8 = 0
        let page = 4096
        var o = 0
        while o < size {
            acc ^= base.load(fromByteOffset: o, as: UInt8.self)
            o += page
        }
        return acc
    }
}
