import KVCore

/// One tensor of a GGUF file: name, shape, element type and where its bytes are.
public struct GGUFTensorInfo: Sendable, Equatable {
    /// The tensor's name (for example `blk.0.attn_q.weight`).
    public let name: String
    /// GGML dimensions, fastest-varying first (`[cols, rows]` for a matrix).
    public let dimensions: [Int]
    /// Element type.
    public let type: ElementType
    /// Byte offset of the data from the start of the file.
    public let fileOffset: Int
    /// Bytes of data.
    public let byteCount: Int

    /// Number of elements.
    public var elementCount: Int { dimensions.reduce(1, *) }
}
