/// How the next token is chosen from the logits.
///
/// `temperature == 0` is greedy decoding (arg-max, ties to the lowest id). Otherwise logits are
/// divided by the temperature, restricted to the `topK` most likely tokens (0 = all), then to the
/// smallest set whose probability reaches `topP` (1 = all), and sampled with a generator seeded by
/// `seed`, so the same seed gives the same text.
public struct SamplingParameters: Sendable, Equatable {
    /// Softmax temperature; 0 means greedy.
    public var temperature: Float
    /// Keep only the `topK` most likely tokens; 0 keeps all.
    public var topK: Int
    /// Nucleus threshold in (0, 1]; 1 keeps all.
    public var topP: Float
    /// Seed of the random generator.
    public var seed: UInt64

    /// Greedy decoding.
    public static let greedy = SamplingParameters(uncheckedTemperature: 0, topK: 0, topP: 1, seed: 0)

    /// Validated parameters: temperature >= 0, topK >= 0, 0 < topP <= 1.
    public init(temperature: Float, topK: Int = 40, topP: Float = 0.95, seed: UInt64 = 0) throws(KVError) {
        guard temperature >= 0, temperature.isFinite else {
            throw .invalidParameter(name: "temperature", value: "\(temperature)", expected: "a finite value >= 0 (0 = greedy)")
        }
        guard topK >= 0 else {
            throw .invalidParameter(name: "top-k", value: "\(topK)", expected: ">= 0 (0 = no limit)")
        }
        guard topP > 0, topP <= 1 else {
            throw .invalidParameter(name: "top-p", value: "\(topP)", expected: "a value in (0, 1]")
        }
        self.init(uncheckedTemperature: temperature, topK: topK, topP: topP, seed: seed)
    }

    private init(uncheckedTemperature: Float, topK: Int, topP: Float, seed: UInt64) {
        self.temperature = uncheckedTemperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }
}
