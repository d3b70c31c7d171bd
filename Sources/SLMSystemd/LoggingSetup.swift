import Glibc
import Logging

/// Chooses and installs the process-wide swift-log backend.
///
/// The rule, first match wins:
/// 1. `JOURNAL_STREAM` is set and equals `<st_dev>:<st_ino>` of fd 2: systemd connected our
///    stderr to journald (systemd.exec(5) documents this check) → journald.
/// 2. `INVOCATION_ID` is set (we are a systemd unit; stderr may have been redirected with
///    `StandardError=`) and `/run/systemd/journal/socket` exists → journald.
/// 3. Otherwise (terminal, tests, containers without journald) → stderr lines.
///
/// A `JOURNAL_STREAM` inherited by a child whose stderr was redirected does not match, so
/// `slmd serve 2>log` started from a unit's shell still writes to the file.
public enum LoggingSetup {
    public enum Backend: String, Sendable, Equatable {
        case journal
        case stderr
    }

    /// Where the journald native protocol socket lives.
    public static let journalSocketPath = "/run/systemd/journal/socket"

    /// Applies the rule above to the real environment, stderr and filesystem.
    public static func detectBackend() -> Backend {
        var st = stat()
        let stderrIdentity: (dev: UInt64, ino: UInt64)? =
            fstat(STDERR_FILENO, &st) == 0 ? (UInt64(st.st_dev), UInt64(st.st_ino)) : nil
        return chooseBackend(journalStream: env("JOURNAL_STREAM"),
                             invocationID: env("INVOCATION_ID"),
                             stderrIdentity: stderrIdentity,
                             journalSocketExists: access(journalSocketPath, F_OK) == 0)
    }

    /// The rule as a pure function (for tests).
    static func chooseBackend(journalStream: String?, invocationID: String?,
                              stderrIdentity: (dev: UInt64, ino: UInt64)?,
                              journalSocketExists: Bool) -> Backend {
        if let journalStream, let id = stderrIdentity, journalStream == "\(id.dev):\(id.ino)" {
            return .journal
        }
        if let invocationID, !invocationID.isEmpty, journalSocketExists {
            return .journal
        }
        return .stderr
    }

    /// A handler factory for `backend` at `level`.
    public static func makeHandler(backend: Backend, level: Logger.Level) -> @Sendable (String) -> any LogHandler {
        switch backend {
        case .journal: { JournalLogHandler(label: $0, logLevel: level) }
        case .stderr: { StderrLogHandler(label: $0, logLevel: level) }
        }
    }

    /// Installs the detected backend with `level` (default `info`, the daemon's default) and
    /// returns which one it chose, so the daemon can log it. Like `LoggingSystem.bootstrap`,
    /// call it once per process, before creating loggers.
    @discardableResult
    public static func bootstrap(level: Logger.Level = .info) -> Backend {
        let backend = detectBackend()
        LoggingSystem.bootstrap(makeHandler(backend: backend, level: level))
        return backend
    }

    private static func env(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
