import Foundation

/// An x-y chart rendered as a standalone SVG: points with markers, lines through chosen points,
/// horizontal and vertical reference rules, a title with an optional subtitle, axes with ticks,
/// grid lines and labels, and a legend to the right of the plot area (so it never covers data).
///
/// Each axis is linear, logarithmic or categorical (categories at 0, 1, 2, ... with their names as
/// tick labels; callers offset a series' points within a category to dodge them). Points outside
/// an axis' domain are clipped to the plot area. Tick labels that would overlap are thinned.
struct SVGChart: Sendable {
    /// One axis: how values map, over which domain, where the ticks go and how they print.
    struct Axis: Sendable {
        /// The axis title.
        var label: String
        /// Linear or logarithmic (categorical axes are linear over the category indices).
        var kind: ChartScale.Kind = .linear
        /// The data interval the axis shows.
        var domain: ClosedRange<Double>
        /// Tick positions; nil lets the scale choose.
        var ticks: [Double]? = nil
        /// Tick label for a value.
        var format: @Sendable (Double) -> String = { SVGChart.plainNumber($0) }
        /// Category names for a categorical axis (the domain is then `-0.5...count - 0.5`).
        var categories: [String]? = nil

        /// A numeric axis.
        init(label: String, kind: ChartScale.Kind = .linear, domain: ClosedRange<Double>, ticks: [Double]? = nil,
             format: @escaping @Sendable (Double) -> String = { SVGChart.plainNumber($0) }) {
            self.label = label
            self.kind = kind
            self.domain = domain
            self.ticks = ticks
            self.format = format
        }

        /// A categorical axis over `categories`, in order.
        init(label: String, categories: [String]) {
            self.label = label
            self.domain = -0.5...(Double(max(1, categories.count)) - 0.5)
            self.ticks = categories.indices.map(Double.init)
            self.categories = categories
            let names = categories
            self.format = { v in
                let i = Int(v.rounded())
                return names.indices.contains(i) ? names[i] : ""
            }
        }
    }

    /// One data point; `filled` false draws the marker hollow (for example a dominated point).
    struct Point: Sendable {
        /// The value on the x axis.
        var x: Double
        /// The value on the y axis.
        var y: Double
        /// Paints the marker in the series' color (else an outline on white).
        var filled = true
        /// Shown when hovering the point in a browser.
        var tooltip: String? = nil
    }

    /// A named set of points with one style.
    struct Series: Sendable {
        /// The legend entry.
        var name: String
        /// Color and marker.
        var style: ChartStyle
        /// Markers, drawn over every line.
        var points: [Point]
        /// A line through these positions in this order (none for fewer than two).
        var line: [(x: Double, y: Double)] = []
        /// Draws the line dashed.
        var dashed = false
        /// Marker diameter in pixels.
        var markerSize = 9.0
    }

    /// A reference line across the plot area at a value of one axis, with a short label.
    struct Rule: Sendable {
        /// Which axis the value belongs to: a horizontal rule sits at a y value.
        enum Orientation: Sendable { case horizontal, vertical }
        /// Horizontal (at a y value) or vertical (at an x value).
        var orientation: Orientation
        /// Where the rule sits, in the axis' data units.
        var value: Double
        /// A short label: above the plot for a vertical rule, over the line for a horizontal one.
        var label: String
        /// Line and label color.
        var color = "#888888"
        /// Lists the rule in the legend (a dashed sample and the label) instead of labelling it
        /// on the plot, where the label could cover data.
        var inLegend = false
    }

    /// The chart title.
    var title: String
    /// A second, smaller line under the title (what a point is, what lines mean).
    var subtitle: String? = nil
    /// The horizontal axis.
    var x: Axis
    /// The vertical axis.
    var y: Axis
    /// The data, drawn in order (later series on top) and listed in the legend in order.
    var series: [Series] = []
    /// Reference lines, drawn under the data.
    var rules: [Rule] = []
    /// A line of small print under the x axis title (caveats, data source).
    var footnote: String? = nil
    /// Width of the drawing in pixels.
    var width = 800.0
    /// Height of the drawing in pixels.
    var height = 500.0

    /// A chart with a title and two axes; add series and rules before rendering.
    init(title: String, subtitle: String? = nil, x: Axis, y: Axis) {
        self.title = title
        self.subtitle = subtitle
        self.x = x
        self.y = y
    }

