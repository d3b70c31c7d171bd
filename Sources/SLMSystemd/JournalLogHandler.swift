import CSystemd
import Glibc
import Logging

/// A swift-log backend that writes structured entries to journald with `sd_journal_sendv(3)`.
///
/// Each entry carries `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, `LOGGER` (the logger label),
/// `CODE_FILE`/`CODE_LINE`/`CODE_FUNC`, and one field per metadata key (see `fieldName(forMetadataKey:)`),
/// so `journalctl -u slmd REQUEST_ID=42` works.
///
/// Handlers log exactly what they are given. Keeping prompt and completion text out of
/// `info` and above is the daemon's promise, kept at the call sites, not here.
///
/// If journald refuses an entry (no socket, entry too large) the line goes to stderr instead.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public let label: String
    public let identifier: String

    public init(label: String, logLevel: Logger.Level = .info, identifier: String = "slmd",
                metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = logLevel
        self.identifier = identifier
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = mergedMetadata(handler: metadata, provider: metadataProvider, event: event.metadata)
        let fields = Self.fields(level: event.level, message: event.message.description, metadata: merged,
                                 label: label, identifier: identifier,
                                 file: event.file, function: event.function, line: event.line)
        let rc = Self.send(fields)
        if rc < 0 {
            StderrLogHandler.write(StderrLogHandler.format(level: event.level, label: label,
                                                           message: event.message.description, metadata: merged))
        }
    }

    // MARK: - Entry construction (internal for tests)

    /// Fields this handler sets itself; a metadata key mapping onto one of them is prefixed
    /// so it cannot masquerade as, or duplicate, the real one.
    static let ownFields: Set<String> = [
        "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "LOGGER", "CODE_FILE", "CODE_LINE", "CODE_FUNC",
    ]

    /// Prefix for metadata keys that would not be a valid journal field name on their own.
    static let metadataPrefix = "META_"

    /// journald accepts at most 64 characters per field name.
    static let maxFieldNameLength = 64

    /// Maps a swift-log metadata key to a journal field name: ASCII letters upper-cased, digits
    /// kept, everything else `_` (`request.id` → `REQUEST_ID`). Names journald would reject or
    /// treat specially — empty, starting with `_` (trusted fields) or a digit — and names of
    /// the handler's own fields get `META_` in front (`_x` → `META__X`, `message` → `META_MESSAGE`).
    /// The result is cut to 64 characters.
    static func fieldName(forMetadataKey key: String) -> String {
        var name = String(String.UnicodeScalarView(key.unicodeScalars.map { s -> Unicode.Scalar in
            switch s.value {
            case 0x61...0x7A: Unicode.Scalar(s.value - 0x20)!  // a-z
            case 0x41...0x5A, 0x30...0x39: s                    // A-Z, 0-9
            default: "_"
            }
        }))
        let first = name.unicodeScalars.first
        if name.isEmpty || first == "_" || ("0"..."9").contains(first!) || ownFields.contains(name) {
            name = metadataPrefix + name
        }
        return String(name.prefix(maxFieldNameLength))
    }

    /// syslog priorities: trace and debug → 7, info → 6, notice → 5, warning → 4, error → 3, critical → 2.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// The `KEY=value` fields of one entry, in a fixed order: own fields, then metadata
    /// sorted by field name. Values may contain newlines (sendv sends them length-prefixed).
    static func fields(level: Logger.Level, message: String, metadata: Logger.Metadata,
                       label: String, identifier: String,
                       file: String, function: String, line: UInt) -> [String] {
        var out = [
            "MESSAGE=" + message,
            "PRIORITY=\(priority(level))",
            "SYSLOG_IDENTIFIER=" + identifier,
            "LOGGER=" + label,
            "CODE_FILE=" + file,
            "CODE_LINE=\(line)",
            "CODE_FUNC=" + function,
        ]
        let mapped = metadata.map { (fieldName(forMetadataKey: $0.key), $0.key, $0.value.description) }
        for (name, _, value) in mapped.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) {
            out.append(name + "=" + value)
        }
        return out
    }

    /// Sends the fields as one entry: one contiguous buffer, one iovec per field.
    /// Returns sd_journal_sendv's result (0, or -errno). With no journald it returns 0.
    static func send(_ fields: [String]) -> Int32 {
        var bytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(fields.count)
        for field in fields {
            let start = bytes.count
            bytes.append(contentsOf: field.utf8)
            ranges.append(start..<bytes.count)
        }
        return bytes.withUnsafeMutableBytes { buffer -> Int32 in
            let base = buffer.baseAddress!
            var iov = ranges.map { iovec(iov_base: base + $0.lowerBound, iov_len: $0.count) }
            return iov.withUnsafeMutableBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        }
    }
}

/// handler metadata < provider metadata < per-call metadata.
func mergedMetadata(handler: Logger.Metadata, provider: Logger.MetadataProvider?,
                    event: Logger.Metadata?) -> Logger.Metadata {
    var merged = handler
    if let provided = provider?.get(), !provided.isEmpty {
        merged.merge(provided) { _, new in new }
    }
    if let event, !event.isEmpty {
        merged.merge(event) { _, new in new }
    }
    return merged
}
