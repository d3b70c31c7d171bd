// Unbuffered output: every write goes straight to the descriptor, so streamed tokens appear
// as they arrive ("flush per event") and nothing is lost on exit(3)/_exit(2).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SLMProtocol

enum Output {
    static var stdoutIsTTY: Bool { isatty(1) == 1 }
    static var stdinIsTTY: Bool { isatty(0) == 1 }

    /// Writes to stdout. A closed pipe (`slmctl complete ... | head -1`) ends the process
    /// quietly with status 0 rather than an error.
    static func out(_ text: String) {
        if !writeAll(1, Array(text.utf8)) { exit(ExitStatus.ok) }
    }

    /// Writes a line to stderr.
    static func err(_ text: String) {
        _ = writeAll(2, Array((text + "\n").utf8))
    }

    /// One JSON object on one line of stdout.
    static func jsonLine(_ value: JSONValue) {
        var bytes = value.serialized()
        bytes.append(0x0A)
        if !writeAll(1, bytes) { exit(ExitStatus.ok) }
    }

    /// One JSON line from a payload the protocol layer already serialised.
    static func jsonLine(payload: [UInt8]) {
        var bytes = payload
        bytes.append(0x0A)
        if !writeAll(1, bytes) { exit(ExitStatus.ok) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }
}

/// Reads all of stdin as UTF-8 (invalid sequences repaired).
func readAllStdin() -> String {
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        data.append(contentsOf: buffer[0..<n])
    }
    return String(decoding: data, as: UTF8.self)
}

/// `12.3`, `0.25`: a number with at most `digits` fraction digits, no exponent for the
/// magnitudes slmctl prints.
func fmt(_ x: Double, _ digits: Int = 1) -> String {
    guard x.isFinite else { return x.isNaN ? "NaN" : (x > 0 ? "+Inf" : "-Inf") }
    guard abs(x) < 1e15 else { return x.description }
    var scale: Int64 = 1
    for _ in 0..<digits { scale *= 10 }
    let scaled = Int64((abs(x) * Double(scale)).rounded())
    let sign = x < 0 && scaled != 0 ? "-" : ""
    guard digits > 0 else { return sign + String(scaled) }
    var frac = String(scaled % scale)
    while frac.count < digits { frac = "0" + frac }
    return "\(sign)\(scaled / scale).\(frac)"
}

/// `1.2 GiB`, `340.0 MiB`.
func formatBytes(_ bytes: Double) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = bytes
    var u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(Int64(v)) B" : "\(fmt(v, 1)) \(units[u])"
}

/// `134.5M`, `1.5B`, `800`: a count (parameters) in decimal units, as model names give them.
func formatCount(_ n: Double) -> String {
    let units: [(Double, String)] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")]
    for (size, suffix) in units where abs(n) >= size { return fmt(n / size, 1) + suffix }
    return fmt(n, 0)
}

/// `3d 4h 5m 6s`, `42s`.
func formatDuration(seconds: Double) -> String {
    var s = Int64(max(0, seconds))
    let d = s / 86400; s %= 86400
    let h = s / 3600; s %= 3600
    let m = s / 60; s %= 60
    var parts: [String] = []
    if d > 0 { parts.append("\(d)d") }
    if h > 0 { parts.append("\(h)h") }
    if m > 0 { parts.append("\(m)min") }
    parts.append("\(s)s")
    return parts.joined(separator: " ")
}
