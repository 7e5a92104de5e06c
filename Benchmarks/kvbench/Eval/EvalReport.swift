import Foundation

/// Renders an evaluation: `report.md` (Markdown tables), `results.csv` (every cell) and
/// `plots/*.svg`, all from an ``EvalRun`` and nothing else, so `kvbench report --from results.json`
/// re-renders a finished run exactly. It never writes `results.json` (the engine owns it).
///
/// The report's tables:
/// - **Headline**: per budget (the full cache first as the baseline row of every group), per
///   policy: each scored task's accuracy (right/trials and percent) and its difference from the
///   full cache in percentage points, perplexity (marked when scoring stopped at the context
///   length), the mean attention-output error, the mean cache bytes held and the median decode
///   tok/s.
/// - Per scored task: accuracy per context per policy and budget, and the full cache's accuracy
///   per depth and context (so a failure of the model itself shows).
/// - The attention-output error over layers; perplexity details; llama-bench rows if any.
///
/// Policies and budgets come from the run (settings order, then first appearance in the cells),
/// never from a list in this code; every (policy, budget) with cells has a row, and a policy the
/// settings asked for but that has no cells shows "—".
enum EvalReport {
    /// The report's file name in the output folder.
    static let reportFile = "report.md"
    /// The CSV's file name in the output folder.
    static let csvFile = "results.csv"
    /// The folder, inside the output folder, that holds the plots.
    static let plotsFolder = "plots"

    /// Writes `report.md`, `results.csv` and `plots/*.svg` into `directory` (created if needed).
    /// SVG files already in `plots/` are removed first, so that no plot of a policy or budget the
    /// run no longer has stays behind; nothing else in the folder is touched.
    ///
    /// - Throws: the file system's error when a folder cannot be created or a file written.
    static func write(_ run: EvalRun, to directory: URL) throws {
        let fm = FileManager.default
        let plotsURL = directory.appendingPathComponent(plotsFolder, isDirectory: true)
        try fm.createDirectory(at: plotsURL, withIntermediateDirectories: true)
        for name in try fm.contentsOfDirectory(atPath: plotsURL.path) where name.hasSuffix(".svg") {
            try fm.removeItem(at: plotsURL.appendingPathComponent(name))
        }
        let digest = EvalDigest(run)
        let plots = EvalPlots.plots(digest)
        for plot in plots {
            try Data(plot.svg.utf8).write(to: plotsURL.appendingPathComponent(plot.file), options: .atomic)
        }
        try Data(EvalCSV.csv(run).utf8).write(to: directory.appendingPathComponent(csvFile), options: .atomic)
        try Data(markdown(digest, plots: plots).utf8).write(to: directory.appendingPathComponent(reportFile), options: .atomic)
    }

    /// The Markdown report (the content of `report.md`; plots are linked as `plots/<name>.svg`,
    /// relative to the output folder).
    static func markdown(_ run: EvalRun) -> String {
        let digest = EvalDigest(run)
        return markdown(digest, plots: EvalPlots.plots(digest))
    }

    /// A shorter Markdown text for a terminal: the title, the run's machine, commit and command,
    /// and the headline table (no settings, plots or detail tables).
    static func summary(_ run: EvalRun) -> String {
        let digest = EvalDigest(run)
        return header(digest) + headline(digest)
    }

    // MARK: - Sections

    /// The whole report from a digest and the plots rendered from it.
    private static func markdown(_ d: EvalDigest, plots: [EvalPlots.Plot]) -> String {
        var md = header(d)
        md += settings(d)
        md += headline(d)
        md += plotSection(d, plots)
        for task in d.retrievalTasks { md += perContext(d, task: task, plots: plots) }
        md += attentionErrors(d)
        md += perplexityDetails(d)
        md += llamaBench(d)
        return md
    }

    /// The title and the run's date, machine, commit, model, text and exact command.
    private static func header(_ d: EvalDigest) -> String {
        let run = d.run, m = run.machine
        let day = run.date.split(separator: "T").first.map(String.init) ?? run.date
        var md = day.isEmpty ? "# KVCompress evaluation\n\n" : "# KVCompress evaluation, \(day)\n\n"
        md += "- **Date:** \(run.date.isEmpty ? EvalFormat.missing : run.date)\n"
        md += "- **Machine:** \(m.cpu), \(m.cores) cores, ISA \(m.isa), \(m.os), \(m.threads) threads\n"
        md += "- **Commit:** `\(run.commit)`\n"
        if !run.settings.model.isEmpty { md += "- **Model:** \(run.settings.model)\n" }
        if !run.settings.text.isEmpty { md += "- **Perplexity text:** \(run.settings.text)\n" }
        md += "- **Command:**\n\n" + codeBlock(run.command) + "\n"
        return md
    }

