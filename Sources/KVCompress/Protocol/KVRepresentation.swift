/// What a ``KVScoredPolicy`` does with the entries its selector does not keep: evict them, merge
/// them into kept ones, or keep them at a lower precision.
///
/// The extension point for representations that keep a cheaper form of dropped entries without
/// changing scorers or selectors.
public enum KVRepresentation: Sendable, Equatable {
    /// Dropped entries are removed and their memory freed.
    case evict
    /// Dropped entries are removed (their memory freed) after each one's value is folded into the
    /// kept entry of the same head whose key is most cosine-similar (kvpress `MergingPress`; see
    /// ``KVValueMerging``): keys stay as they are, so RoPE positions stay exact.
    /// - Parameters:
    ///   - similarityThreshold: dropped entries less similar than this to every kept key are not
    ///     merged (kvpress default 0).
    ///   - mergeFraction: only this fraction of the dropped entries above the threshold, the most
    ///     similar ones, are merged (kvpress default 1).
    case mergeValues(similarityThreshold: Float = 0, mergeFraction: Double = 1)
    /// Nothing is evicted: in a ZipCache cache (``KVEntryFormat/zipCache``) the kept entries are
    /// quantized at 4 bits and the others at 2 (``KVCache/quantizeBlock(layer:head:salient:)``), so
    /// the scorer and the selector choose each entry's precision instead of ZipCache's probe
    /// attention; with a head-adaptive selector (AdaKV's) each head's share of 4-bit entries follows
    /// the scores. Only entries still in the cache's f16 buffer are quantized (a prompt's, at its
    /// end); later blocks of decoded entries are split by ZipCache's own saliency. Other cache
    /// formats refuse (`KVError.invalidState`).
    case lowPrecision
}
