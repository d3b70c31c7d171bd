#if canImport(Glibc)
import Glibc
#endif

/// Why a configuration or intent file could not be read.
public struct FileReadError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}

/// Reads a regular file of at most `maxBytes` bytes.
///
/// Config and intent files are untrusted: a FIFO or a device dropped into `intents_dir`
/// would block a plain read forever (on the signal thread, at SIGHUP), and a huge file would
/// be read whole before any size check. So the file is opened non-blocking, must be a
/// regular file, and its size is checked from `fstat` before a byte is read; the read
/// itself stops at `maxBytes + 1` in case the file grows meanwhile.
public func readBoundedRegularFile(_ path: String, maxBytes: Int) throws(FileReadError) -> [UInt8] {
    func fail(_ m: String) -> FileReadError { FileReadError(path: path, message: m) }
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw fail("cannot stat: \(String(cString: strerror(errno)))") }
    guard st.st_mode & S_IFMT == S_IFREG else { throw fail("not a regular file") }
    guard st.st_size <= maxBytes else { throw fail("\(st.st_size) bytes; at most \(maxBytes) are read") }
    var bytes = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
    var filled = 0
    while filled < bytes.count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw fail("read failed: \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        filled += n
    }
    guard filled <= maxBytes else { throw fail("grew past \(maxBytes) bytes while being read") }
    return Array(bytes[0..<filled])
}
