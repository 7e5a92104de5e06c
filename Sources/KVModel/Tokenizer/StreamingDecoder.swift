/// Turns tokens into text one at a time for streamed output: bytes of a character split across
/// tokens are held until the character is complete; bytes that can never form valid UTF-8 come
/// out as U+FFFD.
public struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private var pending: [UInt8] = []

    init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// Adds a token; returns the text that became complete (possibly empty).
    public mutating func append(_ id: Int32) -> String {
        pending += tokenizer.bytes(of: id)
        // Hold back a trailing lead byte whose sequence is not complete yet (at most 3 bytes).
        var keep = 0
        var i = pending.count - 1
        while i >= 0 && pending.count - i <= 3 {
            let b = pending[i]
            if b & 0xC0 == 0x80 { i -= 1; continue }  // continuation byte
            let need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
            if need > pending.count - i { keep = pending.count - i }
            break
        }
        let text = String(decoding: pending[..<(pending.count - keep)], as: UTF8.self)
        pending.removeFirst(pending.count - keep)
        return text
    }

    /// Flushes held bytes (as U+FFFD if incomplete).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }
}