    /// The grid the run was asked for, and the cells it holds per task.
    private static func settings(_ d: EvalDigest) -> String {
        let s = d.run.settings
        var rows: [[String]] = [
            ["Mode", s.mode],
            ["Tasks", s.tasks.joined(separator: ", ")],
            ["Policies", s.policies.joined(separator: ", ") + " (\(s.policies.count))"],
            ["Budgets", s.budgets.joined(separator: ", ")],
            ["Contexts", s.contexts.map(EvalFormat.context).joined(separator: ", ")],
            ["Depths", s.depths.map(EvalFormat.depth).joined(separator: ", ")],
            ["Seeds", s.seeds.map(String.init).joined(separator: ", ")],
        ]
        if !s.needleContexts.isEmpty { rows.append(["Needle contexts", s.needleContexts.map(EvalFormat.context).joined(separator: ", ")]) }
        if s.perplexityTokens > 0 { rows.append(["Perplexity tokens", String(s.perplexityTokens)]) }
        let counts = d.tasks.map { t in "\(t) \(d.run.cells.filter { $0.task == t }.count)" }
        rows.append(["Cells", "\(d.run.cells.count)" + (counts.isEmpty ? "" : " (" + counts.joined(separator: ", ") + ")")])
        let extra = d.policies.filter { !s.policies.contains($0) }
        if !extra.isEmpty { rows.append(["Policies in cells only", extra.joined(separator: ", ")]) }
        return "## Settings\n\n" + table(["Setting", "Value"], rows.map { $0.map(EvalFormat.cell) }) + "\n"
    }

    /// The headline table: per budget, the full cache then every policy, with every task's figure.
    private static func headline(_ d: EvalDigest) -> String {
        let hasPerplexity = d.tasks.contains("perplexity")
        let hasAttention = d.tasks.contains("attention-error")
        let bytesTask = d.retrievalTasks.first { t in d.run.cells.contains { $0.task == t } }
        var columns = ["Budget", "Policy"]
        for t in d.retrievalTasks { columns += [EvalFormat.taskTitle(t), "Δ vs Full"] }
        if hasPerplexity { columns.append("Perplexity") }
        if hasAttention { columns.append("Attn. error") }
        columns += ["Cache held", "Decode tok/s"]
        var rows: [[String]] = []
        var anyStopped = false
        for b in d.groupBudgets {
            let baselineBudget = d.baselineBudget(for: b)
            for policy in [EvalDigest.fullPolicy] + d.rowPolicies(at: b) {
                let full = EvalDigest.isFull(policy)
                let cellsOf: (String) -> [EvalCell] = { t in full ? d.baseline(t, budget: b) : d.cells(t, policy: policy, budget: b) }
                var name = full ? "**Full**" : EvalFormat.cell(policy)
                if full, let bb = baselineBudget, bb != b {
                    name = EvalDigest.isFullBudget(bb) ? "**Full** (full cache)" : "**Full** (at \(EvalFormat.cell(bb)))"
                }
                var row = [EvalFormat.cell(b), name]
                for t in d.retrievalTasks {
                    let cells = cellsOf(t)
                    row.append(EvalFormat.accuracy(EvalDigest.accuracy(cells)))
                    if full {
                        row.append(cells.isEmpty ? EvalFormat.missing : "baseline")
                    } else {
                        row.append(EvalDigest.accuracyDifference(cells, baseline: d.baseline(t, budget: b)).map { EvalFormat.points($0.points) }
                            ?? EvalFormat.missing)
                    }
                }
                if hasPerplexity {
                    let cells = cellsOf("perplexity")
                    if let p = EvalDigest.mean(cells.compactMap(\.perplexity)) {
                        let stopped = cells.contains { $0.stoppedAtContextLength == true }
                        anyStopped = anyStopped || stopped
                        row.append(EvalFormat.significant(p, digits: 4) + (stopped ? " †" : ""))
                    } else {
                        row.append(EvalFormat.missing)
                    }
                }
                if hasAttention {
                    let errors = cellsOf("attention-error").flatMap { $0.layerErrors ?? [] }.filter(\.isFinite)
                    row.append(EvalDigest.mean(errors).map { EvalFormat.significant($0) } ?? EvalFormat.missing)
                }
                let bytesCells = bytesTask.map(cellsOf) ?? []
                let all = full ? d.tasks.flatMap { d.baseline($0, budget: b) } : d.cells(policy: policy, budget: b)
                row.append(EvalDigest.mean((bytesCells.isEmpty ? all : bytesCells).map { Double($0.cacheBytes) }).map { EvalFormat.bytes($0) }
                    ?? EvalFormat.missing)
                row.append(EvalDigest.median(all.compactMap(\.decodeTokensPerSecond)).map(EvalFormat.rate) ?? EvalFormat.missing)
                rows.append(row)
            }
        }
        var md = "## Headline\n\n"
        md += "Rows are grouped by cache budget; each group starts with the full cache (**Full**), the baseline of the "
        md += "group. Accuracy is right answers / trials over every context, depth and seed of the task, so the "
        md += "number of trials behind each figure is in the cell. "
        md += "**Δ vs Full** is the policy's accuracy minus the full cache's on the same prompts, in percentage points. "
        if hasPerplexity { md += "**Perplexity** is the streaming perplexity of the text (mean over its cells). " }
        if hasAttention {
            md += "**Attn. error** is ‖o − o_full‖ / ‖o_full‖ of the last prompt token's attention output, mean over layers and prompts. "
        }
        md += "**Cache held** is the mean of the cache bytes really held after the prompt (`KVCache.byteCount`)"
        md += bytesTask.map { " over the \($0) prompts" } ?? ""
        md += "; **Decode tok/s** the median over the cells of each cell's median decode speed. "
        md += "“\(EvalFormat.missing)” marks a measurement the run does not hold.\n\n"
        md += table(columns, rows, rightAligned: Set(2..<columns.count))
        if anyStopped { md += "\n† Scoring stopped at the model's context length (the policy does not re-position keys).\n" }
        return md + "\n"
    }

