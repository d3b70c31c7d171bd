import Glibc
import Logging

/// A swift-log backend writing one line per entry to stderr, for running outside systemd:
///
///     2025-05-01T12:00:00.123Z info slmd.server: listening path=/run/slmd.sock
///
/// UTC timestamp, level, label, message, then metadata as `key=value` sorted by key. Newlines in
/// the message or values are escaped so an entry stays one line; values with spaces, quotes or
/// `=` are quoted. Each line is a single write(2). Like the journal handler it logs what it is given.
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public let label: String

    public init(label: String, logLevel: Logger.Level = .info, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = logLevel
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = mergedMetadata(handler: metadata, provider: metadataProvider, event: event.metadata)
        Self.write(Self.format(level: event.level, label: label, message: event.message.description,
                               metadata: merged, timestamp: Self.timestamp()))
    }

    /// The line without its trailing newline. `timestamp` nil leaves it out (tests).
    static func format(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata,
                       timestamp: String? = nil) -> String {
        var line = ""
        if let timestamp { line += timestamp + " " }
        line += "\(level) \(label): " + escape(message)
        for key in metadata.keys.sorted() {
            line += " " + escape(key) + "=" + quoteIfNeeded(escape(metadata[key]!.description))
        }
        return line
    }

    static func escape(_ s: String) -> String {
        guard s.contains(where: { $0 == "\\" || $0.isNewline }) else { return s }
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\r\n": out += "\\r\\n"
            default: out.append(c.isNewline ? " " : c)
            }
        }
        return out
    }

    static func quoteIfNeeded(_ s: String) -> String {
        guard s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\t" }) else { return s }
        return "\"" + s.replacingQuotes() + "\""
    }

    /// `2025-05-01T12:00:00.123Z`.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }

    /// One write(2) of line + "\n" (retried on partial writes and EINTR).
    static func write(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(0x0A)
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(STDERR_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
    }
}

private extension String {
    func replacingQuotes() -> String {
        var out = ""
        for c in self { if c == "\"" { out += "\\\"" } else { out.append(c) } }
        return out
    }
}
