import Foundation

/// The evaluation's SVG plots, built from an ``EvalDigest``; ``EvalReport`` writes them under
/// `plots/` and links them from `report.md`.
///
/// - `accuracy-vs-bytes.svg`: passkey accuracy against the cache bytes really held (log scale),
///   one point per policy and budget, each policy's Pareto front as a line, the full cache as a
///   black star, each budget's allowed bytes as a dotted rule (`accuracy-vs-bytes-<task>.svg` for
///   other scored tasks such as `needle`).
/// - `decode-vs-context.svg`: median decode tok/s against context per policy at the middle
///   compressed budget (the one the README shows), the full cache dashed;
///   `decode-vs-context-<budget>.svg` for each other budget.
/// - `passkey-heatmap-<policy>.svg`: accuracy over depth x context as small multiples, the full
///   cache's panel first, then one panel per budget (`needle-heatmap-<policy>.svg` likewise).
/// - `perplexity.svg`: perplexity per policy (dots) per budget, the full cache as a rule.
/// - `attention-error-<budget>.svg`: the attention output's relative error per layer per policy.
///
/// Policies keep one color and marker in every plot (by their place in the digest's order).
enum EvalPlots {
    /// One rendered plot.
    struct Plot: Sendable {
        /// The file name under `plots/` (letters, digits, `.` and `-` only).
        var file: String
        /// A one-line description, used as the image's alt text in the report.
        var caption: String
        /// Which family the plot belongs to (the report groups links by it): `accuracy`,
        /// `decode`, `heatmap-<task>`, `perplexity` or `attention`.
        var family: String
        /// What distinguishes the plot within its family: the task, budget or policy.
        var subject: String
        /// The SVG document.
        var svg: String
    }

    /// Every plot the data supports, in the order the report shows them.
    static func plots(_ digest: EvalDigest) -> [Plot] {
        var plots: [Plot] = []
        for task in digest.retrievalTasks where digest.run.cells.contains(where: { $0.task == task && $0.correct != nil }) {
            let file = task == "passkey" ? "accuracy-vs-bytes.svg" : "accuracy-vs-bytes-\(EvalFormat.fileComponent(task)).svg"
            plots.append(Plot(file: file, caption: "\(EvalFormat.taskTitle(task)) accuracy against cache bytes held",
                              family: "accuracy", subject: task, svg: accuracyVersusBytes(digest, task: task)))
        }
        let decodeBudgets = digest.compressedBudgets.filter { b in
            digest.policies.contains { p in digest.retrievalTasks.contains { t in
                digest.cells(t, policy: p, budget: b).contains { $0.decodeTokensPerSecond != nil } } }
        }
        if !decodeBudgets.isEmpty {
            let main = decodeBudgets[decodeBudgets.count / 2]
            for b in [main] + decodeBudgets.filter({ $0 != main }) {
                let file = b == main ? "decode-vs-context.svg" : "decode-vs-context-\(EvalFormat.fileComponent(b)).svg"
                plots.append(Plot(file: file, caption: "Decode tok/s against context at budget \(b)", family: "decode",
                                  subject: b, svg: decodeVersusContext(digest, budget: b)))
            }
        } else if let full = digest.fullBudget,
                  digest.run.cells.contains(where: { $0.policy == EvalDigest.fullPolicy && $0.decodeTokensPerSecond != nil }) {
            plots.append(Plot(file: "decode-vs-context.svg", caption: "Decode tok/s against context (full cache)",
                              family: "decode", subject: full, svg: decodeVersusContext(digest, budget: full)))
        }
        for task in digest.retrievalTasks where !digest.depths(task).isEmpty
            && digest.run.cells.contains(where: { $0.task == task && $0.correct != nil && $0.depth != nil }) {
            for policy in digest.policies {
                let panels = heatmapPanels(digest, task: task, policy: policy)
                guard !panels.isEmpty else { continue }
                let file = "\(EvalFormat.fileComponent(task))-heatmap-\(EvalFormat.fileComponent(policy)).svg"
                plots.append(Plot(file: file, caption: "\(EvalFormat.taskTitle(task)) accuracy by depth and context: \(policy)",
                                  family: "heatmap-\(task)", subject: policy,
                                  svg: heatmap(digest, task: task, policy: policy, panels: panels)))
            }
        }
        if digest.run.cells.contains(where: { $0.task == "perplexity" && $0.perplexity != nil }) {
            plots.append(Plot(file: "perplexity.svg", caption: "Perplexity per policy and budget", family: "perplexity",
                              subject: "perplexity", svg: perplexity(digest)))
        }
        for b in digest.budgets where digest.policies.contains(where: { p in
            !EvalDigest.isFull(p) && digest.cells("attention-error", policy: p, budget: b).contains { $0.layerErrors != nil } }) {
            plots.append(Plot(file: "attention-error-\(EvalFormat.fileComponent(b)).svg",
                              caption: "Attention-output error per layer at budget \(b)", family: "attention",
                              subject: b, svg: attentionError(digest, budget: b)))
        }
        // Labels that differ only in characters a file name cannot hold get -2, -3, ... suffixes.
        var used = Set<String>()
        for i in plots.indices {
            let stem = String(plots[i].file.dropLast(4))
            var file = plots[i].file, n = 2
            while used.contains(file) {
                file = "\(stem)-\(n).svg"
                n += 1
            }
            used.insert(file)
            plots[i].file = file
        }
        return plots
    }