    /// The main plots as images and the other decode and attention plots as links.
    private static func plotSection(_ d: EvalDigest, _ plots: [EvalPlots.Plot]) -> String {
        guard !plots.isEmpty else { return "" }
        var md = "## Plots\n\n"
        for family in ["accuracy", "decode"] {
            let members = plots.filter { $0.family == family }
            guard let first = members.first else { continue }
            md += image(first) + "\n\n"
            for other in members.dropFirst() {
                md += family == "accuracy" ? image(other) + "\n\n" : "- [\(other.caption)](\(path(other)))\n"
            }
            if members.count > 1 && family == "decode" { md += "\n" }
        }
        for plot in plots where plot.family == "perplexity" { md += image(plot) + "\n\n" }
        let attention = plots.filter { $0.family == "attention" }
        if !attention.isEmpty {
            md += "Attention-output error per layer: "
            md += attention.map { "[\(link($0.subject))](\(path($0)))" }.joined(separator: ", ") + ".\n\n"
        }
        return md
    }

    /// A scored task's accuracy per context per policy and budget, the full cache's per depth and
    /// context, and its heat maps.
    private static func perContext(_ d: EvalDigest, task: String, plots: [EvalPlots.Plot]) -> String {
        let contexts = d.contexts(task)
        let title = EvalFormat.taskTitle(task)
        var md = "## \(title) accuracy per context\n\n"
        md += "Right answers / trials at each context (every depth and seed), per budget; "
        md += "each group starts with the full cache.\n\n"
        var rows: [[String]] = []
        for b in d.groupBudgets {
            for policy in [EvalDigest.fullPolicy] + d.rowPolicies(at: b) {
                let full = EvalDigest.isFull(policy)
                let cells = full ? d.baseline(task, budget: b) : d.cells(task, policy: policy, budget: b)
                var row = [EvalFormat.cell(b), full ? "**Full**" : EvalFormat.cell(policy)]
                for c in contexts { row.append(EvalFormat.accuracy(EvalDigest.accuracy(cells.filter { $0.context == c }))) }
                row.append(EvalFormat.accuracy(EvalDigest.accuracy(cells)))
                rows.append(row)
            }
        }
        md += table(["Budget", "Policy"] + contexts.map(EvalFormat.context) + ["All"], rows, rightAligned: Set(2..<(contexts.count + 3)))

        // The full cache per depth and context: a failure of the model itself shows here.
        let depths = d.depths(task)
        if let fb = d.fullBudget, !depths.isEmpty {
            let cells = d.cells(task, policy: EvalDigest.fullPolicy, budget: fb)
            md += "\n### Full cache: \(task) accuracy per depth and context\n\n"
            md += "Right answers / trials of the full cache (budget `\(fb)`); a row or column below 100 % is a "
            md += "failure of the model, not of a policy.\n\n"
            var rows: [[String]] = []
            for depth in depths {
                let atDepth = cells.filter { $0.depth == depth }
                rows.append([EvalFormat.depth(depth)]
                    + contexts.map { c in EvalFormat.accuracy(EvalDigest.accuracy(atDepth.filter { $0.context == c })) }
                    + [EvalFormat.accuracy(EvalDigest.accuracy(atDepth))])
            }
            rows.append(["All"] + contexts.map { c in EvalFormat.accuracy(EvalDigest.accuracy(cells.filter { $0.context == c })) }
                + [EvalFormat.accuracy(EvalDigest.accuracy(cells))])
            md += table(["Depth"] + contexts.map(EvalFormat.context) + ["All"], rows, rightAligned: Set(1..<(contexts.count + 2)))
        }
        let maps = plots.filter { $0.family == "heatmap-\(task)" }
        if let fullMap = maps.first(where: { EvalDigest.isFull($0.subject) }) {
            md += "\n" + image(fullMap) + "\n"
        }
        let others = maps.filter { !EvalDigest.isFull($0.subject) }
        if !others.isEmpty {
            md += "\nHeat maps of \(task) accuracy over depth and context, the full cache's panel first, then one panel per budget: "
            md += others.map { "[\(link($0.subject))](\(path($0)))" }.joined(separator: ", ") + ".\n"
        }
        return md + "\n"
    }

