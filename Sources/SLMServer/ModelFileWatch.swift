#if canImport(Glibc)
import Glibc
#endif

/// Watches the served model file with inotify, so an upgrade is noticed instead of
/// crashing the daemon later.
///
/// The weights are memory-mapped. A new model installed by rename (`mv`, `install`, what
/// package managers do) leaves the old file's pages valid, but the daemon keeps serving the
/// old model; a copy over the file in place (`cp new.gguf model.gguf`) truncates and
/// rewrites the pages under the map: computations read a mix of two models, and pages past
/// the new end raise SIGBUS. Either way the right move is to drain and restart on the new
/// file, which the daemon does when `changes()` reports something.
public final class ModelFileWatch: Sendable {
    /// What happened to the model file.
    public enum Change: Sendable, Equatable, CustomStringConvertible {
        /// Another file was renamed (or created) at the model's path.
        case replaced
        /// The mapped file itself was written to or truncated.
        case modifiedInPlace
        /// The model's path was removed or renamed away (the mapped file is still valid).
        case removed

        public var description: String {
            switch self {
            case .replaced: return "replaced by another file"
            case .modifiedInPlace: return "modified in place while mapped"
            case .removed: return "removed or renamed away"
            }
        }
    }

    /// Readable when changes are pending (poll it; it is non-blocking).
    public let fd: Int32
    public let path: String
    private let name: [UInt8]
    private let dirWatch: Int32
    private let fileWatch: Int32

    /// Starts watching `path` (and its directory, for renames onto it).
    public init?(path: String) {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        name = Array((slash.map { String(path[path.index(after: $0)...]) } ?? path).utf8)
        self.path = path
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return nil }
        dirWatch = inotify_add_watch(fd, dir.isEmpty ? "/" : dir, UInt32(IN_MOVED_TO | IN_CREATE | IN_MOVED_FROM | IN_DELETE))
        fileWatch = inotify_add_watch(fd, path, UInt32(IN_MODIFY))
        guard dirWatch >= 0 || fileWatch >= 0 else {
            close(fd)
            return nil
        }
    }

    deinit { close(fd) }

    /// The changes inotify reported since the last call (non-blocking; empty when none).
    public func changes() -> [Change] {
        var out: [Change] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            var offset = 0
            // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; }
            while offset + 16 <= n {
                let (wd, mask, len) = buffer.withUnsafeBytes { raw in
                    (raw.loadUnaligned(fromByteOffset: offset, as: Int32.self),
                     raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self),
                     Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self)))
                }
                let nameBytes = buffer[(offset + 16)..<min(n, offset + 16 + len)].prefix { $0 != 0 }
                offset += 16 + len
                if wd == fileWatch, mask & UInt32(IN_MODIFY) != 0 {
                    out.append(.modifiedInPlace)
                } else if wd == dirWatch, Array(nameBytes) == name {
                    if mask & UInt32(IN_MOVED_TO | IN_CREATE) != 0 { out.append(.replaced) }
                    if mask & UInt32(IN_MOVED_FROM | IN_DELETE) != 0 { out.append(.removed) }
                }
            }
        }
        return out
    }
}
