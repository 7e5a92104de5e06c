/// No compression: every entry stays (the baseline every policy is measured against).
public struct FullCache: KVCachePolicy {
    /// Creates the policy.
    public init() {}

    /// Keeps everything.
    public func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {}

    /// `"Full"`.
    public var name: String { "Full" }
}
