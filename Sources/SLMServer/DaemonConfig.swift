import SLMEngine
import SLMKernels
import SLMModel
import SLMTokenizer

/// Everything `slmd serve` can be configured with: the file `/etc/slmd/slmd.conf`
/// (`key = value` lines, `#` comments; documented line by line in etc/slmd.conf), then
/// command-line flags on top.
public struct DaemonConfig: Sendable, Equatable {
    /// Empty: `$SLMD_MODEL`, else the cache scripts/fetch-model fills (the packaged config
    /// sets /var/lib/slmd/models/…).
    public var model = ""
    public var socket = "/run/slmd.sock"
    /// Permission bits of a socket slmd binds itself (systemd's socket unit sets its own).
    public var socketMode: UInt32 = 0o660
    /// Group (name or number) given to a socket slmd binds itself; empty keeps the default.
    public var socketGroup = ""
    /// When non-empty, only peers with one of these uids (or gids below) may talk to slmd.
    public var allowedUIDs: [UInt32] = []
    public var allowedGIDs: [UInt32] = []
    public var engine = EngineConfig()
    /// 0 means one thread per online core.
    public var threadsSetting = 0
    public var maxFrameBytes = 1 << 20
    public var maxConnections = 64
    /// Connections one peer uid may hold; past it, that uid's longest-idle one is evicted.
    public var maxConnectionsPerUID = 16
    /// Requests one connection may have in flight at once.
    public var maxInflightPerConnection = 16
    /// Bytes queued for a client that is not reading; past this the connection is closed
    /// and its requests cancelled.
    public var maxOutputBufferBytes = 4 << 20
    /// Read the whole model into memory at start (madvise WILLNEED + touch every page).
    public var prefetch = true
    /// Quantized weights used in place from the mapping, or copied into the kernels'
    /// preferred layout (decode ~1.4x faster on AVX-512; elsewhere the same as mapped).
    public var weightsLayout = WeightsLayout.repacked
    /// Directory for the repacked weights' cache file, which keeps them file-backed (empty:
    /// the copy is anonymous memory, about the model's size).
    public var repackCacheDir = ""
    /// The chat prompt format: `auto` recognises the model's `tokenizer.chat_template`;
    /// a name forces that format (for a model whose template slmd does not recognise).
    public var chatTemplate = ChatTemplate.Choice.auto
    /// Kernel path: auto (the best this CPU supports) or one by name; a path the CPU cannot
    /// run is an error at start.
    public var kernels = KernelChoice.auto
    public var warmUp = true
    public var logLevel = "info"
    public var shutdownGraceMs = 10_000
    public var statusIntervalMs = 5_000
    /// Directory of intent files (`*.json`) for `parse`; missing means no intents.
    public var intentsDir = "/etc/slmd/intents.d"
    /// Refuse to start when an intent file is invalid (otherwise it is logged and skipped).
    public var intentsStrict = false

    public init() {}

    /// Largest configuration file read (the documented one is ~8 KiB).
    public static let maxFileBytes = 256 << 10

    /// The problem with this configuration, or nil.
    public func problem() -> String? {
        if socket.isEmpty || socket.utf8.count > 107 { return "socket: a path of 1...107 bytes is required" }
        if socketMode > 0o777 { return "socket_mode: must be an octal mode like 0660" }
        if maxFrameBytes < 1024 || maxFrameBytes > 64 << 20 { return "max_frame: must be in 1K...64M" }
        if maxConnections < 1 || maxConnections > 10_000 { return "max_connections: must be in 1...10000" }
        if maxConnectionsPerUID < 1 || maxConnectionsPerUID > maxConnections {
            return "max_connections_per_uid: must be in 1...max_connections"
        }
        if maxInflightPerConnection < 1 || maxInflightPerConnection > 1024 { return "max_inflight_per_connection: must be in 1...1024" }
        if maxOutputBufferBytes < maxFrameBytes { return "max_output_buffer: must be at least max_frame" }
        if !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) {
            return "log_level: one of trace, debug, info, notice, warning, error, critical"
        }
        if shutdownGraceMs < 0 || statusIntervalMs < 100 { return "shutdown_grace_ms must be >= 0 and status_interval_ms >= 100" }
        return nil
    }

    /// Problems only the running system can show (checked at start and by --check-config).
    public func systemProblem() -> String? {
        if !socketGroup.isEmpty && UnixSocket.groupID(socketGroup) == nil {
            return "socket_group: no group '\(socketGroup)' exists on this system"
        }
        if !kernels.isSupported { return KernelChoiceError(choice: kernels).description }
        return nil
    }
}