    /// The attention-output error per policy and budget: mean, smallest, median and largest over
    /// the layers of the per-layer means over the prompts.
    private static func attentionErrors(_ d: EvalDigest) -> String {
        let task = "attention-error"
        guard d.run.cells.contains(where: { $0.task == task }) || d.tasks.contains(task) else { return "" }
        var md = "## Attention-output error per layer\n\n"
        md += "‖o − o_full‖ / ‖o_full‖ of the last prompt token's attention output over the policy's cache against the "
        md += "full cache, per layer averaged over the prompts; then the mean, smallest, median and largest over the "
        md += "layers (the largest with its layer).\n\n"
        var rows: [[String]] = []
        for b in d.groupBudgets {
            for policy in [EvalDigest.fullPolicy] + d.rowPolicies(at: b) {
                let full = EvalDigest.isFull(policy)
                let cells = (full ? d.baseline(task, budget: b) : d.cells(task, policy: policy, budget: b)).filter { $0.layerErrors != nil }
                if full && cells.isEmpty { continue } // the full cache's error is 0 by definition
                let perLayer = EvalDigest.meanLayerErrors(cells).filter(\.isFinite)
                let all = EvalDigest.meanLayerErrors(cells)
                var row = [EvalFormat.cell(b), full ? "**Full**" : EvalFormat.cell(policy), "\(cells.count)", "\(all.count)"]
                if let mean = EvalDigest.mean(perLayer), let lo = perLayer.min(), let med = EvalDigest.median(perLayer),
                   let hi = perLayer.max(), let worst = all.firstIndex(of: hi) {
                    row += [EvalFormat.significant(mean), EvalFormat.significant(lo), EvalFormat.significant(med),
                            "\(EvalFormat.significant(hi)) (layer \(worst))"]
                } else {
                    row += Array(repeating: EvalFormat.missing, count: 4)
                }
                rows.append(row)
            }
        }
        md += table(["Budget", "Policy", "Prompts", "Layers", "Mean", "Min", "Median", "Max"], rows, rightAligned: Set(2..<8))
        return md + "\n"
    }

