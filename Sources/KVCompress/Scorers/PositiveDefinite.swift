/// Small dense symmetric positive-definite matrices in double precision (the capacity matrices of
/// ``CapScorer``).
enum PositiveDefinite {
    /// The inverse of the `n x n` symmetric positive-definite matrix `a` (row-major) by Cholesky
    /// factorization, or nil when `a` is not positive definite to working precision.
    static func inverse(_ a: [Double], n: Int) -> [Double]? {
        precondition(a.count == n * n, "a must hold n x n elements")
        // a = L L^T, L lower triangular (row-major in l).
        var l = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0...i {
                var s = a[i * n + j]
                for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
                if i == j {
                    guard s > 0, s.isFinite else { return nil }
                    l[i * n + i] = s.squareRoot()
                } else {
                    l[i * n + j] = s / l[j * n + j]
                }
            }
        }
        // inv(L) column by column (lower triangular), then inv(a) = inv(L)^T inv(L).
        var li = [Double](repeating: 0, count: n * n)
        for c in 0..<n {
            li[c * n + c] = 1 / l[c * n + c]
            for i in (c + 1)..<max(c + 1, n) {
                var s = 0.0
                for k in c..<i { s -= l[i * n + k] * li[k * n + c] }
                li[i * n + c] = s / l[i * n + i]
            }
        }
        var inv = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0...i {
                var s = 0.0
                for k in i..<n { s += li[k * n + i] * li[k * n + j] }
                inv[i * n + j] = s
                inv[j * n + i] = s
            }
        }
        return inv
    }
}
