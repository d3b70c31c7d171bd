// Shared by every libFuzzer harness in Fuzz/Harnesses (compiled into each one by scripts/fuzz).
#if canImport(Glibc)
import Glibc
#endif

/// SplitMix64: a tiny deterministic generator. Harnesses seed it from the input bytes, so a
/// saved crash input replays exactly the same chunking / random walk.
struct FuzzRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    init(hashing bytes: some Sequence<UInt8>, salt: UInt64 = 0) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ salt
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        state = h
    }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    /// Uniform in 0..<n (n > 0).
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// True with probability num/den.
    mutating func chance(_ num: Int, in den: Int) -> Bool { below(den) < num }
}

/// An invariant of the code under test does not hold: print what and where, then abort so
/// libFuzzer records the input as a crash (deadly signal).
func fuzzFail(_ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    fputs("FUZZ INVARIANT VIOLATED at \(file):\(line): \(message())\n", stderr)
    abort()
}

@inline(__always)
func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    if !condition { fuzzFail(message(), file: file, line: line) }
}

/// Printable form of bytes for invariant messages (truncated).
func fuzzShow(_ bytes: some Collection<UInt8>, limit: Int = 400) -> String {
    var s = ""
    for b in bytes.prefix(limit) {
        if b >= 0x20 && b < 0x7F && b != UInt8(ascii: "\\") { s.unicodeScalars.append(Unicode.Scalar(b)) }
        else { s += "\\x" + String(b, radix: 16) }
    }
    if bytes.count > limit { s += "…(\(bytes.count) bytes)" }
    return s
}

/// A private scratch directory for harnesses that need files, made once per process under
/// $SLMD_FUZZ_SCRATCH (scripts/fuzz points it into .build-fuzz/) or /tmp, removed at exit.
let fuzzScratchDir: String = {
    let parent = getenv("SLMD_FUZZ_SCRATCH").map { String(cString: $0) } ?? "/tmp"
    var template = Array("\(parent)/slmd-fuzz-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { fuzzFail("mkdtemp in \(parent) failed: errno \(errno)") }
    fuzzScratchDirForCleanup = String(cString: p)
    atexit { fuzzRemoveTree(fuzzScratchDirForCleanup) }
    return fuzzScratchDirForCleanup
}()
nonisolated(unsafe) var fuzzScratchDirForCleanup = ""

/// Removes the files of `dir` (one level) and then `dir`.
@discardableResult
func fuzzRemoveTree(_ dir: String) -> Bool {
    guard !dir.isEmpty, let d = opendir(dir) else { return false }
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name == "." || name == ".." { continue }
        unlink(dir + "/" + name)
    }
    closedir(d)
    return rmdir(dir) == 0
}

/// Writes `bytes` to `path` (truncating); aborts on I/O failure, which is not the input's fault.
func fuzzWriteFile(_ path: String, _ bytes: some Collection<UInt8>) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { fuzzFail("open \(path) failed: errno \(errno)") }
    defer { close(fd) }
    let a = Array(bytes)
    var off = 0
    while off < a.count {
        let n = a.withUnsafeBytes { write(fd, $0.baseAddress! + off, a.count - off) }
        guard n > 0 else { fuzzFail("write \(path) failed: errno \(errno)") }
        off += n
    }
}
