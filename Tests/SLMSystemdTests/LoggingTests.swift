import Glibc
import Logging
import XCTest
@testable import SLMSystemd

final class JournalFieldTests: XCTestCase {
    func testMetadataKeyToFieldName() {
        let cases: [(String, String)] = [
            ("request.id", "REQUEST_ID"),
            ("model", "MODEL"),
            ("kv-cache.bytes", "KV_CACHE_BYTES"),
            ("Peer UID", "PEER_UID"),
            ("tokens/s", "TOKENS_S"),
            ("naïve", "NA_VE"),  // one scalar, one underscore
            ("a2b", "A2B"),
            // Invalid on their own: prefixed.
            ("_trusted", "META__TRUSTED"),
            ("_SYSTEMD_UNIT", "META__SYSTEMD_UNIT"),
            ("2fa", "META_2FA"),
            (".hidden", "META__HIDDEN"),
            ("", "META_"),
            // Would duplicate the handler's own fields: prefixed.
            ("message", "META_MESSAGE"),
            ("priority", "META_PRIORITY"),
            ("code.file", "META_CODE_FILE"),
            ("syslog_identifier", "META_SYSLOG_IDENTIFIER"),
        ]
        for (key, expected) in cases {
            XCTAssertEqual(JournalLogHandler.fieldName(forMetadataKey: key), expected, "key \(key)")
        }
    }

    func testFieldNamesAreCutTo64Characters() {
        let name = JournalLogHandler.fieldName(forMetadataKey: String(repeating: "x", count: 100))
        XCTAssertEqual(name, String(repeating: "X", count: 64))
        let prefixed = JournalLogHandler.fieldName(forMetadataKey: "_" + String(repeating: "y", count: 100))
        XCTAssertEqual(prefixed.count, 64)
        XCTAssertTrue(prefixed.hasPrefix("META__YYY"))
    }

