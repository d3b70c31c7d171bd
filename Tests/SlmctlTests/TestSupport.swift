import Foundation
import Glibc
import SLMProtocol
import SLMTestSupport
import XCTest

// MARK: - Running the slmctl binary

/// The result of one slmctl run.
struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum Slmctl {
    /// The built `slmctl`, beside the test bundle (`.build/<triple>/release/`). The test
    /// target cannot depend on the executable, so `swift build --build-tests` must build it.
    static var path: String {
        get throws {
            let dir = TestPaths.binDir
            let candidate = dir.appendingPathComponent("slmctl").path
            guard FileManager.default.isExecutableFile(atPath: candidate) else {
                throw Missing(text: "slmctl binary not found at \(candidate): build it first "
                              + "(swift build -c release --build-tests -Xswiftc -enable-testing)")
            }
            return candidate
        }
    }

    struct Missing: Error, CustomStringConvertible { let text: String; var description: String { text } }

    /// Runs slmctl with `arguments`. `env` entries are added to (nil values removed from)
    /// the test's environment; `SLMD_SOCKET` is removed unless given.
    static func run(_ arguments: [String], env: [String: String?] = [:], stdin: String? = nil,
                    executable: String? = nil, prefix: [String] = [], timeout: Double = 30,
                    whileRunning: ((Running) throws -> Void)? = nil) throws -> RunResult {
        let process = Process()
        let exe = try executable ?? path
        if prefix.isEmpty {
            process.executableURL = URL(fileURLWithPath: exe)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: prefix[0])
            process.arguments = Array(prefix.dropFirst()) + [exe] + arguments
        }
        var environment = ProcessInfo.processInfo.environment
        environment["SLMD_SOCKET"] = nil
        for (k, v) in env { environment[k] = v ?? nil }
        process.environment = environment
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        // Collect output concurrently so a chatty child never blocks on a full pipe. A
        // handler reads and appends under the collector's gate, and none reads once the rest
        // has been drained below: a handler still running (or dispatched late) when the
        // result was read could otherwise append its data after it, and once in a CI run a
        // `status` came back with an empty stdout.
        let collected = Collected()
        out.fileHandleForReading.readabilityHandler = { h in collected.gated { collected.append(out: h.availableData) } }
        err.fileHandleForReading.readabilityHandler = { h in collected.gated { collected.append(err: h.availableData) } }
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        if let whileRunning { try whileRunning(Running(process: process, collected: collected)) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            XCTFail("slmctl \(arguments) did not finish within \(timeout) s")
        }
        process.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        err.fileHandleForReading.readabilityHandler = nil
        collected.finish {
            collected.append(out: out.fileHandleForReading.readDataToEndOfFile())
            collected.append(err: err.fileHandleForReading.readDataToEndOfFile())
        }
        return RunResult(status: process.terminationStatus, stdout: collected.stdout, stderr: collected.stderr)
    }

    /// A run in progress: its process and the output so far.
    struct Running {
        let process: Process
        let collected: Collected
        var stdout: String { collected.stdout }
        func interrupt() { process.interrupt() }
    }

    final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var out = Data(), err = Data()
        private let gate = NSLock()
        private var finished = false
        /// Runs a handler's read unless the output has been drained (`finish`).
        func gated(_ read: () -> Void) { gate.withLock { if !finished { read() } } }
        /// Drains the rest once no handler is reading, and stops later ones from reading.
        func finish(_ drain: () -> Void) { gate.withLock { finished = true; drain() } }
        func append(out d: Data) { lock.withLock { out.append(d) } }
        func append(err d: Data) { lock.withLock { err.append(d) } }
        var stdout: String { lock.withLock { String(decoding: out, as: UTF8.self) } }
        var stderr: String { lock.withLock { String(decoding: err, as: UTF8.self) } }
    }
}

// MARK: - A fake slmd

/// A scriptable stand-in for slmd on a temporary socket: answers `hello` itself, records
/// every request, and hands the others to `handler` on their own thread (so a slow stream
/// and the `cancel` that stops it can overlap, as on the real daemon).
final class FakeServer: @unchecked Sendable {
    typealias Handler = @Sendable (Request, FakeServer.Peer) -> Void

    let directory: String
    let socketPath: String
    private let listenFD: Int32
    private let lock = NSLock()
    private var _requests: [Request] = []
    private var _cancelled: Set<RequestID> = []
    private var stopped = false
    var helloInfo = ServerInfo(protocolVersion: 1, serverVersion: "0.0.0-fake",
                               model: ["name": "fake-model", "context_length": 2048, "quantization": "Q4_1"],
                               limits: ["max_concurrent": 2, "max_queue": 16])
    /// Answers for ops other than hello and cancel.
    var handler: Handler

