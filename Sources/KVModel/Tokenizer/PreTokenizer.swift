/// Splits text into the pieces byte-level BPE runs on, as the `smollm` / GPT-2 pre-tokenizers do:
/// optionally every numeric character on its own first (Hugging Face `Digits(individual_digits=True)`,
/// llama.cpp's `\p{N}` rule for smollm, starcoder, ...), then the GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, matched by hand
/// over Unicode scalars (first alternative that matches at each position, like a regex engine).
struct PreTokenizer: Sendable {
    /// Whether numeric characters are split off individually first.
    let splitDigits: Bool

    static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    static func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace }

    /// The pieces of `text`, in order; concatenated they give `text` back.
    func split(_ text: String) -> [Substring.UnicodeScalarView] {
        let scalars = text.unicodeScalars
        var pieces: [Substring.UnicodeScalarView] = []
        var segmentStart = scalars.startIndex
        var i = scalars.startIndex
        while i < scalars.endIndex {
            if splitDigits && Self.isNumber(scalars[i]) {
                gpt2(scalars[segmentStart..<i], into: &pieces)
                let next = scalars.index(after: i)
                pieces.append(scalars[i..<next])
                segmentStart = next
                i = next
            } else {
                i = scalars.index(after: i)
            }
        }
        gpt2(scalars[segmentStart..<scalars.endIndex], into: &pieces)
        return pieces
    }

    private func gpt2(_ s: Substring.UnicodeScalarView, into pieces: inout [Substring.UnicodeScalarView]) {
        var i = s.startIndex
        let end = s.endIndex
        func after(_ j: String.Index) -> String.Index { s.index(after: j) }
        func run(from j: String.Index, while test: (Unicode.Scalar) -> Bool) -> String.Index {
            var k = j
            while k < end && test(s[k]) { k = after(k) }
            return k
        }
        while i < end {
            var matchEnd: String.Index? = nil
            let c = s[i]
            // 's 't 're 've 'm 'll 'd
            if c == "'" {
                let rest = s[after(i)...]
                for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] where rest.starts(with: suffix.unicodeScalars) {
                    matchEnd = s.index(after(i), offsetBy: suffix.unicodeScalars.count)
                    break
                }
            }
            // Optional single space, then a run of letters / numbers / other symbols.
            if matchEnd == nil {
                let j = c == " " ? after(i) : i
                if j < end {
                    let tests: [(Unicode.Scalar) -> Bool] = [
                        Self.isLetter, Self.isNumber,
                        { !Self.isSpace($0) && !Self.isLetter($0) && !Self.isNumber($0) },
                    ]
                    for test in tests where test(s[j]) {
                        matchEnd = run(from: j, while: test)
                        break
                    }
                }
            }
            // \s+(?!\S) then \s+
            if matchEnd == nil && Self.isSpace(c) {
                let k = run(from: i, while: Self.isSpace)
                if k == end {
                    matchEnd = k
                } else {
                    let back = s.index(before: k)
                    matchEnd = back > i ? back : k
                }
            }
            let e = matchEnd ?? after(i)
            pieces.append(s[i..<e])
            i = e
        }
    }
}
