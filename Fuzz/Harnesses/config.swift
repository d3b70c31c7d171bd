// Fuzz target "config": DaemonConfig's `key = value` file format (Sources/SLMServer/DaemonConfig.swift).
//
// Input: config file text. Checks:
// - apply(configText:) either succeeds or throws a ConfigError naming this source and a
//   line that exists;
// - applying the same text again on the result changes nothing (later lines win, so the
//   format is idempotent);
// - applying the lines one at a time gives the same configuration, or fails at the same
//   line with the same message;
// - CRLF line ends read like LF ones (trim() drops a trailing "\r" for that purpose);
// - problem() and parseSize never trap, and parseSize round-trips its own results.
@testable import SLMServer

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    // Lines end with LF or CRLF ("\r\n" is one Character, so splitting on "\n" alone would not do).
    let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })

    var whole = DaemonConfig()
    var wholeError: ConfigError?
    do { try whole.apply(configText: text, source: "fuzz.conf") } catch { wholeError = error }

    if let e = wholeError {
        let d = e.description
        fuzzCheck(d.hasPrefix("fuzz.conf:"), "error does not name the source: \(d)")
        let n = d.dropFirst("fuzz.conf:".count).prefix { $0.isNumber }
        fuzzCheck(Int(n).map { (1...lines.count).contains($0) } ?? false, "error names no valid line: \(d)")
    } else {
        var again = whole
        do { try again.apply(configText: text, source: "fuzz.conf") } catch {
            fuzzFail("text applied once fails the second time: \(error)")
        }
        fuzzCheck(again == whole, "applying the text twice changed the configuration")
        _ = whole.problem()
    }

    // Line by line. A key set twice is an error of the whole file only (each apply() call
    // sees one line), so up to the line the whole text fails on, both must agree.
    var stepwise = DaemonConfig()
    var stepError: String?
    var stepLine = 0
    for (n, line) in lines.enumerated() {
        do { try stepwise.apply(configText: String(line), source: "fuzz.conf") } catch {
            // Same message, with this line's number instead of 1.
            stepError = "fuzz.conf:\(n + 1):" + error.description.dropFirst("fuzz.conf:1:".count)
            stepLine = n + 1
            break
        }
    }
    if let e = wholeError {
        let wholeLine = Int(e.description.dropFirst("fuzz.conf:".count).prefix { $0.isNumber }) ?? 0
        if e.description.contains("is already set on line") {
            fuzzCheck(stepError == nil || stepLine >= wholeLine, "line by line failed first: \(stepError!) vs whole: \(e.description)")
        } else {
            fuzzCheck(stepError == e.description, "line by line: \(stepError ?? "success") vs whole: \(e.description)")
        }
    } else {
        fuzzCheck(stepError == nil, "line by line failed (\(stepError!)) where the whole text did not")
        fuzzCheck(stepwise == whole, "line by line gives a different configuration")
    }

    // The same text with CRLF line ends.
    if !text.utf8.contains(0x0D) && text.utf8.contains(0x0A) {
        let crlf = text.replacing("\n", with: "\r\n")
        var c = DaemonConfig()
        var cError: ConfigError?
        do { try c.apply(configText: crlf, source: "fuzz.conf") } catch { cError = error }
        fuzzCheck(cError?.description.prefix(while: { $0 != " " }) == wholeError?.description.prefix(while: { $0 != " " }),
                  "CRLF line ends: \(cError?.description ?? "success") vs LF: \(wholeError?.description ?? "success")")
        fuzzCheck(cError != nil || c == whole, "CRLF line ends give a different configuration")
    }

    // Sizes: the value of every line, as parseSize sees it.
    for line in lines {
        guard let eq = line.firstIndex(of: "=") else { continue }
        let value = String(line[line.index(after: eq)...].trimmingPrefix(while: { $0 == " " || $0 == "\t" }))
        if let v = parseSize(value) {
            fuzzCheck(v >= 0, "parseSize(\(value)) = \(v)")
            fuzzCheck(parseSize(String(v)) == v, "parseSize(String(\(v))) differs")
        }
    }
    return 0
}
