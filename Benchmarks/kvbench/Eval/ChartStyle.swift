import Foundation

/// The color and marker of one series. Series are styled by their position in a stable order
/// (the report's policy order), so a policy has the same look in every plot of a run; the full
/// cache has its own black star so the baseline stands out from every policy.
struct ChartStyle: Sendable, Equatable {
    /// The stroke and fill color, as `#rrggbb`.
    var color: String
    /// The marker shape.
    var marker: ChartMarker

    /// Ten hues that stay distinct from each other and on white (the "Tableau 10" set of hues,
    /// darkened slightly for thin lines).
    static let palette = [
        "#1f77b4", "#e8710a", "#2ca02c", "#d62728", "#9467bd",
        "#8c564b", "#e377c2", "#6b6b6b", "#aaa012", "#17becf",
    ]

    /// Markers used in turn; fewer than the colors (and coprime with their count), so that the
    /// (color, marker) pair only repeats after 70 series.
    static let markers: [ChartMarker] = [.circle, .square, .triangleUp, .diamond, .triangleDown, .pentagon, .hexagon]

    /// The style of the full-cache baseline: black star.
    static let reference = ChartStyle(color: "#111111", marker: .star)

    /// The style of the series at `index` (0-based) among the non-baseline series.
    static func series(_ index: Int) -> ChartStyle {
        let i = max(0, index)
        return ChartStyle(color: palette[i % palette.count], marker: markers[i % markers.count])
    }
}
