import Foundation

/// Heat maps as small multiples: panels side by side (wrapping after `panelsPerRow`), each a grid
/// of rows x columns whose cells are colored by a fraction in `0...1` and print their own text,
/// sharing one row and column labelling and one color key. A cell without a value is light gray
/// and prints "—".
///
/// The colors run from red (0) through near-white (0.5) to blue (1), a diverging scale that reads
/// without red-green discrimination; the text in each cell turns white on the dark ends.
struct SVGHeatmap: Sendable {
    /// One grid.
    struct Panel: Sendable {
        /// The panel's heading.
        var title: String
        /// `values[row][column]`: the fraction that colors the cell, nil for no data.
        var values: [[Double?]]
        /// `texts[row][column]`: what the cell prints (a value for no-data cells is ignored).
        var texts: [[String]]
        /// Hover text per cell (optional; same shape as `values`).
        var tooltips: [[String]]? = nil
    }

    /// The chart title.
    var title: String
    /// A second, smaller line under the title.
    var subtitle: String? = nil
    /// The title of the rows, written down the left side.
    var rowAxisLabel: String
    /// The title of the columns, written under the first row of panels.
    var columnAxisLabel: String
    /// Labels of the rows, top to bottom, shared by all panels.
    var rowNames: [String]
    /// Labels of the columns, left to right, shared by all panels.
    var columnNames: [String]
    /// The grids, in reading order.
    var panels: [Panel]
    /// What the color key measures, e.g. "passkey accuracy".
    var keyLabel: String
    /// Panels per row before wrapping.
    var panelsPerRow = 4

    /// The complete SVG document.
    func render() -> String {
        let cellTextSize = 11.0, labelSize = 11.5
        let widestColumn = columnNames.map { SVGDocument.textWidth($0, size: labelSize) }.max() ?? 20
        let widestText = panels.flatMap { $0.texts.flatMap { $0 } }.map { SVGDocument.textWidth($0, size: cellTextSize) }.max() ?? 20
        let cellWidth = max(44, widestColumn + 10, widestText + 10)
        let cellHeight = 28.0
        let rowLabelWidth = (rowNames.map { SVGDocument.textWidth($0, size: labelSize) }.max() ?? 20) + 10
        let gridWidth = cellWidth * Double(max(1, columnNames.count))
        let gridHeight = cellHeight * Double(max(1, rowNames.count))
        let perRow = max(1, min(panelsPerRow, panels.count))
        let panelRows = max(1, (panels.count + perRow - 1) / perRow)
        let panelGap = 22.0
        let left = 16 + 24 + rowLabelWidth
        let panelTitleHeight = 22.0, columnLabelHeight = 20.0
        let panelHeight = panelTitleHeight + gridHeight + columnLabelHeight
        let titleWidth = SVGDocument.textWidth(title, size: 17) + 32
        let width = max(left + Double(perRow) * gridWidth + Double(perRow - 1) * panelGap + 16, titleWidth, 480)
        let subtitleLines = subtitle.map { SVGDocument.wrapped($0, width: width - 32, size: 12) } ?? []
        let headerHeight = 46.0 + (subtitleLines.isEmpty ? 0 : 6) + 15 * Double(subtitleLines.count)
        let keyHeight = 56.0
        let height = headerHeight + Double(panelRows) * panelHeight + Double(panelRows - 1) * 14 + 24 + keyHeight

        var doc = SVGDocument(width: width.rounded(.up), height: height.rounded(.up))
        doc.text(title, x: 16, y: 30, size: 17, bold: true)
        for (i, line) in subtitleLines.enumerated() {
            doc.text(line, x: 16, y: 49 + 15 * Double(i), size: 12, fill: "#555555")
        }

        for (index, panel) in panels.enumerated() {
            let col = index % perRow, row = index / perRow
            let x0 = left + Double(col) * (gridWidth + panelGap)
            let y0 = headerHeight + Double(row) * (panelHeight + 14)
            let gridTop = y0 + panelTitleHeight
            doc.text(SVGChart.truncated(panel.title, width: gridWidth, size: 12.5), x: x0 + gridWidth / 2, y: y0 + 14,
                     size: 12.5, anchor: .middle, bold: true)
            for (r, rowName) in rowNames.enumerated() {
                let cy = gridTop + Double(r) * cellHeight
                if col == 0 {
                    doc.text(rowName, x: x0 - 8, y: cy + cellHeight / 2, size: labelSize, anchor: .end,
                             fill: "#333333", centered: true)
                }
                for c in columnNames.indices {
                    let cx = x0 + Double(c) * cellWidth
                    let value = panel.values.indices.contains(r) && panel.values[r].indices.contains(c) ? panel.values[r][c] : nil
                    let tooltip = panel.tooltips.flatMap { t in t.indices.contains(r) && t[r].indices.contains(c) ? t[r][c] : nil }
                    if let tooltip {
                        doc.beginGroup()
                        doc.title(tooltip)
                    }
                    if let value {
                        let fill = Self.color(for: value)
                        doc.rect(x: cx, y: cy, width: cellWidth, height: cellHeight, fill: fill, stroke: "#ffffff", strokeWidth: 1.5)
                        let text = panel.texts.indices.contains(r) && panel.texts[r].indices.contains(c) ? panel.texts[r][c] : ""
                        doc.text(text, x: cx + cellWidth / 2, y: cy + cellHeight / 2, size: cellTextSize, anchor: .middle,
                                 fill: Self.isDark(value) ? "#ffffff" : "#111111", centered: true)
                    } else {
                        doc.rect(x: cx, y: cy, width: cellWidth, height: cellHeight, fill: "#e6e6e6", stroke: "#ffffff", strokeWidth: 1.5)
                        doc.text("—", x: cx + cellWidth / 2, y: cy + cellHeight / 2, size: cellTextSize, anchor: .middle,
                                 fill: "#777777", centered: true)
                    }
                    if tooltip != nil { doc.endGroup() }
                }
            }
            for (c, name) in columnNames.enumerated() {
                doc.text(name, x: x0 + (Double(c) + 0.5) * cellWidth, y: gridTop + gridHeight + 15, size: labelSize,
                         anchor: .middle, fill: "#333333")
            }
        }
        // Axis titles: rows down the left edge, columns under the first row of panels' grids.
        let gridsTop = headerHeight + panelTitleHeight
        let gridsBottom = headerHeight + Double(panelRows) * panelHeight + Double(panelRows - 1) * 14 - columnLabelHeight
        doc.text(rowAxisLabel, x: 28, y: (gridsTop + gridsBottom) / 2, size: 12.5, anchor: .middle, rotation: -90)
        let axisY = headerHeight + Double(panelRows) * panelHeight + Double(panelRows - 1) * 14 + 12
        doc.text(columnAxisLabel, x: left, y: axisY, size: 12.5)

        // Color key.
        let keyWidth = 220.0, keyLeft = left, keyTop = axisY + 16
        doc.horizontalGradient(id: "key", stops: Self.stops.map { (offset: $0.offset, color: Self.hex($0.rgb)) })
        doc.text(keyLabel, x: keyLeft, y: keyTop + 2, size: 11, fill: "#333333")
        doc.rect(x: keyLeft, y: keyTop + 8, width: keyWidth, height: 12, fill: "url(#key)", stroke: "#999999", strokeWidth: 0.5)
        for f in [0.0, 0.5, 1.0] {
            doc.text("\(Int(f * 100)) %", x: keyLeft + f * keyWidth, y: keyTop + 33, size: 10.5,
                     anchor: f == 0 ? .start : f == 1 ? .end : .middle, fill: "#333333")
        }
        doc.rect(x: keyLeft + keyWidth + 24, y: keyTop + 8, width: 18, height: 12, fill: "#e6e6e6")
        doc.text("no data", x: keyLeft + keyWidth + 48, y: keyTop + 18, size: 10.5, fill: "#333333")
        return doc.render()
    }

