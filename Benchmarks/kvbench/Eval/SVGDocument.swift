import Foundation

/// A standalone SVG 1.1 document, built one element at a time: rectangles, lines, polylines,
/// polygons, circles and text, with every string escaped and every number finite. The document has
/// a white background, uses only generic system fonts (no font files, no scripts, no external
/// references), and renders the same in browsers, GitHub's Markdown preview and `rsvg-convert`.
///
/// Coordinates are user units (one unit is one pixel at 100 % zoom), with y growing downwards.
struct SVGDocument: Sendable {
    /// How a text's x coordinate anchors it.
    enum Anchor: String, Sendable {
        case start, middle, end
    }

    /// Width of the drawing in user units.
    let width: Double
    /// Height of the drawing in user units.
    let height: Double
    /// The font stack used for all text: common sans-serif faces, then the generic family.
    static let fontFamily = "DejaVu Sans, Helvetica, Arial, sans-serif"

    /// The `<defs>` children (clip paths, gradients), in order.
    private var definitions: [String] = []
    /// The drawing's elements, in painting order.
    private var elements: [String] = []
    /// Groups opened and not yet closed.
    private var openGroups = 0

    /// An empty document of `width` x `height` user units.
    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    /// The complete document: XML declaration, the `<svg>` root with its `viewBox`, a white
    /// background, the definitions, then the elements in the order they were added. Groups left
    /// open are closed.
    func render() -> String {
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
        out += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"\(Self.number(width))\" "
        out += "height=\"\(Self.number(height))\" viewBox=\"0 0 \(Self.number(width)) \(Self.number(height))\" "
        out += "font-family=\"\(Self.escape(Self.fontFamily))\">\n"
        if !definitions.isEmpty {
            out += "<defs>\n" + definitions.joined(separator: "\n") + "\n</defs>\n"
        }
        out += "<rect x=\"0\" y=\"0\" width=\"\(Self.number(width))\" height=\"\(Self.number(height))\" fill=\"#ffffff\"/>\n"
        out += elements.joined(separator: "\n")
        out += "\n" + String(repeating: "</g>\n", count: openGroups) + "</svg>\n"
        return out
    }

    // MARK: - Elements

    /// A rectangle; `stroke` nil draws no outline.
    mutating func rect(x: Double, y: Double, width: Double, height: Double, fill: String,
                       stroke: String? = nil, strokeWidth: Double = 1, opacity: Double = 1) {
        var a = "x=\"\(Self.number(x))\" y=\"\(Self.number(y))\" width=\"\(Self.number(max(0, width)))\" "
        a += "height=\"\(Self.number(max(0, height)))\" fill=\"\(Self.escape(fill))\""
        a += Self.strokeAttributes(stroke, strokeWidth)
        if opacity < 1 { a += " opacity=\"\(Self.number(opacity))\"" }
        elements.append("<rect \(a)/>")
    }

