// slmctl exit statuses. Every failure ends in exactly one of these; the table is repeated
// in `slmctl --help` and must stay in sync with it (SlmctlTests checks the help text).
//
//   0    success (also finish reasons `length` and `deadline`: the output is what was asked)
//   1    generic or internal failure: server `internal`/`malformed_frame`/`duplicate_id`/
//        unknown codes, finish reason `error`, the connection dropping, a timeout, I/O errors
//   2    usage error: bad arguments or options (ArgumentParser's 64 is remapped to 2)
//   3    cannot connect: daemon not running, socket missing or refusing connections
//   4    permission denied: EACCES on the socket, or the server's `permission_denied`
//   5    busy: `busy`, `shutting_down`, `deadline_exceeded` (queued past the deadline),
//        `evicted` (an idle connection closed to make room) — retry later
//   6    over memory budget: `over_memory_budget`
//   7    bad request: `bad_utf8`, `bad_json`, `unknown_type`, `bad_field`, `frame_too_large`,
//        `not_found`, `context_overflow`, `unsupported`, `reply_too_large`
//   8    protocol version mismatch: `unsupported_version`, or hello negotiated another version
//   9    no match: `parse` found no command of the schema in the utterance (`matched` false:
//        out of scope, or a value the schema cannot hold). Not an error of slmctl or slmd,
//        so a gateway script can branch on it without parsing the output
//   130  cancelled by Ctrl-C (SIGINT), also the server's `cancelled`

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SLMProtocol

enum ExitStatus {
    static let ok: Int32 = 0
    static let failure: Int32 = 1
    static let usage: Int32 = 2
    static let cannotConnect: Int32 = 3
    static let permissionDenied: Int32 = 4
    static let busy: Int32 = 5
    static let overMemoryBudget: Int32 = 6
    static let badRequest: Int32 = 7
    static let versionMismatch: Int32 = 8
    static let noMatch: Int32 = 9
    static let cancelled: Int32 = 130

    /// The exit status for a protocol error code (every code of the v1 table, and unknown
    /// codes from a newer server, which are generic failures).
    static func forCode(_ code: ErrorCode) -> Int32 {
        switch code {
        case .unsupportedVersion: return versionMismatch
        case .badUTF8, .badJSON, .unknownType, .badField, .frameTooLarge, .notFound,
             .contextOverflow, .unsupported, .replyTooLarge:
            return badRequest
        case .busy, .shuttingDown, .deadlineExceeded, .evicted: return busy
        case .overMemoryBudget: return overMemoryBudget
        case .permissionDenied: return permissionDenied
        case .cancelled: return cancelled
        case .malformedFrame, .internal, .duplicateID: return failure
        default: return failure
        }
    }

    /// The text of the table for `--help`.
    static let helpTable = """
        Exit status:
          0    success (finish reasons stop, length and deadline)
          1    generic or internal failure (server internal error, finish reason error,
               connection lost, timeout)
          2    usage error (bad arguments or options)
          3    cannot connect: slmd is not running or the socket is missing
          4    permission denied on the socket (or by the server)
          5    busy: too many requests, shutting down, queued past --deadline-ms,
               or an idle connection evicted to make room
          6    over the daemon's memory budget
          7    bad request: bad_field, bad_json, bad_utf8, unknown_type,
               frame_too_large, not_found, context_overflow, unsupported,
               reply_too_large
          8    protocol version mismatch between slmctl and slmd
          9    parse: no match (not a command of the schema, or a value
               the schema cannot hold)
          130  cancelled with Ctrl-C
        """
}

/// A failure that ends slmctl with a message on stderr and an exit status.
struct CtlFailure: Error, CustomStringConvertible {
    var status: Int32
    var message: String
    /// Set when the server's error frame is the cause (printed as a JSON line with --json).
    var serverError: ErrorMessage?

