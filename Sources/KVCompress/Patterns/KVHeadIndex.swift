/// One KV head of one layer.
public struct KVHeadIndex: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The layer.
    public let layer: Int
    /// The KV head within the layer.
    public let head: Int

    /// Creates an index.
    public init(layer: Int, head: Int) {
        self.layer = layer
        self.head = head
    }

    /// Layer order, then head order.
    public static func < (a: KVHeadIndex, b: KVHeadIndex) -> Bool { (a.layer, a.head) < (b.layer, b.head) }

    /// `"layer.head"`.
    public var description: String { "\(layer).\(head)" }
}
