#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGBUS into a clear message and a prompt non-zero exit.
///
/// The model (and the repacked weights' cache file) are memory-mapped; when such a file
/// is truncated or overwritten in place (`cp` over it during an upgrade), touching a page
/// that no longer exists raises SIGBUS in whichever thread reads it. Left to the default
/// handling, the daemon died with "signal 7" and no hint, or hung in the crash reporter.
/// This handler writes one line naming the files to stderr (the journal under systemd)
/// and exits with status 74 (EX_IOERR) at once, so `Restart=on-failure` starts the service
/// again on the new file. The model watch normally drains and restarts before this can
/// happen; the handler covers the race and files changed by other means.
enum MappedFileCrash {
    /// The message, built before any fault so the handler only calls write(2) and _exit(2),
    /// which are async-signal-safe.
    nonisolated(unsafe) private static var message: UnsafeMutableBufferPointer<UInt8>?

    static let exitStatus: Int32 = 74

    static func install(files: [String]) {
        let text = "slmd: SIGBUS: a memory-mapped file shrank or was rewritten under the running daemon ("
            + files.joined(separator: ", ")
            + "); exiting with status \(exitStatus) so the service restarts on the new file. Install models by rename (mv/install), never cp over a served file.\n"
        let bytes = Array(text.utf8)
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: bytes.count)
        _ = buffer.initialize(from: bytes)
        message = buffer
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            if let m = MappedFileCrash.message { _ = write(2, m.baseAddress, m.count) }
            _exit(MappedFileCrash.exitStatus)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGBUS, &action, nil)
    }
}