    // MARK: - Accuracy against bytes

    /// Accuracy (y, 0-100 %) against the mean cache bytes held (x, log) per policy and budget.
    static func accuracyVersusBytes(_ digest: EvalDigest, task: String) -> String {
        var series: [SVGChart.Series] = []
        var xs: [Double] = []
        var trialCounts: [Int] = []
        var fullSeries = SVGChart.Series(name: "Full (full cache)", style: .reference, points: [], markerSize: 13)
        for policy in digest.policies {
            var points: [SVGChart.Point] = []
            for b in digest.budgets {
                let cells = digest.cells(task, policy: policy, budget: b)
                let a = EvalDigest.accuracy(cells)
                guard let percent = a.percent, let bytes = EvalDigest.mean(cells.map { Double($0.cacheBytes) }) else { continue }
                xs.append(bytes)
                trialCounts.append(a.trials)
                let tip = "\(policy) at \(b): \(EvalFormat.accuracy(a)), \(EvalFormat.bytes(bytes)) held"
                points.append(SVGChart.Point(x: bytes, y: percent, tooltip: tip))
            }
            guard !points.isEmpty else { continue }
            if EvalDigest.isFull(policy) {
                fullSeries.points = points
                continue
            }
            let front = paretoFront(points)
            for i in points.indices { points[i].filled = front.contains(i) }
            let line = front.map { points[$0] }.sorted { $0.x < $1.x }.map { (x: $0.x, y: $0.y) }
            series.append(SVGChart.Series(name: policy, style: style(digest, policy), points: points, line: line))
        }
        if !fullSeries.points.isEmpty { series.insert(fullSeries, at: 0) }
        var rules: [SVGChart.Rule] = []
        for b in digest.compressedBudgets {
            let allowed = digest.policies.flatMap { digest.cells(task, policy: $0, budget: b) }.compactMap(\.budgetBytes).map(Double.init)
            if let m = EvalDigest.mean(allowed) {
                rules.append(SVGChart.Rule(orientation: .vertical, value: m, label: b, color: "#8a8a8a"))
                xs.append(m)
            }
        }
        let n = mostCommon(trialCounts)
        let title = "\(EvalFormat.taskTitle(task)) accuracy against KV-cache bytes held"
        let subtitle = "Each point: one policy at one budget\(n.map { " (\($0) trials)" } ?? ""). "
            + "Lines: Pareto fronts; hollow: dominated; dotted: the budget's allowed bytes"
        var chart = SVGChart(
            title: title, subtitle: subtitle,
            x: .init(label: "cache bytes held after the prompt (mean over prompts, log scale)", kind: .log(base: 10),
                     domain: ChartScale.logDomain(xs), format: { EvalFormat.bytes($0, trimmed: true) }),
            y: .init(label: "accuracy", domain: -4...104, ticks: [0, 20, 40, 60, 80, 100], format: { "\(Int($0)) %" }))
        chart.series = series
        chart.rules = rules
        chart.footnote = contextsNote(digest, task: task)
        return chart.render()
    }

