extension Array where Element == Int {
    /// The product of the elements (1 when empty), or nil when one is negative or it overflows: the
    /// element count of a shape read from a file, checked before anything is allocated from it.
    var checkedProduct: Int? {
        var product = 1
        for d in self {
            guard d >= 0 else { return nil }
            let (p, overflow) = product.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            product = p
        }
        return product
    }
}