    /// The diverging scale's anchor colors (RGB in `0...255`) at fractions 0, 0.25, 0.5, 0.75, 1.
    static let stops: [(offset: Double, rgb: (Double, Double, Double))] = [
        (0, (178, 24, 43)), (0.25, (239, 138, 98)), (0.5, (247, 247, 247)), (0.75, (103, 169, 207)), (1, (33, 102, 172)),
    ]

    /// The fill for `fraction` (clamped to `0...1`), interpolated between the stops.
    static func color(for fraction: Double) -> String {
        hex(rgb(fraction))
    }

    /// Whether the fill for `fraction` is dark enough to need white text.
    static func isDark(_ fraction: Double) -> Bool {
        let (r, g, b) = rgb(fraction)
        return 0.299 * r + 0.587 * g + 0.114 * b < 140
    }

    /// The interpolated RGB color (components in `0...255`) for `fraction`.
    private static func rgb(_ fraction: Double) -> (Double, Double, Double) {
        let f = fraction.isFinite ? min(1, max(0, fraction)) : 0
        for (a, b) in zip(stops, stops.dropFirst()) where f <= b.offset {
            let t = (f - a.offset) / (b.offset - a.offset)
            return (a.rgb.0 + t * (b.rgb.0 - a.rgb.0), a.rgb.1 + t * (b.rgb.1 - a.rgb.1), a.rgb.2 + t * (b.rgb.2 - a.rgb.2))
        }
        return stops[stops.count - 1].rgb
    }

    /// `rgb` as `#rrggbb`.
    private static func hex(_ rgb: (Double, Double, Double)) -> String {
        let c = [rgb.0, rgb.1, rgb.2].map { Int(min(255, max(0, $0.rounded()))) }
        return String(format: "#%02x%02x%02x", c[0], c[1], c[2])
    }
}