    /// Indices of the points no other point dominates (at most as many bytes and at least the
    /// accuracy, one of them strictly).
    static func paretoFront(_ points: [SVGChart.Point]) -> [Int] {
        points.indices.filter { i in
            !points.indices.contains { j in
                j != i && points[j].x <= points[i].x && points[j].y >= points[i].y
                    && (points[j].x < points[i].x || points[j].y > points[i].y)
            }
        }
    }

    // MARK: - Decode against context

    /// Median decode tok/s (y) against context (x, log 2) per policy at `budget`.
    static func decodeVersusContext(_ digest: EvalDigest, budget: String) -> String {
        var series: [SVGChart.Series] = []
        var xs: [Double] = [], ys: [Double] = []
        for policy in digest.policies {
            let full = EvalDigest.isFull(policy)
            let cells = digest.retrievalTasks.flatMap {
                full ? digest.baseline($0, budget: budget) : digest.cells($0, policy: policy, budget: budget)
            }
            var byContext: [Int: [Double]] = [:]
            for c in cells { if let r = c.decodeTokensPerSecond, r.isFinite { byContext[c.context, default: []].append(r) } }
            guard !byContext.isEmpty else { continue }
            let points = byContext.keys.sorted().compactMap { ctx -> SVGChart.Point? in
                guard let m = EvalDigest.median(byContext[ctx] ?? []) else { return nil }
                return SVGChart.Point(x: Double(ctx), y: m,
                                      tooltip: "\(policy) at \(EvalFormat.context(ctx)): \(EvalFormat.rate(m)) tok/s (median of \(byContext[ctx]?.count ?? 0))")
            }
            xs += points.map(\.x)
            ys += points.map(\.y)
            let line = points.map { (x: $0.x, y: $0.y) }
            if full { // first in the legend, and drawn first so that no policy hides under it
                series.insert(SVGChart.Series(name: "Full (full cache)", style: .reference, points: points, line: line,
                                              dashed: true, markerSize: 12), at: 0)
            } else {
                series.append(SVGChart.Series(name: policy, style: style(digest, policy), points: points, line: line))
            }
        }
        let contexts = Array(Set(xs)).sorted()
        let lo = (contexts.first ?? 1024) / 1.35, hi = (contexts.last ?? 8192) * 1.35
        let title = EvalDigest.isFullBudget(budget) ? "Decode speed against context (full cache)"
            : "Decode speed against context at budget \(budget)"
        var chart = SVGChart(
            title: title,
            subtitle: "Median decode tok/s over the answer's steps, median over the prompts of each context; dashed: the full cache",
            x: .init(label: "context (tokens, log scale)", kind: .log(base: 2), domain: lo...hi, ticks: contexts,
                     format: { EvalFormat.context(Int($0.rounded())) }),
            y: .init(label: "decode tokens / s", domain: ChartScale.linearDomain(ys, padding: 0.08)))
        chart.series = series
        chart.footnote = "\(digest.run.machine.threads) threads on \(digest.run.machine.cpu)"
        return chart.render()
    }

    // MARK: - Heat maps

    /// The panels of `policy`'s heat map: the full cache's own panels (one per budget it ran
    /// at), or the baseline's panel then one per budget the policy has a row at.
    private static func heatmapPanels(_ digest: EvalDigest, task: String, policy: String) -> [(title: String, cells: [EvalCell])] {
        if EvalDigest.isFull(policy) {
            return digest.budgets.compactMap { b in
                let cells = digest.cells(task, policy: policy, budget: b)
                return cells.isEmpty ? nil : (title: EvalDigest.isFullBudget(b) ? "Full (full cache)" : "Full at \(b)", cells: cells)
            }
        }
        let budgets = digest.budgets.filter { b in
            digest.rowPolicies(at: b).contains(policy) || !digest.cells(task, policy: policy, budget: b).isEmpty
        }
        var panels = budgets.map { b in (title: "\(policy) at \(b)", cells: digest.cells(task, policy: policy, budget: b)) }
        guard panels.contains(where: { !$0.cells.isEmpty }), let first = budgets.first else { return [] }
        let baseline = digest.baseline(task, budget: first)
        if !baseline.isEmpty { panels.insert((title: "Full (baseline)", cells: baseline), at: 0) }
        return panels
    }

