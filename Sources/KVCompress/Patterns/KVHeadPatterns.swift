/// The per-model artifacts that some policies need (DuoAttention's gates, RazorAttention's
/// retrieval heads, QFilter's filters, ExpectedAttentionStats' query statistics, and the trained
/// networks and curves of KVzap, Fast KVzip and LU-KV), as ``KVPolicyCatalog`` hands them to the
/// policies it builds. KVModel ships the first four for its default model (`kvcompress calibrate`
/// makes them for another); the trained ones are loaded from their published formats.
public struct KVHeadPatterns: Sendable, Equatable {
    /// DuoAttention's pattern, if known.
    public var duo: DuoAttentionPattern?
    /// RazorAttention's retrieval heads, if known.
    public var razor: RazorHeads?
    /// QFilter's filters, if known.
    public var qFilters: QFilters?
    /// KVzap's surrogate, if known (none ships: load a published one with ``KVzapSurrogate/init(directory:)``).
    public var kvzap: KVzapSurrogate?
    /// LU-KV's budget curve, if known (none ships: load one with ``LUKVCurve/init(npyPath:)``).
    public var lukv: LUKVCurve?
    /// Offline Expected Attention statistics, if known (KVModel ships the default model's).
    public var expectedAttention: ExpectedAttentionStats?
    /// Fast KVzip's trained gates, if known (none ships: load published ones with ``FastKVzipGates/init(path:)``).
    public var fastKVzip: FastKVzipGates?
    /// RestoreKV's restore embeddings and adapter, if known (none ships: load published ones with
    /// ``RestoreKVArtifact/init(directory:)``).
    public var restoreKV: RestoreKVArtifact?

    /// Creates a set of patterns (none by default).
    public init(duo: DuoAttentionPattern? = nil, razor: RazorHeads? = nil, qFilters: QFilters? = nil, kvzap: KVzapSurrogate? = nil,
                lukv: LUKVCurve? = nil, expectedAttention: ExpectedAttentionStats? = nil,
                fastKVzip: FastKVzipGates? = nil, restoreKV: RestoreKVArtifact? = nil) {
        self.duo = duo
        self.razor = razor
        self.qFilters = qFilters
        self.kvzap = kvzap
        self.lukv = lukv
        self.expectedAttention = expectedAttention
        self.fastKVzip = fastKVzip
        self.restoreKV = restoreKV
    }

    /// Fast KVzip's gates.
    /// - Throws: `KVError.invalidParameter` saying how to get them when there are none.
    public func requireFastKVzip() throws(KVError) -> FastKVzipGates {
        try Self.require(fastKVzip, "Fast KVzip gates for this model (trained networks: download <model>/q<group>_dim16_sink16.pt "
            + "from Jang-Hyun/Fast-KVzip on Hugging Face and pass it, kvcompress --fastkvzip-gates FILE; none is published for "
            + "the default model)")
    }

    /// RestoreKV's artifact.
    /// - Throws: `KVError.invalidParameter` saying how to get one when there is none.
    public func requireRestoreKV() throws(KVError) -> RestoreKVArtifact {
        try Self.require(restoreKV, "a RestoreKV artifact for this model (trained restore embeddings and LoRA adapter: download "
            + "higokri/RestoreKV-<model> from Hugging Face and pass its directory, kvcompress --restorekv DIR; none is published "
            + "for the default model)")
    }

    /// The offline Expected Attention statistics.
    /// - Throws: `KVError.invalidParameter` saying how to get them when there are none.
    public func requireExpectedAttention() throws(KVError) -> ExpectedAttentionStats {
        try Self.require(expectedAttention, "Expected Attention statistics for this model (the default model's ship with KVModel's "
            + "resources; for another run 'kvcompress calibrate expected-attention' and pass its directory, --expected-attention-stats DIR)")
    }

    /// LU-KV's budget curve.
    /// - Throws: `KVError.invalidParameter` saying how to get one when there is none.
    public func requireLUKV() throws(KVError) -> LUKVCurve {
        try Self.require(lukv, "an LU-KV budget curve for this model and scorer (a .npy file of shape [99, layers, kv_heads] made by "
            + "LU-KV's generate_curve.sh; kvcompress --lukv-curve FILE; none is published for the default model)")
    }

    /// KVzap's surrogate.
    /// - Throws: `KVError.invalidParameter` saying how to get one when there is none.
    public func requireKVzap() throws(KVError) -> KVzapSurrogate {
        try Self.require(kvzap, "a KVzap surrogate for this model (a trained network: download nvidia/KVzap-mlp-<model> or "
            + "-linear-<model> from Hugging Face and pass its directory, kvcompress --kvzap DIR; none is published for the default model)")
    }

    /// QFilter's filters.
    /// - Throws: `KVError.invalidParameter` saying how to get them when there are none.
    public func requireQFilters() throws(KVError) -> QFilters {
        try Self.require(qFilters, "Q-filters for this model (the default model's ship with KVModel; for another run "
            + "'kvcompress calibrate qfilter' and pass its file)")
    }

    /// The DuoAttention pattern.
    /// - Throws: `KVError.invalidParameter` saying how to get one when there is none.
    public func requireDuo() throws(KVError) -> DuoAttentionPattern {
        try Self.require(duo, "a DuoAttention pattern for this model (the default model's ships with KVModel; for another run "
            + "'kvcompress calibrate duo' and pass its directory)")
    }

    /// RazorAttention's retrieval heads.
    /// - Throws: `KVError.invalidParameter` saying how to get them when there are none.
    public func requireRazor() throws(KVError) -> RazorHeads {
        try Self.require(razor, "RazorAttention retrieval heads for this model (the default model's ship with KVModel; for another "
            + "run 'kvcompress calibrate razor' and pass its file)")
    }

    /// `value`, or the error saying what is missing and how to get it (`expected`).
    private static func require<T>(_ value: T?, _ expected: String) throws(KVError) -> T {
        guard let value else { throw .invalidParameter(name: "pattern", value: "none", expected: expected) }
        return value
    }
}
