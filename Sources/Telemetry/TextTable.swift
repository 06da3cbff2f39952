// The boxed text tables Triton logs at start-up (the models with their version and status, then
// the server's options), so operators who grep a Triton log find the same shape in Petrel's.
/// `headers` and `rows` as a table of `+---+` rules and `| cell |` lines, each column as wide as
/// its widest cell (counted in characters). Rows shorter than the headers are padded with "".
public func textTable(_ headers: [String], _ rows: [[String]]) -> String {
    var widths = headers.map(\.count)
    for row in rows {
        for (i, cell) in row.prefix(headers.count).enumerated() { widths[i] = max(widths[i], cell.count) }
    }
    let rule = "+" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "+") + "+"
    func line(_ cells: [String]) -> String {
        "|" + widths.indices.map { i in
            let cell = i < cells.count ? cells[i] : ""
            return " " + cell + String(repeating: " ", count: widths[i] - cell.count) + " "
        }.joined(separator: "|") + "|"
    }
    return ([rule, line(headers), rule] + rows.map(line) + [rule]).joined(separator: "\n")
}