    /// Accuracy over depth (rows) x context (columns), one panel per budget.
    private static func heatmap(_ digest: EvalDigest, task: String, policy: String,
                                panels: [(title: String, cells: [EvalCell])]) -> String {
        let depths = digest.depths(task), contexts = digest.contexts(task)
        var trialCounts = Set<Int>()
        var grids: [[[EvalDigest.Accuracy]]] = []
        for panel in panels {
            var grid = Array(repeating: Array(repeating: EvalDigest.Accuracy(), count: contexts.count), count: depths.count)
            for c in panel.cells {
                guard let d = c.depth, let r = depths.firstIndex(of: d), let k = contexts.firstIndex(of: c.context),
                      let v = c.correct else { continue }
                grid[r][k].trials += 1
                grid[r][k].correct += v > 0 ? 1 : 0
            }
            for row in grid { for a in row where a.trials > 0 { trialCounts.insert(a.trials) } }
            grids.append(grid)
        }
        let uniform = trialCounts.count == 1 ? trialCounts.first : nil
        let heatPanels = zip(panels, grids).map { panel, grid in
            SVGHeatmap.Panel(
                title: panel.title,
                values: grid.map { $0.map { $0.percent.map { $0 / 100 } } },
                texts: grid.map { $0.map { a in uniform != nil ? (a.percent.map { "\(Int($0.rounded())) %" } ?? "") : "\(a.correct)/\(a.trials)" } },
                tooltips: grid.enumerated().map { r, row in row.enumerated().map { k, a in
                    "\(panel.title), depth \(EvalFormat.depth(depths[r])), context \(EvalFormat.context(contexts[k])): \(a.correct)/\(a.trials) right"
                } })
        }
        let trials = uniform.map { "n = \($0) trial\($0 == 1 ? "" : "s") per cell" } ?? "each cell prints right answers / trials"
        return SVGHeatmap(
            title: "\(EvalFormat.taskTitle(task)) accuracy by depth and context: \(policy)",
            subtitle: "Share of right answers, \(trials); rows: where the key sits in the prompt",
            rowAxisLabel: "depth in the prompt", columnAxisLabel: "context (tokens)",
            rowNames: depths.map(EvalFormat.depth), columnNames: contexts.map(EvalFormat.context),
            panels: heatPanels, keyLabel: "\(task) accuracy").render()
    }

    // MARK: - Perplexity

    /// Mean perplexity per policy (dodged dots) per budget (categories); the full cache as a rule.
    static func perplexity(_ digest: EvalDigest) -> String {
        let budgets = digest.budgets.filter { b in
            digest.policies.contains { !EvalDigest.isFull($0) && !digest.cells("perplexity", policy: $0, budget: b).isEmpty }
        }
        let policies = digest.policies.filter { p in !EvalDigest.isFull(p) && budgets.contains { !digest.cells("perplexity", policy: p, budget: $0).isEmpty } }
        var series: [SVGChart.Series] = []
        var ys: [Double] = []
        var anyStopped = false
        for (i, policy) in policies.enumerated() {
            var points: [SVGChart.Point] = []
            for (k, b) in budgets.enumerated() {
                let cells = digest.cells("perplexity", policy: policy, budget: b)
                guard let ppl = EvalDigest.mean(cells.compactMap(\.perplexity).filter(\.isFinite)) else { continue }
                let stopped = cells.contains { $0.stoppedAtContextLength == true }
                anyStopped = anyStopped || stopped
                let offset = -0.36 + (Double(i) + 0.5) * 0.72 / Double(max(1, policies.count))
                points.append(SVGChart.Point(x: Double(k) + offset, y: ppl, filled: !stopped,
                                             tooltip: "\(policy) at \(b): perplexity \(EvalFormat.significant(ppl, digits: 4))"
                                                 + (stopped ? " (stopped at the context length)" : "")))
                ys.append(ppl)
            }
            series.append(SVGChart.Series(name: policy, style: style(digest, policy), points: points))
        }
        var rules: [SVGChart.Rule] = []
        let fullCells = digest.fullBudget.map { digest.cells("perplexity", policy: EvalDigest.fullPolicy, budget: $0) } ?? []
        if let ppl = EvalDigest.mean(fullCells.compactMap(\.perplexity).filter(\.isFinite)) {
            rules.append(SVGChart.Rule(orientation: .horizontal, value: ppl,
                                       label: "Full (full cache): \(EvalFormat.significant(ppl))", color: "#111111", inLegend: true))
            ys.append(ppl)
        }
        let positive = ys.filter { $0 > 0 }
        let useLog = (positive.max() ?? 1) / max(1e-9, positive.min() ?? 1) > 8
        let tokens = digest.run.settings.perplexityTokens
        var chart = SVGChart(
            title: "Streaming perplexity per policy and budget",
            subtitle: "Mean over \(tokens) scored tokens of the text; dashed: the full cache"
                + (anyStopped ? "; hollow: stopped at the model's context length" : ""),
            x: .init(label: "cache budget", categories: budgets),
            y: useLog ? .init(label: "perplexity (log scale, lower is better)", kind: .log(base: 10), domain: ChartScale.logDomain(ys))
                : .init(label: "perplexity (lower is better)", domain: ChartScale.linearDomain(ys, padding: 0.1)))
        chart.series = series
        chart.rules = rules
        return chart.render()
    }

