import Foundation

/// An evaluation's cells indexed by task, policy and budget, with the orders and baselines that the
/// report's tables and the plots share.
///
/// - Orders come from the data: policies in the order of `settings.policies`, then any other
///   policy in the order its first cell appears, with the full cache (`Full`) always first;
///   budgets and tasks likewise. No list of policies is written into the report code.
/// - The baseline of a budget is the full cache's cells at that budget when it ran there, else
///   its cells at its own budget (`full`), so every table can start with the full cache's row.
struct EvalDigest: Sendable {
    /// The catalog name of the full-cache baseline.
    static let fullPolicy = "Full"
    /// Task names whose cells are right or wrong (`correct`), shown as accuracies.
    static let retrievalTaskNames = ["passkey", "needle"]

    /// A count of right answers out of trials.
    struct Accuracy: Sendable, Equatable {
        var correct = 0
        var trials = 0
        /// `correct / trials` in percent, nil without trials.
        var percent: Double? { trials > 0 ? 100 * Double(correct) / Double(trials) : nil }
    }

    /// The evaluation.
    let run: EvalRun
    /// Every policy, the full cache first.
    let policies: [String]
    /// Every budget label.
    let budgets: [String]
    /// Every task.
    let tasks: [String]
    /// The tasks scored as right or wrong, in task order.
    let retrievalTasks: [String]
    /// The budget the full cache's own cells carry (preferably `full`), nil if it never ran.
    let fullBudget: String?

    /// The cells by task, policy and budget (see ``key(_:_:_:)``).
    private let index: [String: [EvalCell]]
    /// The budgets at which the full cache has cells.
    private let fullBudgets: Set<String>

    /// Indexes `run`.
    init(_ run: EvalRun) {
        self.run = run
        var index: [String: [EvalCell]] = [:]
        for cell in run.cells { index[Self.key(cell.task, cell.policy, cell.budget), default: []].append(cell) }
        self.index = index
        var policies = Self.ordered(run.settings.policies, then: run.cells.map(\.policy))
        if let i = policies.firstIndex(of: Self.fullPolicy) {
            policies.remove(at: i)
            policies.insert(Self.fullPolicy, at: 0)
        }
        self.policies = policies
        budgets = Self.ordered(run.settings.budgets, then: run.cells.map(\.budget))
        tasks = Self.ordered(run.settings.tasks, then: run.cells.map(\.task))
        let scored = Set(run.cells.filter { $0.correct != nil }.map(\.task))
        retrievalTasks = tasks.filter { Self.retrievalTaskNames.contains($0) || scored.contains($0) }
        var fullCounts: [String: Int] = [:]
        for c in run.cells where c.policy == Self.fullPolicy { fullCounts[c.budget, default: 0] += 1 }
        let fullOrder = Self.ordered([], then: run.cells.filter { $0.policy == Self.fullPolicy }.map(\.budget))
        fullBudget = fullOrder.first(where: Self.isFullBudget) ?? fullOrder.max { fullCounts[$0, default: 0] < fullCounts[$1, default: 0] }
        fullBudgets = Set(fullCounts.keys)
    }

    /// Whether `label` names the uncompressed cache (`full`, `100%`, `ratio=1`).
    static func isFullBudget(_ label: String) -> Bool {
        let l = label.lowercased().replacingOccurrences(of: " ", with: "")
        return ["full", "100%", "ratio=1", "ratio=1.0"].contains(l)
    }

    /// Whether `policy` is the full-cache baseline.
    static func isFull(_ policy: String) -> Bool { policy == fullPolicy }

    // MARK: - Cells

    /// The cells of `task` for `policy` at `budget`, in run order.
    func cells(_ task: String, policy: String, budget: String) -> [EvalCell] {
        index[Self.key(task, policy, budget)] ?? []
    }

    /// Every cell of `policy` at `budget`, all tasks.
    func cells(policy: String, budget: String) -> [EvalCell] {
        tasks.flatMap { cells($0, policy: policy, budget: budget) }
    }

    /// The budget whose full-cache cells are the baseline at `budget`: `budget` itself when the
    /// full cache has cells there, else ``fullBudget``.
    func baselineBudget(for budget: String) -> String? {
        fullBudgets.contains(budget) ? budget : fullBudget
    }

    /// The full cache's cells of `task` that are the baseline at `budget`.
    func baseline(_ task: String, budget: String) -> [EvalCell] {
        guard let b = baselineBudget(for: budget) else { return [] }
        return cells(task, policy: Self.fullPolicy, budget: b)
    }

    /// The budgets that get a group of rows in the tables: every budget where a policy other than
    /// the full cache ran or was asked to run, and every budget where the full cache ran other
    /// than the one its baseline rows already show; at least one (the full cache's own) when the
    /// run holds nothing else.
    var groupBudgets: [String] {
        let groups = budgets.filter { b in
            !rowPolicies(at: b).isEmpty || (b != fullBudget && fullBudgets.contains(b))
        }
        if groups.isEmpty, let fullBudget { return [fullBudget] }
        return groups
    }

