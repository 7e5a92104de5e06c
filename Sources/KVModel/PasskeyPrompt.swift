/// The passkey-retrieval prompt used by the reference fixtures and the benchmarks: an instruction,
/// repeated filler sentences, the passkey sentence, more filler, then the question. With the
/// defaults it is exactly the fixtures' 1510-token prompt (passkey 71432 after 24 fillers, 36 after).
public struct PasskeyPrompt: Sendable, Equatable {
    /// The passkey digits.
    public var passkey: String
    /// Filler sentences before the passkey sentence.
    public var fillerBefore: Int
    /// Filler sentences after it.
    public var fillerAfter: Int

    static let instruction = "There is an important info hidden inside a lot of irrelevant text. "
        + "Find it and memorize it. I will quiz you about the important information there.\n"
    static let filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "

    /// A prompt; the defaults give the fixtures' prompt.
    public init(passkey: String = "71432", fillerBefore: Int = 24, fillerAfter: Int = 36) {
        precondition(fillerBefore >= 0 && fillerAfter >= 0, "negative filler count")
        self.passkey = passkey
        self.fillerBefore = fillerBefore
        self.fillerAfter = fillerAfter
    }

    /// The context (everything before the question).
    public var context: String {
        Self.instruction + String(repeating: Self.filler, count: fillerBefore)
            + "\nThe pass key is \(passkey). Remember it. \(passkey) is the pass key.\n"
            + String(repeating: Self.filler, count: fillerAfter)
    }

    /// The question the model answers by continuing.
    public var question: String { "\nWhat is the pass key? The pass key is" }

    /// Context and question together.
    public var text: String { context + question }
}