    // MARK: - Attention error

    /// Mean relative error of the attention output per layer (y, log) per policy at `budget`.
    static func attentionError(_ digest: EvalDigest, budget: String) -> String {
        var series: [SVGChart.Series] = []
        var ys: [Double] = []
        var layers = 0, prompts = Set<Int>()
        for policy in digest.policies where !EvalDigest.isFull(policy) {
            let cells = digest.cells("attention-error", policy: policy, budget: budget).filter { $0.layerErrors != nil }
            guard !cells.isEmpty else { continue }
            prompts.insert(cells.count)
            let errors = EvalDigest.meanLayerErrors(cells)
            layers = max(layers, errors.count)
            let points = errors.enumerated().compactMap { l, e -> SVGChart.Point? in
                e > 0 && e.isFinite ? SVGChart.Point(x: Double(l), y: e, tooltip: "\(policy), layer \(l): \(EvalFormat.significant(e))") : nil
            }
            ys += points.map(\.y)
            series.append(SVGChart.Series(name: policy, style: style(digest, policy), points: points,
                                          line: points.map { (x: $0.x, y: $0.y) }, markerSize: 7))
        }
        let n = prompts.count == 1 ? "\(prompts.first ?? 0) prompts" : "the prompts"
        var chart = SVGChart(
            title: "Attention-output error per layer at budget \(budget)",
            subtitle: "‖o − o_full‖ / ‖o_full‖ for the last prompt token, mean over \(n); lower is better (zeros not drawn)",
            x: .init(label: "layer", domain: -0.5...(Double(max(1, layers)) - 0.5),
                     ticks: ChartScale.linearTicks(0, Double(max(0, layers - 1)), count: 12).filter { $0 == $0.rounded() }),
            y: .init(label: "relative error (log scale)", kind: .log(base: 10), domain: ChartScale.logDomain(ys)))
        chart.series = series
        return chart.render()
    }

    // MARK: - Helpers

    /// The style of `policy`: the reference style for the full cache, else by its place among the
    /// other policies.
    static func style(_ digest: EvalDigest, _ policy: String) -> ChartStyle {
        if EvalDigest.isFull(policy) { return .reference }
        return .series(digest.policies.filter { !EvalDigest.isFull($0) }.firstIndex(of: policy) ?? 0)
    }

    /// The value that occurs most often (the first of equals), nil for none.
    private static func mostCommon(_ values: [Int]) -> Int? {
        var counts: [Int: Int] = [:]
        for v in values { counts[v, default: 0] += 1 }
        return values.max { counts[$0, default: 0] < counts[$1, default: 0] }
    }

    /// "Contexts 1K-8K, 5 depths, 2 seeds" for `task`'s grid.
    private static func contextsNote(_ digest: EvalDigest, task: String) -> String {
        let contexts = digest.contexts(task), depths = digest.depths(task), seeds = digest.run.settings.seeds.count
        var parts: [String] = []
        if let a = contexts.first, let b = contexts.last {
            parts.append(a == b ? "context \(EvalFormat.context(a))" : "contexts \(EvalFormat.context(a))–\(EvalFormat.context(b))")
        }
        if !depths.isEmpty { parts.append("\(depths.count) depth\(depths.count == 1 ? "" : "s")") }
        if seeds > 0 { parts.append("\(seeds) seed\(seeds == 1 ? "" : "s")") }
        return "Prompts: " + parts.joined(separator: " × ") + "; " + "\(digest.run.machine.cpu), commit \(digest.run.commit)"
    }
}
