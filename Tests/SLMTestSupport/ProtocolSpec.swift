import Foundation

/// docs/PROTOCOL.md split into sections, with its Markdown tables as rows of cells: what the
/// spec tests read, so the spec is checked as written.
public struct ProtocolSpec: Sendable {
    /// The whole Markdown text.
    public let text: String

    public init(text: String) { self.text = text }

    /// The spec in this checkout.
    public static func load() throws -> ProtocolSpec {
        let url = TestPaths.packageRoot.appendingPathComponent("docs/PROTOCOL.md")
        return ProtocolSpec(text: try String(contentsOf: url, encoding: .utf8))
    }

    /// The lines of section `number` (`5` is "## 5. …" up to its first subsection, `5.5`
    /// is "### 5.5 …" up to the next heading).
    public func section(_ number: String) -> [Substring] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = lines.firstIndex { $0.hasPrefix("## \(number). ") || $0.hasPrefix("### \(number) ") }
        guard let start else { return [] }
        let end = lines[(start + 1)...].firstIndex { $0.hasPrefix("#") } ?? lines.endIndex
        return Array(lines[(start + 1)..<end])
    }

    /// One Markdown table: its header cells and body rows.
    public struct Table: Sendable {
        public var header: [String]
        public var rows: [[String]]
    }

    /// The tables of section `number`, in order.
    public func tables(inSection number: String) -> [Table] {
        var tables: [Table] = []
        var inTable = false
        for line in section(number) {
            guard line.hasPrefix("|") else { inTable = false; continue }
            if line.hasPrefix("|---") { continue }
            let cells = Self.cells(line)
            if inTable { tables[tables.count - 1].rows.append(cells) } else { tables.append(Table(header: cells, rows: [])); inTable = true }
        }
        return tables
    }

    /// The body rows of every table in section `number`.
    public func tableRows(inSection number: String) -> [[String]] { tables(inSection: number).flatMap(\.rows) }

    /// A table line's trimmed cells (`\|` inside a cell is not a separator).
    static func cells(_ line: Substring) -> [String] {
        line.replacingOccurrences(of: "\\|", with: "\u{1}").split(separator: "|")
            .map { $0.replacingOccurrences(of: "\u{1}", with: "|").trimmingCharacters(in: .whitespaces) }
    }
}
