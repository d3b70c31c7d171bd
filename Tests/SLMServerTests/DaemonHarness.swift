import Foundation
import SLMProtocol
import XCTest

/// Paths of the real binary and model for end-to-end tests.
enum E2E {
    static var binDir: URL {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent()
    }
    static var slmd: String { ProcessInfo.processInfo.environment["SLMD_BIN"] ?? binDir.appendingPathComponent("slmd").path }

    static var model: String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["SLMD_MODEL"], !p.isEmpty { return p }
        let cache = env["XDG_CACHE_HOME"] ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.cache")
        return (env["SLMD_MODEL_DIR"] ?? cache + "/slmd/models") + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    static func requireModel() throws {
        guard FileManager.default.fileExists(atPath: model) else {
            XCTFail("model not found at \(model): run scripts/fetch-model (or set SLMD_MODEL)")
            throw CancellationError()
        }
    }

    static func tempDir() -> URL {
        // Short: AF_UNIX paths are limited to 107 bytes.
        let d = URL(fileURLWithPath: "/tmp/slmd-e2e-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }
}

/// A running `slmd serve` on a private socket; terminated when the test ends.
final class Daemon {
    let process = Process()
    let dir: URL
    let socket: String
    let stderrPipe = Pipe()

    /// `settings` are `--set key=value` overrides; `environment` adds variables.
    init(settings: [String] = [], extraArgs: [String] = [], environment: [String: String] = [:],
         launcher: [String]? = nil, waitReady: Bool = true, model: String = E2E.model) throws {
        try E2E.requireModel()
        dir = E2E.tempDir()
        socket = dir.appendingPathComponent("s.sock").path
        var args = ["serve", "--socket", socket, "--model", model, "--threads", "2", "--set", "warm_up=false",
                    "--set", "prefetch=false"]
        for s in settings { args += ["--set", s] }
        args += extraArgs
        if let launcher {
            process.executableURL = URL(fileURLWithPath: launcher[0])
            process.arguments = Array(launcher.dropFirst()) + [E2E.slmd] + args
        } else {
            process.executableURL = URL(fileURLWithPath: E2E.slmd)
            process.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = nil
        env["LISTEN_FDS"] = nil
        env["LISTEN_PID"] = nil
        env["INVOCATION_ID"] = nil
        env["JOURNAL_STREAM"] = nil
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        if waitReady { try waitForSocket() }
    }

    func waitForSocket(timeout: Double = 30) throws {
        let end = Date(timeIntervalSinceNow: timeout)
        while Date() < end {
            if let c = try? Client(path: socket) { c.close(); return }
            guard process.isRunning else {
                throw NSError(domain: "slmd", code: 1, userInfo: [NSLocalizedDescriptionKey: "slmd exited: \(stderrText())"])
            }
            usleep(20_000)
        }
        throw NSError(domain: "slmd", code: 2, userInfo: [NSLocalizedDescriptionKey: "slmd did not listen on \(socket)"])
    }

    var pid: Int32 { process.processIdentifier }

    func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count) ?? -1
    }

    func stderrText() -> String {
        if process.isRunning { return "" }
        return String(decoding: stderrPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    /// Waits up to `timeout` seconds for the process to exit on its own; true if it did.
    func waitForExit(timeout: Double) -> Bool {
        let end = Date(timeIntervalSinceNow: timeout)
        while process.isRunning && Date() < end { usleep(10_000) }
        return !process.isRunning
    }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    func terminate(timeout: Double = 20) -> Int32 {
        if process.isRunning {
            kill(pid, SIGTERM)
            let end = Date(timeIntervalSinceNow: timeout)
            while process.isRunning && Date() < end { usleep(10_000) }
            if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() }
        }
        return process.terminationStatus
    }

    deinit {
        terminate()
        try? FileManager.default.removeItem(at: dir)
    }
}

/// A blocking protocol client for tests: raw bytes in, decoded server messages out.
final class Client {
    let fd: Int32
    var decoder = FrameDecoder(maxPayloadLength: 16 << 20)

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in Array(path.utf8).prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw NSError(domain: "connect", code: Int(e))
        }
        var tv = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Connects with effective uid `uid` (gid the same number) and exactly `groups` as
    /// supplementary groups: the kernel records the credentials at connect() for
    /// SO_PEERCRED/SO_PEERGROUPS, so this test process (root) can play another user.
    convenience init(path: String, asUser uid: uid_t, groups: [gid_t] = []) throws {
        let n = getgroups(0, nil)
        var saved = [gid_t](repeating: 0, count: Int(max(n, 0)))
        _ = getgroups(n, &saved)
        precondition(setgroups(groups.count, groups) == 0 && setegid(uid) == 0 && seteuid(uid) == 0,
                     "switching to uid \(uid) needs root")
        defer {
            _ = seteuid(0)
            _ = setegid(0)
            _ = setgroups(saved.count, saved)
        }
        try self.init(path: path)
    }

    func close() { Glibc.close(fd) }
    deinit { Glibc.close(fd) }

    func sendRaw(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    func send(_ request: Request) { sendRaw(request.frame().encode()) }

    /// Sends a JSON payload as a request frame, verbatim.
    func sendJSON(_ json: String) { sendRaw(Frame(type: .request, payload: Array(json.utf8)).encode()) }

    /// The next server message, or nil at EOF / timeout.
    func next() -> ServerMessage? {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                if let f = try decoder.next() { return try ServerMessage(frame: f) }
            } catch {
                XCTFail("client could not decode a server frame: \(error)")
                return nil
            }
            let n = read(fd, &buf, buf.count)
            if n <= 0 { return nil }
            decoder.feed(buf[0..<n])
        }
    }

    /// Collects messages for `id` until its terminal reply or error.
    func finish(_ id: RequestID) -> (events: [Event], final: ServerMessage?) {
        var events: [Event] = []
        while let m = next() {
            switch m {
            case .event(let e) where e.id == id: events.append(e)
            case .reply(let r) where r.id == id: return (events, m)
            case .error(let e) where e.id == id: return (events, m)
            default: continue
            }
        }
        return (events, nil)
    }

    func request(_ body: RequestBody, id: RequestID = .int(1)) -> ServerMessage? {
        send(Request(id: id, body))
        return finish(id).final
    }

    /// True once the server has closed this connection.
    func isClosedByPeer() -> Bool {
        var b: UInt8 = 0
        return read(fd, &b, 1) == 0
    }
}

extension ServerMessage {
    var errorCode: String? { if case .error(let e) = self { return e.code.name } else { return nil } }
    var reply: ReplyBody? { if case .reply(let r) = self { return r.body } else { return nil } }
    var generation: GenerationResult? {
        switch reply {
        case .complete(let g), .chat(let g): return g
        default: return nil
        }
    }
}
