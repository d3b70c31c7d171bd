#if canImport(Glibc)
import Glibc
#endif

/// Faults the end-to-end tests inject into a real daemon, chosen by the environment
/// variable `SLMD_TEST_FAULT` (read once; unset in production, where this does nothing):
/// - `crash`: the engine thread traps when it first has work, with the I/O thread running,
///   to check that a crash ends the process promptly (no hang in the crash reporter), so
///   `Restart=on-failure` brings the service back;
/// - `hang`: the engine thread stops for good when it first has work, so its heartbeat and
///   the systemd watchdog pings stop and systemd kills and restarts the service;
/// - `hang-io`: the I/O thread stops for good at its first request while the engine thread
///   stays healthy: the watchdog pings must stop too (they need both loops alive).
public enum TestFault {
    static let mode: String? = getenv("SLMD_TEST_FAULT").map { String(cString: $0) }

    /// Called by the server's I/O thread for each request it reads.
    public static func ioHasWork() {
        if mode == "hang-io" { while true { sleep(3600) } }
    }

    /// Called by the engine thread whenever it is about to do work.
    static func engineHasWork() {
        switch mode {
        case "crash"?: fatalError("SLMD_TEST_FAULT=crash: deliberate trap on the engine thread")
        case "hang"?: while true { sleep(3600) }
        default: return
        }
    }
}
