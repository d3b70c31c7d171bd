// Ctrl-C handling: a SIGINT handler that only writes a byte to a self-pipe (async-signal-
// safe) and counts; the connection's poll loop watches the pipe, so a blocked read wakes
// up and the command sends `cancel` for its request. A second Ctrl-C exits at once.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

nonisolated(unsafe) private var interruptPipe: (read: Int32, write: Int32) = (-1, -1)
nonisolated(unsafe) private var interruptCount: Int32 = 0

enum Interrupt {
    /// Installs the SIGINT handler (once) and ignores SIGPIPE (a closed stdout or socket
    /// becomes an EPIPE error instead of killing the process).
    static func install() {
        signal(SIGPIPE, SIG_IGN)
        guard interruptPipe.read < 0 else { return }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        }
        interruptPipe = (fds[0], fds[1])
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            interruptCount += 1
            if interruptCount >= 2 { _exit(ExitStatus.cancelled) }
            var byte: UInt8 = 1
            _ = write(interruptPipe.write, &byte, 1)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART: a blocking read (the chat prompt) returns EINTR
        sigaction(SIGINT, &action, nil)
    }

    /// Whether Ctrl-C was pressed since the last `reset()`.
    static var pending: Bool { interruptCount > 0 }

    /// The pipe's read end, for poll(2); -1 when not installed (poll ignores it).
    static var readFD: Int32 { interruptPipe.read }

    /// Forgets a handled Ctrl-C (the interactive chat continues after cancelling a reply).
    static func reset() {
        var byte: UInt8 = 0
        while read(interruptPipe.read, &byte, 1) > 0 {}
        interruptCount = 0
    }
}