    /// The complete SVG document.
    func render() -> String {
        var doc = SVGDocument(width: width, height: height)
        let titleSize = 17.0, labelSize = 13.0, tickSize = 11.5, legendSize = 12.0

        // Vertical layout: title, subtitle, labels of vertical rules, plot, x ticks, x title, footnote.
        var top = 30.0
        doc.text(title, x: 16, y: top, size: titleSize, bold: true)
        let subtitleLines = subtitle.map { SVGDocument.wrapped($0, width: width - 32, size: 12) } ?? []
        for (i, line) in subtitleLines.enumerated() {
            top += i == 0 ? 19 : 15
            doc.text(line, x: 16, y: top, size: 12, fill: "#555555")
        }
        let hasVerticalRuleLabels = rules.contains { $0.orientation == .vertical && !$0.inLegend && !$0.label.isEmpty }
        let plotTop = top + (hasVerticalRuleLabels ? 30 : 18)
        var plotBottom = height - 58
        if footnote != nil { plotBottom -= 16 }

        // Horizontal layout: y title, y tick labels, plot, legend.
        let yScaleProbe = ChartScale(kind: y.kind, domain: y.domain, start: plotBottom, end: plotTop)
        let yTicks = (y.ticks ?? yScaleProbe.ticks(count: max(3, Int((plotBottom - plotTop) / 55)))).filter(yScaleProbe.contains)
        let yTickWidth = yTicks.map { SVGDocument.textWidth(y.format($0), size: tickSize) }.max() ?? 20
        let plotLeft = 16 + labelSize + 12 + yTickWidth + 8
        let legendRules = rules.filter(\.inLegend)
        let legendEntries = series.filter { !$0.name.isEmpty }
        let legendNames = legendRules.map(\.label) + legendEntries.map(\.name)
        let legendTextWidth = min(190, legendNames.map { SVGDocument.textWidth($0, size: legendSize) }.max() ?? 0)
        let legendWidth = legendNames.isEmpty ? 0 : 34 + legendTextWidth + 14
        let plotRight = width - 16 - legendWidth
        let xScale = ChartScale(kind: x.kind, domain: x.domain, start: plotLeft, end: plotRight)
        let yScale = ChartScale(kind: y.kind, domain: y.domain, start: plotBottom, end: plotTop)

        // Grid and y ticks.
        doc.rect(x: plotLeft, y: plotTop, width: plotRight - plotLeft, height: plotBottom - plotTop, fill: "#fbfbfb")
        for t in yTicks {
            let py = yScale.position(t)
            doc.line(x1: plotLeft, y1: py, x2: plotRight, y2: py, stroke: "#e2e2e2")
            doc.line(x1: plotLeft - 5, y1: py, x2: plotLeft, y2: py, stroke: "#444444")
            doc.text(y.format(t), x: plotLeft - 8, y: py, size: tickSize, anchor: .end, fill: "#333333", centered: true)
        }
        // x ticks, thinned until their labels no longer touch.
        var xTicks = (x.ticks ?? xScale.ticks(count: max(3, Int((plotRight - plotLeft) / 80)))).filter(xScale.contains)
        xTicks = Self.thinned(xTicks, scale: xScale, format: x.format, size: tickSize)
        let categorical = x.categories != nil
        if categorical, let names = x.categories, names.count > 1 {
            for i in 0..<(names.count - 1) {
                let px = xScale.position(Double(i) + 0.5)
                doc.line(x1: px, y1: plotTop, x2: px, y2: plotBottom, stroke: "#d0d0d0")
            }
        }
        for t in xTicks {
            let px = xScale.position(t)
            if !categorical { doc.line(x1: px, y1: plotTop, x2: px, y2: plotBottom, stroke: "#e2e2e2") }
            doc.line(x1: px, y1: plotBottom, x2: px, y2: plotBottom + 5, stroke: "#444444")
            doc.text(x.format(t), x: px, y: plotBottom + 19, size: tickSize, anchor: .middle, fill: "#333333")
        }
        // Axis lines and titles.
        doc.line(x1: plotLeft, y1: plotBottom, x2: plotRight, y2: plotBottom, stroke: "#444444")
        doc.line(x1: plotLeft, y1: plotTop, x2: plotLeft, y2: plotBottom, stroke: "#444444")
        doc.text(x.label, x: (plotLeft + plotRight) / 2, y: plotBottom + 40, size: labelSize, anchor: .middle)
        doc.text(y.label, x: 16 + labelSize, y: (plotTop + plotBottom) / 2, size: labelSize, anchor: .middle, rotation: -90)
        if let footnote {
            doc.text(Self.truncated(footnote, width: width - 32, size: 10.5), x: 16, y: height - 10, size: 10.5, fill: "#666666")
        }

        // Rules, lines and markers, clipped to the plot area (markers get a little slack).
        doc.clipRect(id: "plot", x: plotLeft, y: plotTop, width: plotRight - plotLeft, height: plotBottom - plotTop)
        doc.clipRect(id: "marks", x: plotLeft - 6, y: plotTop - 6, width: plotRight - plotLeft + 12,
                     height: plotBottom - plotTop + 12)
        doc.beginGroup(clip: "plot")
        for rule in rules {
            switch rule.orientation {
            case .horizontal:
                guard yScale.contains(rule.value) else { continue }
                let py = yScale.position(rule.value)
                doc.line(x1: plotLeft, y1: py, x2: plotRight, y2: py, stroke: rule.color, width: 1.2, dash: "5 4")
                if !rule.inLegend { doc.text(rule.label, x: plotLeft + 6, y: py - 4, size: 10.5, fill: rule.color) }
            case .vertical:
                guard xScale.contains(rule.value) else { continue }
                let px = xScale.position(rule.value)
                doc.line(x1: px, y1: plotTop, x2: px, y2: plotBottom, stroke: rule.color, width: 1.2, dash: "2 4")
            }
        }
        for s in series {
            let line = s.line.map { (x: xScale.position($0.x), y: yScale.position($0.y)) }
            doc.polyline(line, stroke: s.style.color, width: 2, dash: s.dashed ? "6 4" : nil, opacity: 0.85)
        }
        doc.endGroup()
        // Labels of vertical rules sit above the plot area, thinned so they do not overlap.
        var lastLabelEnd = -Double.infinity
        for rule in rules.filter({ $0.orientation == .vertical && !$0.inLegend && xScale.contains($0.value) }).sorted(by: { $0.value < $1.value }) {
            let px = xScale.position(rule.value)
            let w = SVGDocument.textWidth(rule.label, size: 10.5)
            guard px - w / 2 > lastLabelEnd + 4 else { continue }
            doc.text(rule.label, x: px, y: plotTop - 8, size: 10.5, anchor: .middle, fill: rule.color)
            lastLabelEnd = px + w / 2
        }
        // Filled markers first, then the hollow ones over them (a hollow ring over a filled marker
        // leaves both visible).
        doc.beginGroup(clip: "marks")
        for filledPass in [true, false] {
            for s in series {
                for p in s.points where p.filled == filledPass && p.x.isFinite && p.y.isFinite {
                    let px = xScale.position(p.x), py = yScale.position(p.y)
                    if let tip = p.tooltip {
                        doc.beginGroup()
                        doc.title(tip)
                    }
                    s.style.marker.draw(into: &doc, x: px, y: py, size: s.markerSize, color: s.style.color, filled: p.filled)
                    if p.tooltip != nil { doc.endGroup() }
                }
            }
        }
        doc.endGroup()

        // Legend: the rules it lists (a dashed sample), then one row per named series (marker over
        // a short line sample).
        if !legendNames.isEmpty {
            let legendLeft = plotRight + 16
            let rowHeight = min(20, max(12, (plotBottom - plotTop) / Double(legendNames.count)))
            var ly = plotTop + rowHeight / 2
            for rule in legendRules {
                doc.line(x1: legendLeft, y1: ly, x2: legendLeft + 24, y2: ly, stroke: rule.color, width: 1.5, dash: "5 4")
                doc.text(Self.truncated(rule.label, width: legendTextWidth, size: legendSize), x: legendLeft + 32, y: ly,
                         size: legendSize, fill: "#222222", centered: true)
                ly += rowHeight
            }
            for s in legendEntries {
                if !s.line.isEmpty || s.dashed {
                    doc.line(x1: legendLeft, y1: ly, x2: legendLeft + 24, y2: ly, stroke: s.style.color, width: 2,
                             dash: s.dashed ? "6 4" : nil)
                }
                s.style.marker.draw(into: &doc, x: legendLeft + 12, y: ly, size: min(s.markerSize, rowHeight - 2),
                                    color: s.style.color, filled: true)
                doc.text(Self.truncated(s.name, width: legendTextWidth, size: legendSize), x: legendLeft + 32, y: ly,
                         size: legendSize, fill: "#222222", centered: true)
                ly += rowHeight
            }
        }
        return doc.render()
    }