/// A configuration file that could not be read or parsed: names the file, line and key.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension DaemonConfig {
    /// Parses `text` on top of `self`. Unknown keys are errors: a typo must not silently
    /// leave a default in place on a device nobody watches.
    public mutating func apply(configText text: String, source: String) throws(ConfigError) {
        // A key set twice is refused: which one wins would be a guess for whoever edits
        // the file next (flags and --set override the file on purpose; that is not this).
        var lineOfKey: [String: Int] = [:]
        // "\r\n" is one Character in Swift, so splitting on "\n" alone made a CRLF file one
        // line, and a first key taking any string (model = …) swallowed the rest (found by
        // make fuzz).
        for (n, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            var line = Substring(raw)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            line = trim(line)
            if line.isEmpty { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigError("\(source):\(n + 1): expected 'key = value', got '\(line)'")
            }
            let key = String(trim(line[..<eq]))
            let value = String(trim(line[line.index(after: eq)...]))
            if let first = lineOfKey[key] {
                throw ConfigError("\(source):\(n + 1): '\(key)' is already set on line \(first)")
            }
            lineOfKey[key] = n + 1
            do {
                try set(key, value)
            } catch {
                throw ConfigError("\(source):\(n + 1): \(error.description)")
            }
        }
    }

    /// Sets one key from its text form (used for the file and for `--set key=value`).
    public mutating func set(_ key: String, _ value: String) throws(ConfigError) {
        func int(_ range: ClosedRange<Int>) throws(ConfigError) -> Int {
            guard let v = Int(value), range.contains(v) else { throw ConfigError("\(key): expected an integer in \(range), got '\(value)'") }
            return v
        }
        func size() throws(ConfigError) -> Int {
            guard let v = parseSize(value) else { throw ConfigError("\(key): expected a size like 512K, 256M or 1G, got '\(value)'") }
            return v
        }
        func bool() throws(ConfigError) -> Bool {
            switch value.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: throw ConfigError("\(key): expected true or false, got '\(value)'")
            }
        }
        func ids() throws(ConfigError) -> [UInt32] {
            var out: [UInt32] = []
            for part in value.split(whereSeparator: { $0 == "," || $0 == " " }) where !part.isEmpty {
                guard let v = UInt32(part) else { throw ConfigError("\(key): expected numeric ids separated by commas, got '\(part)'") }
                out.append(v)
            }
            return out
        }
        switch key {
        case "model": model = value
        case "socket": socket = value
        case "socket_mode":
            guard let m = UInt32(value, radix: 8), m <= 0o777 else { throw ConfigError("\(key): expected an octal mode like 0660, got '\(value)'") }
            socketMode = m
        case "socket_group": socketGroup = value
        case "allowed_uids": allowedUIDs = try ids()
        case "allowed_gids": allowedGIDs = try ids()
        case "threads": threadsSetting = try int(0...256)
        case "max_sequences": engine.maxSequences = try int(1...256)
        case "max_queued": engine.maxQueued = try int(1...65536)
        case "memory_budget": engine.memoryBudgetBytes = try size()
        case "max_context": engine.maxContext = try int(16...1 << 20)
        case "max_tokens": engine.maxTokens = try int(1...1 << 20)
        case "default_deadline_ms": engine.defaultDeadlineSeconds = Double(try int(0...86_400_000)) / 1000
        case "prefill_chunk": engine.prefillChunk = try int(1...4096)
        case "prefix_cache_entries": engine.prefixCacheEntries = try int(0...4096)
        case "max_frame": maxFrameBytes = try size()
        case "max_connections": maxConnections = try int(1...10_000)
        case "max_connections_per_uid": maxConnectionsPerUID = try int(1...10_000)
        case "max_inflight_per_connection": maxInflightPerConnection = try int(1...1024)
        case "max_output_buffer": maxOutputBufferBytes = try size()
        case "prefetch": prefetch = try bool()
        case "weights_layout":
            guard let l = WeightsLayout(rawValue: value) else {
                throw ConfigError("\(key): expected one of \(WeightsLayout.allCases.map(\.rawValue).joined(separator: ", ")), got '\(value)'")
            }
            weightsLayout = l
        case "repack_cache_dir": repackCacheDir = value
        case "chat_template":
            guard let c = ChatTemplate.Choice(rawValue: value) else {
                throw ConfigError("\(key): expected one of \(ChatTemplate.Choice.allCases.map(\.rawValue).joined(separator: ", ")), got '\(value)'")
            }
            chatTemplate = c
        case "kernels":
            guard let k = KernelChoice(rawValue: value) else {
                throw ConfigError("\(key): expected one of \(KernelChoice.allCases.map(\.rawValue).joined(separator: ", ")), got '\(value)'")
            }
            kernels = k
        case "warm_up": warmUp = try bool()
        case "log_level": logLevel = value
        case "shutdown_grace_ms": shutdownGraceMs = try int(0...3_600_000)
        case "status_interval_ms": statusIntervalMs = try int(100...3_600_000)
        case "intents_dir": intentsDir = value
        case "intents_strict": intentsStrict = try bool()
        default: throw ConfigError("unknown key '\(key)'")
        }
    }
}

/// "512", "64K", "256M", "1G" (powers of 1024) → bytes.
func parseSize(_ s: String) -> Int? {
    guard let last = s.last else { return nil }
    let mult: Int
    var digits = Substring(s)
    switch last {
    case "K", "k": mult = 1 << 10; digits = digits.dropLast()
    case "M", "m": mult = 1 << 20; digits = digits.dropLast()
    case "G", "g": mult = 1 << 30; digits = digits.dropLast()
    default: mult = 1
    }
    guard let n = Int(digits), n >= 0 else { return nil }
    let (v, o) = n.multipliedReportingOverflow(by: mult)
    return o ? nil : v
}

private func trim(_ s: Substring) -> Substring {
    var s = s
    while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
    while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
    return s
}