    func testEveryMappedNameIsAValidJournalFieldName() {
        let keys = ["request.id", "_x", "9", "", "ü", "MESSAGE", "a b c", String(repeating: "k", count: 80)]
        for key in keys {
            let name = JournalLogHandler.fieldName(forMetadataKey: key)
            XCTAssertTrue((1...64).contains(name.utf8.count), name)
            XCTAssertTrue(name.utf8.allSatisfy { (0x41...0x5A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F }, name)
            XCTAssertTrue((0x41...0x5A).contains(name.utf8.first!), name)
        }
    }

    func testPriorityMapping() {
        let expected: [(Logger.Level, Int)] = [
            (.trace, 7), (.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
        ]
        for (level, priority) in expected {
            XCTAssertEqual(JournalLogHandler.priority(level), priority, "\(level)")
        }
    }

    func testEntryFields() {
        let fields = JournalLogHandler.fields(
            level: .warning, message: "queue full\nrejecting", metadata: ["request.id": "42", "peer.uid": .stringConvertible(1000), "message": "spoof"],
            label: "slmd.server", identifier: "slmd",
            file: "SLMServer/Server.swift", function: "accept()", line: 128)
        XCTAssertEqual(fields, [
            "MESSAGE=queue full\nrejecting",
            "PRIORITY=4",
            "SYSLOG_IDENTIFIER=slmd",
            "LOGGER=slmd.server",
            "CODE_FILE=SLMServer/Server.swift",
            "CODE_LINE=128",
            "CODE_FUNC=accept()",
            "META_MESSAGE=spoof",
            "PEER_UID=1000",
            "REQUEST_ID=42",
        ])
    }

    func testCollidingKeysKeepBothValuesInAStableOrder() {
        let fields = JournalLogHandler.fields(level: .info, message: "m", metadata: ["a.b": "dot", "a-b": "dash"],
                                              label: "l", identifier: "slmd", file: "f", function: "g", line: 1)
        XCTAssertEqual(Array(fields.suffix(2)), ["A_B=dash", "A_B=dot"])
    }

    func testSendingWithoutJournaldDoesNotCrash() {
        let rc = JournalLogHandler.send(["MESSAGE=slmd test entry", "PRIORITY=7", "SYSLOG_IDENTIFIER=slmd-test"])
        if access(LoggingSetup.journalSocketPath, F_OK) != 0 {
            XCTAssertEqual(rc, 0)  // sd_journal_sendv drops the entry silently
        }
        // An empty entry and an entry with binary-looking values are fine too.
        _ = JournalLogHandler.send([])
        _ = JournalLogHandler.send(["MESSAGE=a\u{0}b", "X=\n\n"])

        var logger = Logger(label: "slmd.test") { JournalLogHandler(label: $0, logLevel: .debug) }
        logger[metadataKey: "request.id"] = "7"
        logger.debug("journal handler smoke test", metadata: ["tokens": "3"])
        XCTAssertEqual(logger.logLevel, .debug)
    }

    func testHandlerMetadataIsMergedWithProviderAndCall() {
        let provider = Logger.MetadataProvider { ["trace.id": "t1", "shared": "provider"] }
        let merged = mergedMetadata(handler: ["shared": "handler", "h": "1"], provider: provider,
                                    event: ["shared": "call"])
        XCTAssertEqual(merged, ["shared": "call", "h": "1", "trace.id": "t1"])
    }
}

final class StderrLogHandlerTests: XCTestCase {
    func testLineFormat() {
        let line = StderrLogHandler.format(level: .info, label: "slmd.server", message: "listening",
                                           metadata: ["path": "/run/slmd.sock", "backlog": .stringConvertible(16)])
        XCTAssertEqual(line, "info slmd.server: listening backlog=16 path=/run/slmd.sock")
    }

    func testEntryStaysOnOneLine() {
        let line = StderrLogHandler.format(level: .error, label: "l", message: "two\nlines",
                                           metadata: ["reason": "a b", "q": "say \"hi\"", "nl": "x\ny", "e": ""],
                                           timestamp: "2025-01-01T00:00:00.000Z")
        XCTAssertEqual(line, #"2025-01-01T00:00:00.000Z error l: two\nlines e="" nl=x\ny q="say \"hi\"" reason="a b""#)
        XCTAssertFalse(line.contains("\n"))
    }

    func testTimestampShape() {
        let ts = StderrLogHandler.timestamp()
        XCTAssertEqual(ts.count, 24, ts)
        XCTAssertTrue(ts.hasSuffix("Z"))
        XCTAssertEqual(Array(ts)[10], "T")
    }
}

final class LoggingSetupTests: XCTestCase {
    func testBackendRule() {
        let stderrID: (dev: UInt64, ino: UInt64) = (dev: 64769, ino: 12345)
        // JOURNAL_STREAM matching stderr → journal.
        XCTAssertEqual(LoggingSetup.chooseBackend(journalStream: "64769:12345", invocationID: nil,
                                                  stderrIdentity: stderrID, journalSocketExists: false), .journal)
        // Inherited but stderr redirected elsewhere → stderr.
        XCTAssertEqual(LoggingSetup.chooseBackend(journalStream: "64769:99", invocationID: nil,
                                                  stderrIdentity: stderrID, journalSocketExists: true), .stderr)
        // A unit with StandardError= redirected, journald present → journal.
        XCTAssertEqual(LoggingSetup.chooseBackend(journalStream: nil, invocationID: "0123abcd",
                                                  stderrIdentity: stderrID, journalSocketExists: true), .journal)
        // INVOCATION_ID but no journald (container without it) → stderr.
        XCTAssertEqual(LoggingSetup.chooseBackend(journalStream: nil, invocationID: "0123abcd",
                                                  stderrIdentity: stderrID, journalSocketExists: false), .stderr)
        // Terminal → stderr.
        XCTAssertEqual(LoggingSetup.chooseBackend(journalStream: nil, invocationID: nil,
                                                  stderrIdentity: stderrID, journalSocketExists: true), .stderr)
        XCTAssertEqual(LoggingSetup.chooseBackend(journalStream: "1:2", invocationID: "", stderrIdentity: nil,
                                                  journalSocketExists: true), .stderr)
    }

    func testDetectBackendMatchesRealStderr() {
        var st = stat()
        XCTAssertEqual(fstat(STDERR_FILENO, &st), 0)
        withEnvironment(["JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino)", "INVOCATION_ID": nil]) {
            XCTAssertEqual(LoggingSetup.detectBackend(), .journal)
        }
        withEnvironment(["JOURNAL_STREAM": nil, "INVOCATION_ID": nil]) {
            XCTAssertEqual(LoggingSetup.detectBackend(), .stderr)
        }
    }

    func testFactoriesHonourLevel() {
        let journal = LoggingSetup.makeHandler(backend: .journal, level: .info)("a")
        XCTAssertTrue(journal is JournalLogHandler)
        XCTAssertEqual(journal.logLevel, .info)
        let stderr = LoggingSetup.makeHandler(backend: .stderr, level: .debug)("b")
        XCTAssertTrue(stderr is StderrLogHandler)
        XCTAssertEqual(stderr.logLevel, .debug)
    }
}
