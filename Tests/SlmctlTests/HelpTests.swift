import XCTest

/// `--help` of the root and every subcommand: key lines, so the documented interface (and
/// the exit status table) cannot drift silently.
final class HelpTests: XCTestCase {
    func help(_ args: [String]) throws -> String {
        let r = try Slmctl.run(args + ["--help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout
    }

    func assertLines(_ text: String, _ lines: [String], file: StaticString = #filePath, line: UInt = #line) {
        for l in lines where !text.contains(l) {
            XCTFail("help text lacks \"\(l)\":\n\(text)", file: file, line: line)
        }
    }

    func testRootHelpListsSubcommandsAndExitTable() throws {
        let text = try help([])
        assertLines(text, [
            "USAGE: slmctl <subcommand>",
            "--socket PATH, else $SLMD_SOCKET,",
            "else /run/slmd.sock",
            "Exit status:",
            "  0    success",
            "  1    generic or internal failure",
            "  2    usage error",
            "  3    cannot connect",
            "  4    permission denied on the socket",
            "  5    busy",
            "  6    over the daemon's memory budget",
            "  7    bad request: bad_field, bad_json, bad_utf8, unknown_type,",
            "  8    protocol version mismatch",
            "  9    parse: no match",
            "  130  cancelled with Ctrl-C",
            "  complete ", "  chat ", "  tokenize ", "  detokenize ", "  status ", "  stats ",
            "  ping, health ", "  bench ", "  version ",
        ])
    }

    func testCompleteHelp() throws {
        let text = try help(["complete"])
        assertLines(text, [
            "USAGE: slmctl complete [<options>] <prompt>",
            "<prompt>                The prompt, or - to read it from stdin.",
            "--max-tokens <n>", "--temperature <t>", "--top-k <k>", "--top-p <p>", "--min-p <p>",
            "--repeat-penalty <x>", "--repeat-window <n>", "--seed <n>", "--stop <text>", "--deadline-ms <ms>",
            "--no-stream", "--json", "-v, --verbose", "--socket <path>", "--timeout <seconds>", "--parse-special",
            "Ctrl-C cancels the request on the daemon and exits 130.",
        ])
    }

    func testChatHelp() throws {
        assertLines(try help(["chat"]), [
            "USAGE: slmctl chat [<options>] [<message>]", "--system <text>", "interactive session",
            "--max-tokens <n>", "--stop <text>", "--json",
        ])
    }

    func testTokenizeAndDetokenizeHelp() throws {
        assertLines(try help(["tokenize"]), ["USAGE: slmctl tokenize <text> [--parse-special] [--json] [--socket <path>] [--timeout <seconds>]", "--parse-special", "--json"])
        assertLines(try help(["detokenize"]), ["USAGE: slmctl detokenize <ids> ... [--json] [--socket <path>] [--timeout <seconds>]", "1,2,3"])
    }

    func testStatusStatsPingHelp() throws {
        assertLines(try help(["status"]), ["USAGE: slmctl status [--json] [--socket <path>] [--timeout <seconds>]", "systemctl status", "--json"])
        assertLines(try help(["stats"]), ["USAGE: slmctl stats [--prometheus] [--json] [--socket <path>] [--timeout <seconds>]", "--prometheus", "Prometheus text exposition"])
        assertLines(try help(["ping"]), ["USAGE: slmctl ping [--quiet] [--json] [--socket <path>] [--timeout <seconds>]", "-q, --quiet"])
        assertLines(try help(["health"]), ["-q, --quiet"])
    }

    func testBenchAndVersionHelp() throws {
        assertLines(try help(["bench"]), [
            "USAGE: slmctl bench <options>", "-c, --concurrency <concurrency>", "-n, --requests <requests>",
            "--prompt <text>", "--max-tokens <n>", "p50/p90/p99", "aggregate throughput",
        ])
        assertLines(try help(["version"]), ["USAGE: slmctl version [--client] [--socket <path>] [--timeout <seconds>]", "--client"])
    }

    func testVersionFlagAndClientVersion() throws {
        let r = try Slmctl.run(["--version"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.hasPrefix("slmctl 0.1.0 (protocol 1)"), r.stdout)
        let c = try Slmctl.run(["version", "--client"])
        XCTAssertEqual(c.status, 0)
        XCTAssertEqual(c.stdout, "slmctl 0.1.0 (protocol 1)\n")
    }

    func testUsageErrorsExit2() throws {
        for args in [["complete"], ["complete", "--max-tokens", "0", "x"], ["complete", "--top-p", "2", "x"],
                     ["nosuchverb"], ["detokenize", "abc"], ["bench", "-c", "0"], ["stats", "--json", "--prometheus"],
                     ["complete", "--stop", "", "x"]] {
            let r = try Slmctl.run(args, env: ["SLMD_SOCKET": "/nonexistent/slmd.sock"])
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertFalse(r.stderr.isEmpty, "\(args)")
        }
    }

    func testCompletionScripts() throws {
        for shell in ["bash", "zsh", "fish"] {
            let r = try Slmctl.run(["--generate-completion-script", shell])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("slmctl"), shell)
            XCTAssertTrue(r.stdout.contains("complete"), shell)
        }
    }
}