    /// Perplexity, tokens scored, whether scoring stopped at the context length, and cache bytes.
    private static func perplexityDetails(_ d: EvalDigest) -> String {
        let task = "perplexity"
        guard d.run.cells.contains(where: { $0.task == task }) else { return "" }
        var md = "## Perplexity\n\n"
        md += "Streaming perplexity of the text with each policy's cache bounded; the cache bytes held at the end and "
        md += "the largest during the run. Budgets at which no policy scored the text are left out.\n\n"
        var rows: [[String]] = []
        let budgets = d.groupBudgets.filter { b in d.rowPolicies(at: b).contains { !d.cells(task, policy: $0, budget: b).isEmpty } }
        for b in budgets.isEmpty ? Array(d.groupBudgets.prefix(1)) : budgets {
            for policy in [EvalDigest.fullPolicy] + d.rowPolicies(at: b) {
                let full = EvalDigest.isFull(policy)
                let cells = full ? d.baseline(task, budget: b) : d.cells(task, policy: policy, budget: b)
                let ppl = EvalDigest.mean(cells.compactMap(\.perplexity))
                let stopped = cells.compactMap(\.stoppedAtContextLength)
                rows.append([
                    EvalFormat.cell(b), full ? "**Full**" : EvalFormat.cell(policy),
                    ppl.map { EvalFormat.significant($0, digits: 4) } ?? EvalFormat.missing,
                    cells.isEmpty ? EvalFormat.missing : "\(cells.compactMap(\.scoredTokens).reduce(0, +))",
                    stopped.isEmpty ? EvalFormat.missing : stopped.contains(true) ? "yes" : "no",
                    EvalDigest.mean(cells.map { Double($0.cacheBytes) }).map { EvalFormat.bytes($0) } ?? EvalFormat.missing,
                    cells.map(\.peakCacheBytes).max().map { EvalFormat.bytes(Double($0)) } ?? EvalFormat.missing,
                ])
            }
        }
        md += table(["Budget", "Policy", "Perplexity", "Scored tokens", "Stopped at context length", "Cache held", "Peak cache"],
                    rows, rightAligned: [2, 3, 5, 6])
        return md + "\n"
    }

    /// llama-bench's rows next to KVCompress's, with their ratio (nothing without rows).
    private static func llamaBench(_ d: EvalDigest) -> String {
        guard !d.run.llamaBench.isEmpty else { return "" }
        var md = "## llama.cpp in the same run\n\n"
        md += "`llama-bench` on the same model file, lengths and threads, with flash attention on and off, next to "
        md += "KVCompress's own figure; the ratio is KVCompress / llama.cpp.\n\n"
        let rows = d.run.llamaBench.map { r in
            [EvalFormat.cell(r.test), r.flashAttention ? "on" : "off", "\(r.threads)", EvalFormat.rate(r.llamaTokensPerSecond),
             EvalFormat.rate(r.kvcompressTokensPerSecond),
             r.llamaTokensPerSecond > 0 ? String(format: "%.2f", r.kvcompressTokensPerSecond / r.llamaTokensPerSecond) : EvalFormat.missing]
        }
        md += table(["Test", "Flash attention", "Threads", "llama.cpp tok/s", "KVCompress tok/s", "Ratio"], rows, rightAligned: Set(2..<6))
        return md + "\n"
    }

    // MARK: - Markdown helpers

    /// A GitHub-flavoured Markdown table; cells are used as given (escape them with
    /// ``EvalFormat/cell(_:)``), short rows are padded with "—".
    static func table(_ header: [String], _ rows: [[String]], rightAligned: Set<Int> = []) -> String {
        var md = "| " + header.map(EvalFormat.cell).joined(separator: " | ") + " |\n"
        md += "|" + header.indices.map { rightAligned.contains($0) ? " ---: " : " --- " }.joined(separator: "|") + "|\n"
        for row in rows {
            let padded = row + Array(repeating: EvalFormat.missing, count: max(0, header.count - row.count))
            md += "| " + padded.prefix(header.count).joined(separator: " | ") + " |\n"
        }
        return md
    }

    /// `text` in a fenced code block whose fence is longer than any run of backticks in it.
    static func codeBlock(_ text: String) -> String {
        var longest = 0, run = 0
        for ch in text {
            run = ch == "`" ? run + 1 : 0
            longest = max(longest, run)
        }
        let fence = String(repeating: "`", count: max(3, longest + 1))
        return fence + "\n" + text + "\n" + fence + "\n"
    }

    /// The plot's path relative to the output folder.
    private static func path(_ plot: EvalPlots.Plot) -> String { plotsFolder + "/" + plot.file }

    /// A Markdown image of the plot, its caption as alt text.
    private static func image(_ plot: EvalPlots.Plot) -> String {
        "![\(link(plot.caption))](\(path(plot)))"
    }

    /// `text` safe as a Markdown link text (brackets escaped).
    private static func link(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "[", with: "\\[")
            .replacingOccurrences(of: "]", with: "\\]")
    }
}
