/// GPT-2's reversible map between bytes and printable Unicode scalars, used by byte-level BPE
/// vocabularies: printable Latin-1 bytes map to themselves, the others to U+0100 and up.
enum ByteLevel {
    /// `scalar[b]` is the vocabulary character of byte `b`.
    static let scalar: [Unicode.Scalar] = {
        var printable = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for b in printable { table[b] = Unicode.Scalar(UInt32(b))! }
        var next: UInt32 = 256
        for b in 0..<256 where !printable.contains(b) {
            table[b] = Unicode.Scalar(next)!
            next += 1
            printable.append(b)
        }
        return table
    }()

    /// The byte a vocabulary character stands for, or nil for characters outside the map.
    static let byte: [Unicode.Scalar: UInt8] = {
        var inverse: [Unicode.Scalar: UInt8] = [:]
        for (b, s) in scalar.enumerated() { inverse[s] = UInt8(b) }
        return inverse
    }()
}