    init(_ status: Int32, _ message: String, serverError: ErrorMessage? = nil) {
        self.status = status
        self.message = message
        self.serverError = serverError
    }

    var description: String { message }

    /// The failure for a server error frame.
    static func server(_ e: ErrorMessage) -> CtlFailure {
        let status = ExitStatus.forCode(e.code)
        var text = "slmd: \(e.code.name): \(e.message)"
        if e.code == .unsupportedVersion {
            text = "protocol version mismatch: slmctl speaks protocol version \(SLMProtocolVersion.current), "
                + "the daemon refused it (\(e.message))"
        }
        return CtlFailure(status, text, serverError: e)
    }

    /// The failure for a connection-level error, with the advice a user needs.
    static func connection(_ e: ConnectionError) -> CtlFailure {
        switch e {
        case .connect(let path, let err):
            switch err {
            case ENOENT, ENOTDIR:
                return CtlFailure(ExitStatus.cannotConnect, notRunningMessage(path: path))
            case EACCES, EPERM:
                return CtlFailure(ExitStatus.permissionDenied, permissionMessage(path: path))
            case ECONNREFUSED where !isSocket(path):
                return CtlFailure(ExitStatus.cannotConnect, "cannot connect to slmd: \(path) is not a socket")
            case ECONNREFUSED:
                return CtlFailure(ExitStatus.cannotConnect,
                                  "slmd is not running: the socket at \(path) refuses connections (a stale socket "
                                  + "file?) (start it with `systemctl start slmd.socket` or `slmd serve --socket PATH`)")
            case ENOTSOCK:
                return CtlFailure(ExitStatus.cannotConnect, "cannot connect to slmd: \(path) is not a socket")
            default:
                return CtlFailure(ExitStatus.cannotConnect, "cannot connect to slmd at \(path): \(errnoText(err))")
            }
        case .system(let call, let err):
            return CtlFailure(ExitStatus.failure, "\(call) failed: \(errnoText(err))")
        case .closed(let inside):
            return CtlFailure(ExitStatus.failure, inside
                              ? "slmd closed the connection in the middle of a frame"
                              : "slmd closed the connection before answering")
        case .timeout(let seconds):
            return CtlFailure(ExitStatus.failure, "no answer from slmd within \(formatSeconds(seconds)) (see --timeout)")
        case .interrupted:
            return CtlFailure(ExitStatus.cancelled, "interrupted")
        case .protocolViolation(let text, let code):
            if code == .unsupportedVersion {
                return CtlFailure(ExitStatus.versionMismatch, "protocol version mismatch: \(text)")
            }
            return CtlFailure(ExitStatus.failure, text)
        }
    }

    static func notRunningMessage(path: String) -> String {
        "slmd is not running: no socket at \(path) (start it with `systemctl start slmd.socket` or "
            + "`slmd serve --socket PATH`; set SLMD_SOCKET or --socket to use another path)"
    }

    static func permissionMessage(path: String) -> String {
        "permission denied on \(path): add your user to the 'slmd' group (sudo usermod -aG slmd $USER) and log in again"
    }

    static func versionMismatch(server: Int, serverVersion: String) -> CtlFailure {
        CtlFailure(ExitStatus.versionMismatch,
                   "protocol version mismatch: slmctl speaks protocol version \(SLMProtocolVersion.current), "
                   + "slmd \(serverVersion) answered with protocol version \(server)")
    }
}

/// Whether `path` exists and is a socket (connect(2) says ECONNREFUSED for other files too).
func isSocket(_ path: String) -> Bool {
    var st = stat()
    guard stat(path, &st) == 0 else { return false }
    return st.st_mode & S_IFMT == S_IFSOCK
}

func errnoText(_ err: Int32) -> String {
    guard let s = strerror(err) else { return "errno \(err)" }
    return String(cString: s)
}

func formatSeconds(_ s: Double) -> String {
    s == s.rounded() ? "\(Int(s)) s" : "\(s) s"
}
