import Foundation
import SLMProtocol
import SLMTestSupport
import XCTest

/// Paths of the real binary and model for end-to-end tests (SLMTestSupport's lookups).
enum E2E {
    static var slmd: String { TestPaths.slmd }
    static var model: String { TestModel.path }
    static func requireModel() throws { _ = try TestModel.requirePath() }
    static func tempDir() -> URL { TempDir.make("slmd-e2e") }
}

/// A running `slmd serve` on a private socket; terminated when the test ends.
typealias Daemon = DaemonProcess

/// A blocking protocol client for tests: raw bytes in, decoded server messages out.
final class Client {
    let fd: Int32
    var decoder = FrameDecoder(maxPayloadLength: 16 << 20)

    init(path: String) throws {
        fd = DaemonProcess.connectUnix(path)
        guard fd >= 0 else { throw NSError(domain: "connect", code: Int(errno)) }
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

    /// The next frame as it came (the spec conformance test reads raw payloads), or nil at
    /// EOF / timeout.
    func nextFrame() -> Frame? {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                if let f = try decoder.next() { return f }
            } catch {
                XCTFail("client could not decode a server frame: \(error)")
                return nil
            }
            let n = read(fd, &buf, buf.count)
            if n <= 0 { return nil }
            decoder.feed(buf[0..<n])
        }
    }

    /// The next server message, or nil at EOF / timeout.
    func next() -> ServerMessage? {
        guard let f = nextFrame() else { return nil }
        do {
            return try ServerMessage(frame: f)
        } catch {
            XCTFail("client could not decode a server frame: \(error)")
            return nil
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
