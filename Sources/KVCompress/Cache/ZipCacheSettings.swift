/// How a ZipCache cache (``KVEntryFormat/zipCache``) splits entries into salient (4-bit) and
/// unimportant (2-bit) ones; ZipCache's demo defaults.
///
/// The split is decided by a ``KVCompressor`` per layer and KV head:
///
/// - **Prompt.** While a prompt is prefilled, probe queries attend over the layer's cache: every
///   query of the prompt's last ``probeFraction`` positions that lies in the prompt's last step, and
///   about ``probeFraction`` of all other positions, chosen by a seeded hash of the position (the
///   same in every layer). Their softmax probabilities, summed over the probes and the query heads
///   of each KV head, give each entry an attention mass; at the end of the prompt each entry's
///   normalized score is its mass divided by the number of queries that can see it (`L - position`,
///   the paper's normalized attention), and per head the ``unimportantRatio`` of the buffered
///   entries with the lowest scores are quantized at 2 bits, the others at 4.
/// - **Decoding.** New entries wait in the f16 buffer; when it holds ``streamingGap`` entries, the
///   step's query's attention over them (summed over the group's query heads) splits them the same
///   way, and they are quantized as one more block.
///
/// Differences from the reference code, on purpose: already quantized entries are never quantized
/// again (the reference re-quantizes the whole cache every `streaming_gap` steps, from dequantized
/// values, which accumulates error): each block keeps its own key channel ranges, and values reuse
/// the channel scales of the head's first block (a later value outside them only widens its own
/// per-token range). Keys take their per-channel ranges over groups of up to 32 consecutive entries
/// of one precision (the reference: over all of a block's salient, or unimportant, entries, whose
/// ranges then span the whole prompt and its outliers; on the passkey grid that kept 40 % of the
/// answers where kivi2 kept 70 %). Probes are chosen per position rather than drawn with replacement (a prompt
/// prefilled in several steps does not know its length in advance), values are quantized per token
/// in blocks of 32 channels (`q4_1` / `q2_1`) rather than over all channels of all heads at once, and
/// each KV head quantizes its own entries (the reference gathers the n-th salient entry of every
/// head into one row).
public struct ZipCacheSettings: Sendable, Equatable {
    /// Fraction of each block's entries quantized at 2 bits (the rest at 4), in `0 ... 1`.
    public var unimportantRatio: Double
    /// Decode steps between two blocks: buffered f16 entries are quantized when this many wait.
    public var streamingGap: Int
    /// Fraction of the prompt's positions whose queries probe the attention (recent and random each).
    public var probeFraction: Double
    /// Seed of the random probe positions.
    public var seed: UInt64

    /// ZipCache's defaults: 40 % at 2 bits, blocks of 100 decode steps, 5 % + 5 % probes.
    public init(unimportantRatio: Double = 0.4, streamingGap: Int = 100, probeFraction: Double = 0.05, seed: UInt64 = 0) {
        self.unimportantRatio = unimportantRatio
        self.streamingGap = streamingGap
        self.probeFraction = probeFraction
        self.seed = seed
    }

    /// Whether the prompt position `position` is a random probe.
    func isRandomProbe(_ position: Int) -> Bool {
        var z = seed &+ UInt64(position) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53) < probeFraction
    }

    /// The number of the lowest-scored of `n` entries quantized at 2 bits.
    func unimportantCount(_ n: Int) -> Int { Int(unimportantRatio * Double(n)) }
}
