import CSystemd
import Glibc

/// The service manager notification channel (`sd_notify(3)`) for a `Type=notify` unit.
///
/// Every call is a no-op that reports `.disabled` when `NOTIFY_SOCKET` is not set, so the daemon
/// calls these unconditionally whether it runs under systemd, in a terminal or in a test.
/// The environment is read on every call and never unset: children (there are none today)
/// would inherit it, and tests can point it at their own socket.
///
/// Protocol the daemon follows (see the service unit):
/// - `ready()` only once the model is mapped and the socket is listening;
/// - `watchdog()` every `watchdogPingInterval` while the scheduler loop is alive;
/// - on SIGHUP `reloading()`, reload, then `ready()` again;
/// - on SIGTERM `stopping()`, drain, exit.
public struct Notifier: Sendable {
    /// What became of one notification.
    public enum Outcome: Equatable, Sendable {
        /// The datagram was sent to `NOTIFY_SOCKET`.
        case sent
        /// `NOTIFY_SOCKET` is not set: not running under a service manager that listens.
        case disabled
        /// `sd_notify` failed with this errno (for example the socket path does not exist).
        case failed(errno: Int32)
    }

    public init() {}

    /// True when `NOTIFY_SOCKET` is set, i.e. a service manager expects notifications.
    public var isEnabled: Bool {
        getenv("NOTIFY_SOCKET") != nil
    }

    /// `READY=1`: startup finished. With `status`, `STATUS=` is sent in the same datagram.
    @discardableResult
    public func ready(status: String? = nil) -> Outcome {
        var lines = ["READY=1"]
        if let status { lines.append("STATUS=" + Self.oneLine(status)) }
        return send(lines)
    }

    /// `STATUS=`: a one-line human-readable state shown by `systemctl status`.
    /// Newlines would end the assignment early, so they become spaces.
    @discardableResult
    public func status(_ text: String) -> Outcome {
        send(["STATUS=" + Self.oneLine(text)])
    }

    /// `WATCHDOG=1`: the keep-alive ping for `WatchdogSec=`.
    @discardableResult
    public func watchdog() -> Outcome {
        send(["WATCHDOG=1"])
    }

    /// `STOPPING=1`: shutdown has begun (sent before draining requests).
    @discardableResult
    public func stopping() -> Outcome {
        send(["STOPPING=1"])
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (CLOCK_MONOTONIC now, in µs). systemd ≥ 253 needs
    /// the timestamp for `Type=notify-reload`; 252 ignores the extra field. Send `ready()`
    /// when the reload is complete.
    @discardableResult
    public func reloading() -> Outcome {
        send(["RELOADING=1", "MONOTONIC_USEC=\(Self.monotonicMicroseconds())"])
    }

    /// `MAINPID=`: the main process is now `pid` (only needed if the daemon ever forks).
    @discardableResult
    public func mainPID(_ pid: pid_t) -> Outcome {
        send(["MAINPID=\(pid)"])
    }

    /// `EXTEND_TIMEOUT_USEC=`: ask for more time in the current start/stop phase, e.g. while
    /// a large model is paged in from an SD card. The new deadline is `duration` from now.
    @discardableResult
    public func extendTimeout(by duration: Duration) -> Outcome {
        send(["EXTEND_TIMEOUT_USEC=\(Self.microseconds(duration))"])
    }

    /// `WatchdogSec=` of the unit when the watchdog is enabled for this process
    /// (`WATCHDOG_USEC` set and `WATCHDOG_PID` unset or equal to our pid), else nil.
    public var watchdogInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(clamping: usec))
    }

    /// How often to call `watchdog()`: half of `watchdogInterval`, as sd_watchdog_enabled(3) advises.
    public var watchdogPingInterval: Duration? {
        watchdogInterval.map { $0 / 2 }
    }

    /// Sends the given `KEY=value` assignments as one datagram.
    @discardableResult
    public func send(_ assignments: [String]) -> Outcome {
        let state = assignments.joined(separator: "\n")
        let rc = sd_notify(0, state)
        if rc > 0 { return .sent }
        if rc == 0 { return .disabled }
        return .failed(errno: -rc)
    }

    static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }

    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1_000
    }

    static func microseconds(_ d: Duration) -> UInt64 {
        let (seconds, attoseconds) = d.components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) * 1_000_000 + UInt64(attoseconds / 1_000_000_000_000)
    }
}
