import Foundation

/// Maps a data interval onto a pixel interval, linearly or logarithmically, and proposes ticks
/// that read well: multiples of 1, 2 or 5 times a power of ten on a linear scale, powers of the
/// base (with 2x and 5x between decades when the domain spans less than about two decades) on a
/// logarithmic one.
struct ChartScale: Sendable, Equatable {
    /// How values map onto the pixel interval.
    enum Kind: Sendable, Equatable {
        /// Equal differences take equal lengths.
        case linear
        /// Equal ratios take equal lengths; the domain must be positive.
        case log(base: Double)
    }

    /// The mapping.
    var kind: Kind
    /// The data value at `start` (less than `upper`).
    var lower: Double
    /// The data value at `end`.
    var upper: Double
    /// The pixel position of `lower` (for a y axis, the bottom).
    var start: Double
    /// The pixel position of `upper`.
    var end: Double

    /// A scale from `domain` onto `start...end` (in either direction). A degenerate or, for a
    /// logarithmic scale, non-positive domain is widened to something drawable.
    init(kind: Kind, domain: ClosedRange<Double>, start: Double, end: Double) {
        self.kind = kind
        var lo = domain.lowerBound, hi = domain.upperBound
        if case .log = kind {
            if !(lo > 0) { lo = hi > 0 ? hi / 10 : 1 }
            if !(hi > lo) { hi = lo * 10 }
        } else if !(hi > lo) {
            lo -= 1
            hi += 1
        }
        lower = lo
        upper = hi
        self.start = start
        self.end = end
    }

    /// Whether this is a logarithmic scale.
    var isLog: Bool {
        if case .log = kind { return true }
        return false
    }

    /// The pixel position of `value` (values outside the domain map outside the interval; a
    /// non-positive value on a log scale maps to the `start` end).
    func position(_ value: Double) -> Double {
        let a = transform(lower), b = transform(upper)
        guard value.isFinite, b != a else { return start }
        if isLog && value <= 0 { return start }
        return start + (transform(value) - a) / (b - a) * (end - start)
    }

    /// Whether `value` lies in the domain (with a relative tolerance for rounding).
    func contains(_ value: Double) -> Bool {
        let slack = isLog ? 1e-9 * upper : 1e-9 * (upper - lower)
        return value >= lower - slack && value <= upper + slack
    }

    /// Ticks inside the domain, about `count` of them at most.
    func ticks(count: Int = 7) -> [Double] {
        switch kind {
        case .linear:
            return Self.linearTicks(lower, upper, count: count)
        case .log(let base):
            let ticks = logTicks(base: base, count: count)
            return ticks.count >= 2 ? ticks : Self.linearTicks(lower, upper, count: min(count, 4))
        }
    }

    /// `value` in the scale's linear space: itself, or its logarithm in the scale's base.
    private func transform(_ value: Double) -> Double {
        switch kind {
        case .linear: return value
        case .log(let base): return Foundation.log(value) / Foundation.log(base)
        }
    }

    /// Powers of `base` in the domain; for base 10, also 2x and 5x each power, or every 1x..9x,
    /// when the domain is narrow enough for them (the densest set with at most `count` ticks wins;
    /// if even the powers alone are too many, every second or third power is kept).
    private func logTicks(base: Double, count: Int) -> [Double] {
        let lo = transform(lower), hi = transform(upper)
        let first = Int((lo - 1e-9).rounded(.up)) - 1, last = Int((hi + 1e-9).rounded(.down)) + 1
        guard last >= first, last - first < 400 else { return [] }
        let candidates: [[Double]] = base == 10 ? [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 5], [1, 3], [1]] : [[1]]
        var ticks: [Double] = []
        for multiples in candidates {
            ticks = []
            for e in first...last {
                let power = pow(base, Double(e))
                for m in multiples where contains(m * power) { ticks.append(m * power) }
            }
            if ticks.count <= count { break }
        }
        if ticks.count > count {
            let stride = Int((Double(ticks.count) / Double(count)).rounded(.up))
            ticks = ticks.enumerated().filter { $0.offset % stride == 0 }.map(\.element)
        }
        return ticks
    }

    /// Multiples of a 1-2-5 step in `lo...hi`, at most about `count` of them.
    static func linearTicks(_ lo: Double, _ hi: Double, count: Int) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
        let step = niceStep((hi - lo) / Double(max(1, count - 1)))
        let first = (lo / step - 1e-9).rounded(.up)
        var ticks: [Double] = []
        var i = first
        while i * step <= hi + 1e-9 * step && ticks.count < 1000 {
            let v = i * step
            ticks.append(abs(v) < 1e-12 * step ? 0 : v)
            i += 1
        }
        return ticks
    }

    /// The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let power = pow(10, (log10(raw)).rounded(.down))
        for m in [1.0, 2, 2.5, 5, 10] where m * power >= raw * (1 - 1e-9) {
            return m * power
        }
        return 10 * power
    }

    /// A linear domain holding `values` with `padding` (a fraction of the span) on both sides,
    /// rounded out to the nice tick step; `includeZero` extends it to 0.
    static func linearDomain(_ values: [Double], padding: Double = 0.05, includeZero: Bool = false) -> ClosedRange<Double> {
        let finite = values.filter(\.isFinite)
        guard var lo = finite.min(), var hi = finite.max() else { return 0...1 }
        if includeZero {
            lo = min(lo, 0)
            hi = max(hi, 0)
        }
        if hi == lo {
            let d = lo == 0 ? 1 : abs(lo) * 0.1
            lo -= d
            hi += d
        }
        let span = hi - lo
        let step = niceStep(span / 6)
        var a = lo - padding * span, b = hi + padding * span
        if !(includeZero && lo == 0) { a = (a / step).rounded(.down) * step } else { a = 0 }
        b = (b / step).rounded(.up) * step
        if lo >= 0 && a < 0 { a = 0 }
        return a...b
    }

    /// A logarithmic domain holding the positive `values`, widened by `padding` of the span in
    /// log space on both sides (and to at least a factor of 4 overall).
    static func logDomain(_ values: [Double], padding: Double = 0.08) -> ClosedRange<Double> {
        let positive = values.filter { $0 > 0 && $0.isFinite }
        guard let lo = positive.min(), let hi = positive.max() else { return 1...10 }
        var a = Foundation.log(lo), b = Foundation.log(hi)
        let minimumSpan = Foundation.log(4.0)
        if b - a < minimumSpan {
            let mid = (a + b) / 2
            a = mid - minimumSpan / 2
            b = mid + minimumSpan / 2
        }
        let pad = (b - a) * padding
        return exp(a - pad)...exp(b + pad)
    }
}
