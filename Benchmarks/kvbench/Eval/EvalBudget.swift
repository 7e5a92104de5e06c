import KVCompress

/// A cache budget of the evaluation, as written on the command line:
/// `full`, `N%` (of the full f16 cache's bytes at the cell's context: the default axis, equal memory
/// for every policy), `ratio=R` (kvpress's compression ratio), `NMB` / `NKB` / `NB` (absolute bytes
/// of the whole cache) or `Ntok` (entries per KV head).
enum EvalBudget: Equatable, Sendable {
    case full
    case fraction(Double)
    case ratio(Double)
    case bytes(Int)
    case tokens(Int)

    /// Parses one budget.
    /// - Throws: a message for the usage error.
    init(parsing text: String) throws(EvalUsageError) {
        let t = text.trimmingCharacters(in: .whitespaces)
        func number(_ s: Substring) -> Double? { Double(s).flatMap { $0.isFinite && $0 > 0 ? $0 : nil } }
        if t == "full" {
            self = .full
        } else if t.hasSuffix("%"), let v = number(t.dropLast()), v <= 100 {
            self = .fraction(v / 100)
        } else if t.hasPrefix("ratio="), let r = Double(t.dropFirst(6)), r >= 0, r < 1 {
            self = .ratio(r)
        } else if t.hasSuffix("MB"), let v = number(t.dropLast(2)) {
            self = .bytes(Int(v * 1_000_000))
        } else if t.hasSuffix("KB"), let v = number(t.dropLast(2)) {
            self = .bytes(Int(v * 1_000))
        } else if t.hasSuffix("B"), let v = Int(t.dropLast()), v > 0 {
            self = .bytes(v)
        } else if t.hasSuffix("tok"), let v = Int(t.dropLast(3)), v > 0 {
            self = .tokens(v)
        } else {
            throw EvalUsageError("--budgets: '\(text)' is not a budget; use full, N% (of the full f16 cache), "
                + "ratio=R (0 <= R < 1), NMB, NKB, NB or Ntok")
        }
    }

    /// The label reports and cell keys use.
    var label: String {
        switch self {
        case .full: return "full"
        case .fraction(let f): return "\(Self.trim(f * 100))%"
        case .ratio(let r): return "ratio=\(Self.trim(r))"
        case .bytes(let b): return b % 1_000_000 == 0 ? "\(b / 1_000_000)MB" : b % 1_000 == 0 ? "\(b / 1_000)KB" : "\(b)B"
        case .tokens(let n): return "\(n)tok"
        }
    }

    private static func trim(_ x: Double) -> String {
        x == x.rounded() ? String(Int(x)) : String(format: "%g", x)
    }

    /// Bytes of the full f16 cache holding `tokens` tokens in every layer and KV head.
    static func fullBytes(tokens: Int, shape: KVModelShape) -> Int {
        let entry = 2 * ElementType.f16.byteCount(elements: shape.headDim) + MemoryLayout<Int32>.size
        return tokens * shape.layers * shape.kvHeads * entry + shape.layers * shape.kvHeads * KVCache.metadataBytesPerHead
    }

    /// The library budget for a cell of `tokens` tokens and the cache bytes it allows (nil when
    /// the budget is not a byte size).
    func resolve(tokens: Int, shape: KVModelShape) -> (budget: KVBudget, bytes: Int?) {
        switch self {
        case .full: return (.compressionRatio(0), nil)
        case .fraction(let f):
            let b = Int(f * Double(Self.fullBytes(tokens: tokens, shape: shape)))
            return (.bytes(b), b)
        case .ratio(let r): return (.compressionRatio(r), nil)
        case .bytes(let b): return (.bytes(b), b)
        case .tokens(let n): return (.tokens(n), nil)
        }
    }
}

/// A usage error of `kvbench eval` / `kvbench report` (exit status 2).
struct EvalUsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