    init(handler: @escaping Handler = FakeServer.pingOnly) throws {
        var template = Array("/tmp/slmctl-test-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw POSIXError(.EIO) }
        directory = String(cString: dir)
        socketPath = directory + "/slmd.sock"
        self.handler = handler
        listenFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(socketPath.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, listen(listenFD, 16) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let t = Thread { [self] in acceptLoop() }
        t.start()
        Self.liveLock.withLock { Self.live.append(self) }
    }

    // The accept thread keeps a server alive, so deinit never runs: tests stop them all
    // in tearDown (closing the listener ends the thread, removing the temporary directory).
    nonisolated(unsafe) private static var live: [FakeServer] = []
    private static let liveLock = NSLock()

    /// Stops every server created so far (call from tearDown).
    static func stopAll() {
        let servers = liveLock.withLock { () -> [FakeServer] in defer { live = [] }; return live }
        for s in servers { s.stop() }
    }

    deinit { stop() }

    func stop() {
        let wasStopped = lock.withLock { () -> Bool in defer { stopped = true }; return stopped }
        guard !wasStopped else { return }
        Glibc.shutdown(listenFD, Int32(SHUT_RDWR))
        close(listenFD)
        unlink(socketPath)
        rmdir(directory)
    }

    /// Every request received so far (hello included), in arrival order.
    var requests: [Request] { lock.withLock { _requests } }

    /// Whether a `cancel` for `id` arrived.
    func wasCancelled(_ id: RequestID) -> Bool { lock.withLock { _cancelled.contains(id) } }

    /// One client connection: sends are serialised.
    final class Peer: @unchecked Sendable {
        let fd: Int32
        unowned let server: FakeServer
        private let lock = NSLock()
        init(fd: Int32, server: FakeServer) { self.fd = fd; self.server = server }
        func send(_ message: ServerMessage) { sendRaw(message.frame().encode()) }
        func sendRaw(_ bytes: [UInt8]) {
            lock.withLock {
                var off = 0
                while off < bytes.count {
                    let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { return }
                    off += n
                }
            }
        }
        func isCancelled(_ id: RequestID) -> Bool { server.wasCancelled(id) }
        func close() { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            let peer = Peer(fd: fd, server: self)
            Thread { [self] in serve(peer) }.start()
        }
    }

    private func serve(_ peer: Peer) {
        var decoder = FrameDecoder()
        var buffer = [UInt8](repeating: 0, count: 65536)
        defer { close(peer.fd) }
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(peer.fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            decoder.feed(buffer[0..<n])
            while let frame = try? decoder.next() {
                guard let request = try? Request(frame: frame) else { continue }
                lock.withLock { _requests.append(request) }
                switch request.body {
                case .hello:
                    peer.send(.reply(Reply(id: request.id, .hello(helloInfo))))
                case .cancel(let c):
                    lock.withLock { _ = _cancelled.insert(c.target) }
                    peer.send(.reply(Reply(id: request.id, .cancel(cancelled: true))))
                default:
                    let handler = self.handler
                    Thread { handler(request, peer) }.start()
                }
            }
        }
    }

    /// Default handler: answers ping; anything else is `unsupported`.
    static let pingOnly: Handler = { request, peer in
        if case .ping = request.body { peer.send(.reply(Reply(id: request.id, .ping))) }
        else { peer.send(.error(ErrorMessage(id: request.id, code: .unsupported, message: "fake server"))) }
    }

    /// A handler that streams `pieces` as token events (`delay` seconds apart), then a
    /// reply; stops early with finish reason `cancelled` when the request is cancelled.
    static func streaming(_ pieces: [String], delay: Double = 0, prompt: Int = 3) -> Handler {
        return { request, peer in
            let stream: Bool
            switch request.body {
            case .complete(let c): stream = c.options.stream
            case .chat(let c): stream = c.options.stream
            case .ping: peer.send(.reply(Reply(id: request.id, .ping))); return
            default:
                peer.send(.error(ErrorMessage(id: request.id, code: .unsupported, message: "fake server")))
                return
            }
            var count = 0
            var reason = FinishReason.stop
            for piece in pieces {
                if peer.isCancelled(request.id) { reason = .cancelled; break }
                count += 1
                if stream { peer.send(.event(Event(id: request.id, text: piece, tokenCount: count))) }
                if delay > 0 { usleep(useconds_t(delay * 1e6)) }
            }
            if peer.isCancelled(request.id) { reason = .cancelled }
            let usage = Usage(promptTokens: prompt, generatedTokens: count, ttftMS: 5, tokensPerSecond: 100, totalMS: 20)
            let result = GenerationResult(text: stream ? nil : pieces.prefix(count).joined(), finishReason: reason, usage: usage)
            if case .chat = request.body { peer.send(.reply(Reply(id: request.id, .chat(result)))) }
            else { peer.send(.reply(Reply(id: request.id, .complete(result)))) }
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
func waitUntil(timeout: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