    /// The policies other than the full cache with a row at `budget`: those with cells there, and
    /// those the settings asked for at a budget that is not the full cache's (shown as "—" when
    /// they have no cells, so a missing measurement is visible), except the full cache over another
    /// format (`Full+q8_0`), which runs at its own size only.
    func rowPolicies(at budget: String) -> [String] {
        let asked = run.settings.budgets.contains(budget) && !Self.isFullBudget(budget)
        return policies.filter { p in
            guard !Self.isFull(p) else { return false }
            if !cells(policy: p, budget: budget).isEmpty { return true }
            return asked && run.settings.policies.contains(p) && !EvalPolicyName(label: p).isFull
        }
    }

    /// The budgets other than the full cache's at which the policies ran (for plots with one
    /// series point per budget).
    var compressedBudgets: [String] {
        budgets.filter { b in !Self.isFullBudget(b) && policies.contains { !Self.isFull($0) && !cells(policy: $0, budget: b).isEmpty } }
    }

    /// The contexts of `task`: those the settings list for it and those in its cells, ascending.
    func contexts(_ task: String) -> [Int] {
        var set = Set(run.cells.filter { $0.task == task }.map(\.context))
        if Self.retrievalTaskNames.contains(task) {
            set.formUnion(task == "needle" ? run.settings.needleContexts : run.settings.contexts)
        }
        return set.sorted()
    }

    /// The depths of `task`: those in its cells, and for `passkey` (the task the settings' depths
    /// are for) those the settings list, ascending. Empty for a task without depths (`needle`).
    func depths(_ task: String) -> [Double] {
        var set = Set(run.cells.filter { $0.task == task }.compactMap(\.depth))
        if task == "passkey" { set.formUnion(run.settings.depths) }
        return set.sorted()
    }

    // MARK: - Statistics

    /// Right answers and trials over the scored cells in `cells`.
    static func accuracy(_ cells: [EvalCell]) -> Accuracy {
        var a = Accuracy()
        for c in cells {
            guard let correct = c.correct else { continue }
            a.trials += 1
            a.correct += correct > 0 ? 1 : 0
        }
        return a
    }

    /// The accuracy of `cells` minus the accuracy of `baseline`, in percentage points, over the
    /// task instances (context, depth, seed) both hold, and the number of such instances; when
    /// they share none, over all their cells (instances 0). Nil when either side has no trials.
    static func accuracyDifference(_ cells: [EvalCell], baseline: [EvalCell]) -> (points: Double, paired: Int)? {
        var base: [String: Int] = [:]
        for c in baseline { if let v = c.correct { base[instance(c)] = v > 0 ? 1 : 0 } }
        var mine = 0, theirs = 0, paired = 0
        for c in cells {
            guard let v = c.correct, let b = base[instance(c)] else { continue }
            mine += v > 0 ? 1 : 0
            theirs += b
            paired += 1
        }
        if paired > 0 { return (100 * Double(mine - theirs) / Double(paired), paired) }
        guard let p = accuracy(cells).percent, let q = accuracy(baseline).percent else { return nil }
        return (p - q, 0)
    }

    /// A task instance's identity across policies and budgets: context, depth and seed.
    static func instance(_ cell: EvalCell) -> String {
        "\(cell.task)|\(cell.context)|\(cell.depth.map { String($0) } ?? "-")|\(cell.seed)"
    }

    /// The arithmetic mean of the finite values (NaN and infinities are left out), nil for none.
    static func mean(_ values: [Double]) -> Double? {
        let finite = values.filter(\.isFinite)
        return finite.isEmpty ? nil : finite.reduce(0, +) / Double(finite.count)
    }

    /// The median of the finite values (mean of the middle two for an even count), nil for none.
    static func median(_ values: [Double]) -> Double? {
        let s = values.filter(\.isFinite).sorted()
        guard !s.isEmpty else { return nil }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Per layer, the mean over `cells` of their attention-output relative errors (layers that
    /// some cells lack are averaged over the cells that have them).
    static func meanLayerErrors(_ cells: [EvalCell]) -> [Double] {
        var sums: [Double] = [], counts: [Int] = []
        for c in cells {
            guard let errors = c.layerErrors else { continue }
            for (l, e) in errors.enumerated() where e.isFinite {
                if l >= sums.count {
                    sums.append(contentsOf: repeatElement(0, count: l - sums.count + 1))
                    counts.append(contentsOf: repeatElement(0, count: l - counts.count + 1))
                }
                sums[l] += e
                counts[l] += 1
            }
        }
        return zip(sums, counts).map { $1 > 0 ? $0 / Double($1) : .nan }
    }

    // MARK: - Helpers

    /// The index key of a task, policy and budget (joined by a unit separator, which no label holds).
    private static func key(_ task: String, _ policy: String, _ budget: String) -> String {
        task + "\u{1F}" + policy + "\u{1F}" + budget
    }

    /// `first`, then the elements of `rest` not yet seen, without duplicates, in order.
    private static func ordered(_ first: [String], then rest: [String]) -> [String] {
        var seen = Set<String>(), out: [String] = []
        for s in first + rest where seen.insert(s).inserted { out.append(s) }
        return out
    }
}