    /// A straight line; `dash` is an SVG dash array such as `"4 3"`.
    mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, stroke: String,
                       width: Double = 1, dash: String? = nil) {
        var a = "x1=\"\(Self.number(x1))\" y1=\"\(Self.number(y1))\" x2=\"\(Self.number(x2))\" y2=\"\(Self.number(y2))\""
        a += Self.strokeAttributes(stroke, width)
        if let dash { a += " stroke-dasharray=\"\(Self.escape(dash))\"" }
        elements.append("<line \(a)/>")
    }

    /// An open line through `points` (nothing for fewer than two points).
    mutating func polyline(_ points: [(x: Double, y: Double)], stroke: String, width: Double = 1.5,
                           dash: String? = nil, opacity: Double = 1) {
        guard points.count >= 2 else { return }
        var a = "points=\"\(Self.pointList(points))\" fill=\"none\""
        a += Self.strokeAttributes(stroke, width)
        a += " stroke-linejoin=\"round\" stroke-linecap=\"round\""
        if let dash { a += " stroke-dasharray=\"\(Self.escape(dash))\"" }
        if opacity < 1 { a += " stroke-opacity=\"\(Self.number(opacity))\"" }
        elements.append("<polyline \(a)/>")
    }

    /// A closed shape through `points`; `fill` "none" draws the outline only.
    mutating func polygon(_ points: [(x: Double, y: Double)], fill: String, stroke: String? = nil,
                          strokeWidth: Double = 1) {
        guard points.count >= 3 else { return }
        var a = "points=\"\(Self.pointList(points))\" fill=\"\(Self.escape(fill))\""
        a += Self.strokeAttributes(stroke, strokeWidth)
        a += " stroke-linejoin=\"round\""
        elements.append("<polygon \(a)/>")
    }

    /// A circle; `fill` "none" draws the outline only.
    mutating func circle(cx: Double, cy: Double, r: Double, fill: String, stroke: String? = nil,
                         strokeWidth: Double = 1) {
        var a = "cx=\"\(Self.number(cx))\" cy=\"\(Self.number(cy))\" r=\"\(Self.number(max(0, r)))\" fill=\"\(Self.escape(fill))\""
        a += Self.strokeAttributes(stroke, strokeWidth)
        elements.append("<circle \(a)/>")
    }

    /// A line of text whose baseline starts (or centers, or ends: `anchor`) at (`x`, `y`),
    /// turned by `rotation` degrees about that point. Pass `centered` to place the text's middle
    /// rather than its baseline at `y` (an estimate: 0.35 of the font size).
    mutating func text(_ string: String, x: Double, y: Double, size: Double = 12, anchor: Anchor = .start,
                       fill: String = "#222222", bold: Bool = false, italic: Bool = false,
                       rotation: Double = 0, centered: Bool = false) {
        let baseline = centered ? y + 0.35 * size : y
        var a = "x=\"\(Self.number(x))\" y=\"\(Self.number(baseline))\" font-size=\"\(Self.number(size))\""
        if anchor != .start { a += " text-anchor=\"\(anchor.rawValue)\"" }
        a += " fill=\"\(Self.escape(fill))\""
        if bold { a += " font-weight=\"bold\"" }
        if italic { a += " font-style=\"italic\"" }
        if rotation != 0 {
            a += " transform=\"rotate(\(Self.number(rotation)) \(Self.number(x)) \(Self.number(baseline)))\""
        }
        elements.append("<text \(a)>\(Self.escape(string))</text>")
    }

    /// A tooltip (`<title>`) for the element added next inside a group: browsers show it on hover.
    mutating func title(_ string: String) {
        elements.append("<title>\(Self.escape(string))</title>")
    }

    /// Opens a group; elements added until ``endGroup()`` belong to it. `clip` names a clip path
    /// made with ``clipRect(id:x:y:width:height:)``.
    mutating func beginGroup(clip: String? = nil, opacity: Double = 1) {
        var a = ""
        if let clip { a += " clip-path=\"url(#\(Self.escape(clip)))\"" }
        if opacity < 1 { a += " opacity=\"\(Self.number(opacity))\"" }
        elements.append("<g\(a)>")
        openGroups += 1
    }

    /// Closes the group opened last (nothing if none is open).
    mutating func endGroup() {
        guard openGroups > 0 else { return }
        elements.append("</g>")
        openGroups -= 1
    }

    // MARK: - Definitions

    /// Defines a rectangular clip path named `id`.
    mutating func clipRect(id: String, x: Double, y: Double, width: Double, height: Double) {
        definitions.append("<clipPath id=\"\(Self.escape(id))\"><rect x=\"\(Self.number(x))\" y=\"\(Self.number(y))\" "
            + "width=\"\(Self.number(max(0, width)))\" height=\"\(Self.number(max(0, height)))\"/></clipPath>")
    }

    /// Defines a left-to-right linear gradient named `id` through `stops` (offset in `0...1`,
    /// color).
    mutating func horizontalGradient(id: String, stops: [(offset: Double, color: String)]) {
        var d = "<linearGradient id=\"\(Self.escape(id))\" x1=\"0\" y1=\"0\" x2=\"1\" y2=\"0\">"
        for s in stops {
            d += "<stop offset=\"\(Self.number(min(1, max(0, s.offset))))\" stop-color=\"\(Self.escape(s.color))\"/>"
        }
        definitions.append(d + "</linearGradient>")
    }

    // MARK: - Text helpers

    /// `text` made safe for XML character data and attribute values: `& < > " '` become
    /// entities, and control characters other than tab, line feed and carriage return (which
    /// XML 1.0 forbids) are dropped.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            default:
                if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF { continue }
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// An estimate of `text`'s width at `size`, from the advance widths of DejaVu Sans (the
    /// widest of the listed faces, so the estimate is generous with Helvetica or Arial); used to
    /// size margins and legends and to keep labels from overlapping.
    static func textWidth(_ text: String, size: Double) -> Double {
        var units = 0.0
        for ch in text {
            switch ch {
            case "i", "l", "j", "I", "J", ".", ",", ":", ";", "'", "|", "!":
                units += 0.3
            case " ", "f", "t", "r", "(", ")", "[", "]", "-":
                units += 0.38
            case "m", "w", "M", "W", "%", "@", "—", "…":
                units += 0.96
            case "A"..."Z":
                units += 0.72
            case "0"..."9":
                units += 0.64
            default:
                units += 0.61
            }
        }
        return units * size
    }

    /// `text` broken at spaces into lines of at most about `width` pixels at `size` (a word
    /// longer than the width gets a line of its own).
    static func wrapped(_ text: String, width: Double, size: Double) -> [String] {
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            let candidate = line.isEmpty ? String(word) : line + " " + word
            if !line.isEmpty && textWidth(candidate, size: size) > width {
                lines.append(line)
                line = String(word)
            } else {
                line = candidate
            }
        }
        if !line.isEmpty || lines.isEmpty { lines.append(line) }
        return lines
    }

    /// `value` as an SVG number: at most two decimals, no trailing zeros, and 0 for NaN or
    /// infinity (which SVG cannot express).
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let rounded = (value * 100).rounded() / 100
        if rounded == rounded.rounded() && abs(rounded) < 1e15 { return String(Int(rounded)) }
        var s = String(format: "%.2f", rounded)
        while s.hasSuffix("0") { s.removeLast() }
        return s
    }

    /// `points` as an SVG `points` attribute value: `x,y x,y ...`.
    private static func pointList(_ points: [(x: Double, y: Double)]) -> String {
        points.map { "\(number($0.x)),\(number($0.y))" }.joined(separator: " ")
    }

    /// ` stroke="..." stroke-width="..."`, or nothing without a stroke color.
    private static func strokeAttributes(_ stroke: String?, _ width: Double) -> String {
        guard let stroke else { return "" }
        return " stroke=\"\(escape(stroke))\" stroke-width=\"\(number(width))\""
    }
}
