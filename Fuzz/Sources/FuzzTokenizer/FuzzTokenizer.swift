// libFuzzer target for the tokenizer of the real default model (SmolLM2-135M-Instruct): the first
// input byte picks a mode, the rest is the payload.
//
// - 0, 1: the payload as text (invalid UTF-8 repaired to U+FFFD, as `String(decoding:)` does), encoded
//   with and without special-token parsing; every id must be in the vocabulary, and decoding must
//   give the text back whenever each of its bytes has a byte token (SmolLM2 lacks 21 of the 256).
// - 2: the payload as little-endian Int32 token ids, any value: `decode(_:)` must not trap,
//   `decode(validating:)` must throw exactly when an id is outside the vocabulary, and the
//   streaming decoder must produce the same text as `decode(_:)`.
// - 3: text as in 0, then its ids through the streaming decoder, one at a time.
//
// The model is read once, from `KVCOMPRESS_FUZZ_MODEL` when set, otherwise from the default model
// in the model cache (`KVCOMPRESS_CACHE`, default `~/.cache/kvcompress`); when it is absent the
// target exits with status 2 and says how to get it.
import Foundation
@testable import KVModel
import KVCore

/// The tokenizer under test and which bytes it can encode.
struct Loaded: Sendable {
    var tokenizer: Tokenizer
    /// Whether each byte has a byte-level token (bytes without one are dropped when encoding).
    var encodable: [Bool]
}

/// Loaded once, on first use (from `LLVMFuzzerInitialize`).
let loaded: Loaded = {
    let path = ProcessInfo.processInfo.environment["KVCOMPRESS_FUZZ_MODEL"]
        ?? ModelStore.cacheDirectory.appendingPathComponent(ModelStore.defaultFileName).path
    guard FileManager.default.fileExists(atPath: path) else {
        FileHandle.standardError.write(Data("""
            FuzzTokenizer: no model at \(path).
            Fetch the default model once (for example `swift run kvcompress generate --prompt hi` in the main
            package, which caches it), or set KVCOMPRESS_FUZZ_MODEL to a GGUF file with a gpt2 tokenizer.

            """.utf8))
        _exit(2)  // not exit(): LeakSanitizer would report the strings of this half-done setup
    }
    do {
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: path))
        let index = Dictionary(tokenizer.tokens.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let encodable = (0..<256).map { index[String(ByteLevel.scalar[$0])] != nil }
        return Loaded(tokenizer: tokenizer, encodable: encodable)
    } catch {
        FileHandle.standardError.write(Data("FuzzTokenizer: cannot load the tokenizer of \(path): \(error)\n".utf8))
        _exit(2)  // not exit(): LeakSanitizer would report the strings of this half-done setup
    }
}()

/// libFuzzer's one-time setup: loads the tokenizer before the first input (exit status 2 without it).
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    _ = loaded.tokenizer.vocabularySize
    return 0
}

/// libFuzzer's entry point: one input, `size` bytes at `data`; the first byte picks the mode.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size > 0, let data else { return 0 }
    let t = loaded.tokenizer
    let mode = data[0] % 4
    let payload = UnsafeBufferPointer(start: data + 1, count: size - 1)
    switch mode {
    case 0, 1, 3:
        let text = String(decoding: payload, as: UTF8.self)
        let ids: [Int32]
        do {
            ids = try t.encode(text, parseSpecial: mode != 1)
        } catch {
            preconditionFailure("encode threw \(error) for \(text.debugDescription)")
        }
        precondition(ids.allSatisfy { $0 >= 0 && Int($0) < t.vocabularySize }, "encode gave an id outside the vocabulary")
        let roundTrips = text.utf8.allSatisfy { loaded.encodable[Int($0)] }
        if mode == 3 {
            var decoder = t.makeStreamingDecoder()
            var streamed = ""
            for id in ids { streamed += decoder.append(id) }
            streamed += decoder.finish()
            if roundTrips { precondition(streamed == text, "streamed decode differs from the text") }
        } else {
            let decoded = t.decode(ids)
            if roundTrips { precondition(decoded == text, "decode(encode(s)) != s for \(text.debugDescription)") }
        }
    default:
        let count = payload.count / 4
        let ids = (0..<count).map { i in
            Int32(littleEndian: UnsafeRawBufferPointer(payload).loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
        }
        let lenient = t.decode(ids)
        let valid = ids.allSatisfy { $0 >= 0 && Int($0) < t.vocabularySize }
        do {
            let strict = try t.decode(validating: ids)
            precondition(valid, "decode(validating:) accepted an id outside the vocabulary")
            precondition(strict == lenient)
        } catch {
            precondition(!valid, "decode(validating:) threw \(error) for valid ids")
        }
        var decoder = t.makeStreamingDecoder()
        var streamed = ""
        for id in ids { streamed += decoder.append(id) }
        streamed += decoder.finish()
        precondition(streamed == lenient, "the streaming decoder and decode(_:) disagree")
    }
    return 0
}