    /// `ticks` with every second (third, ...) one dropped until neighbouring labels are at least
    /// 10 px apart.
    private static func thinned(_ ticks: [Double], scale: ChartScale, format: (Double) -> String, size: Double) -> [Double] {
        guard ticks.count > 2 else { return ticks }
        for stride in 1...ticks.count {
            let kept = ticks.enumerated().filter { $0.offset % stride == 0 }.map(\.element)
            var fits = true
            for (a, b) in zip(kept, kept.dropFirst()) {
                let gap = abs(scale.position(b) - scale.position(a))
                let need = (SVGDocument.textWidth(format(a), size: size) + SVGDocument.textWidth(format(b), size: size)) / 2 + 10
                if gap < need { fits = false; break }
            }
            if fits { return kept }
        }
        return [ticks[0]]
    }

    /// `text` cut to about `width` pixels at `size`, with an ellipsis when cut.
    static func truncated(_ text: String, width: Double, size: Double) -> String {
        guard SVGDocument.textWidth(text, size: size) > width + 0.5 else { return text }
        var s = text
        while !s.isEmpty && SVGDocument.textWidth(s + "…", size: size) > width { s.removeLast() }
        return s + "…"
    }

    /// `value` with up to three significant decimals and no trailing zeros (`0.25`, `1200`).
    static func plainNumber(_ value: Double) -> String {
        guard value.isFinite else { return "—" }
        if value == value.rounded() && abs(value) < 1e12 { return String(Int(value)) }
        let digits = max(0, min(4, 2 - Int(log10(abs(value)).rounded(.down))))
        var s = String(format: "%.\(digits)f", value)
        if s.contains(".") {
            while s.hasSuffix("0") { s.removeLast() }
            if s.hasSuffix(".") { s.removeLast() }
        }
        return s
    }
}
