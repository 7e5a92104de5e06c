import Foundation

/// The shape drawn at a data point. Shapes differ enough to be told apart without color (in print,
/// or for a reader who does not see the palette's hues), and all have about the same visual weight.
enum ChartMarker: CaseIterable, Sendable {
    case circle, square, triangleUp, diamond, triangleDown, cross, plus, star, pentagon, hexagon

    /// Draws the marker centered at (`x`, `y`), `size` being about its diameter. A `filled` marker
    /// is painted in `color` with a white rim (so overlapping markers stay distinct); a hollow one
    /// is a `color` outline, transparent inside (a marker under it stays visible). Crosses and
    /// pluses are strokes either way.
    func draw(into document: inout SVGDocument, x: Double, y: Double, size: Double, color: String, filled: Bool) {
        let r = size / 2
        let fill = filled ? color : "none"
        let rim = filled ? "#ffffff" : color
        let rimWidth = filled ? 0.8 : 1.6
        switch self {
        case .circle:
            document.circle(cx: x, cy: y, r: r, fill: fill, stroke: rim, strokeWidth: rimWidth)
        case .square:
            let s = r * 0.9
            document.polygon([(x - s, y - s), (x + s, y - s), (x + s, y + s), (x - s, y + s)],
                             fill: fill, stroke: rim, strokeWidth: rimWidth)
        case .triangleUp:
            document.polygon(Self.regular(sides: 3, x: x, y: y + r * 0.15, radius: r * 1.2, turn: -90),
                             fill: fill, stroke: rim, strokeWidth: rimWidth)
        case .triangleDown:
            document.polygon(Self.regular(sides: 3, x: x, y: y - r * 0.15, radius: r * 1.2, turn: 90),
                             fill: fill, stroke: rim, strokeWidth: rimWidth)
        case .diamond:
            document.polygon(Self.regular(sides: 4, x: x, y: y, radius: r * 1.2, turn: -90),
                             fill: fill, stroke: rim, strokeWidth: rimWidth)
        case .pentagon:
            document.polygon(Self.regular(sides: 5, x: x, y: y, radius: r * 1.05, turn: -90),
                             fill: fill, stroke: rim, strokeWidth: rimWidth)
        case .hexagon:
            document.polygon(Self.regular(sides: 6, x: x, y: y, radius: r * 1.05, turn: 0),
                             fill: fill, stroke: rim, strokeWidth: rimWidth)
        case .star:
            var points: [(x: Double, y: Double)] = []
            for i in 0..<10 {
                let radius = i.isMultiple(of: 2) ? r * 1.45 : r * 0.6
                let angle = (-90 + Double(i) * 36) * Double.pi / 180
                points.append((x + radius * cos(angle), y + radius * sin(angle)))
            }
            document.polygon(points, fill: fill, stroke: rim, strokeWidth: rimWidth)
        case .cross:
            let s = r * 0.85
            document.line(x1: x - s, y1: y - s, x2: x + s, y2: y + s, stroke: color, width: 2)
            document.line(x1: x - s, y1: y + s, x2: x + s, y2: y - s, stroke: color, width: 2)
        case .plus:
            let s = r * 1.1
            document.line(x1: x - s, y1: y, x2: x + s, y2: y, stroke: color, width: 2)
            document.line(x1: x, y1: y - s, x2: x, y2: y + s, stroke: color, width: 2)
        }
    }

    /// The corners of a regular polygon with `sides` sides around (`x`, `y`), the first at
    /// `turn` degrees (0 points right, -90 up).
    private static func regular(sides: Int, x: Double, y: Double, radius: Double, turn: Double) -> [(x: Double, y: Double)] {
        (0..<sides).map { i in
            let angle = (turn + Double(i) * 360 / Double(sides)) * Double.pi / 180
            return (x + radius * cos(angle), y + radius * sin(angle))
        }
    }
}
