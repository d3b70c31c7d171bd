/// Renders bytes like `hexdump -C`: offset, 16 bytes in two groups of 8, printable ASCII.
///
/// Used for the worked examples in docs/PROTOCOL.md (a test checks them against the
/// encoder) and for wire tracing in clients.
public func hexDump(_ bytes: some Collection<UInt8>) -> String {
    let digits = Array("0123456789abcdef")
    func hex(_ value: Int, width: Int) -> String {
        var chars: [Character] = []
        var v = value
        for _ in 0..<width {
            chars.append(digits[v & 0xF])
            v >>= 4
        }
        return String(chars.reversed())
    }
    let all = Array(bytes)
    var lines: [String] = []
    var offset = 0
    while offset < all.count {
        let row = all[offset..<min(offset + 16, all.count)]
        var line = hex(offset, width: 8) + "  "
        for (n, byte) in row.enumerated() {
            line += hex(Int(byte), width: 2) + " "
            if n == 7 { line += " " }
        }
        if row.count < 16 {
            line += String(repeating: " ", count: (16 - row.count) * 3 + (row.count <= 8 ? 1 : 0))
        }
        line += " |" + String(row.map { (0x20..<0x7F).contains($0) ? Character(UnicodeScalar($0)) : "." }) + "|"
        lines.append(line)
        offset += 16
    }
    lines.append(hex(all.count, width: 8))
    return lines.joined(separator: "\n")
}
