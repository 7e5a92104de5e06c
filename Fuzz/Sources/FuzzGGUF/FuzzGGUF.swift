// libFuzzer target for the GGUF reader: every input is parsed as a whole GGUF file by the same
// parser `GGUFFile(path:)` uses (on an in-memory copy instead of a mapping), and whatever parses
// goes on to what a model load reads: typed metadata accessors, tensor views and dequantization,
// the tokenizer built from the metadata (then a short encode/decode), and `LlamaModel(gguf:)` (then
// the embedding rows of the first and the last token, which read the mapped weights in place).
// Any input may throw a `KVError`; a trap, a sanitizer report or a hang is a bug.
@testable import KVModel
import KVCore

/// Bytes of f32 output above which a tensor is not dequantized (keeps each input fast).
let maxDequantizedElements = 1 << 18

/// libFuzzer's entry point: one input, `size` bytes at `data`, as a whole GGUF file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let file = try? GGUFFile(copying: bytes, path: "<fuzz input>") else { return 0 }
    for (key, _) in file.metadata {
        precondition(file.value(key) != nil, "metadata key '\(key)' parsed but not found")
        _ = try? file.int(key)
        _ = try? file.float(key)
        _ = try? file.string(key)
        _ = try? file.array(key)
        precondition(file.valueOffset(key).map { $0 >= 0 && $0 < size } ?? false, "value offset of '\(key)'")
    }
    for t in file.tensors {
        precondition(t.fileOffset >= file.dataOffset && t.fileOffset + t.byteCount <= size, "tensor '\(t.name)' bounds")
        guard let view = try? file.data(t.name) else { preconditionFailure("tensor '\(t.name)' listed but not found") }
        precondition(view.count == t.byteCount)
        if t.elementCount <= maxDequantizedElements {
            let values = try? file.dequantized(t.name)
            precondition(values?.count == t.elementCount)
        }
    }
    if let tokenizer = try? Tokenizer(gguf: file) {
        precondition(tokenizer.eosTokenID >= 0 && Int(tokenizer.eosTokenID) < tokenizer.vocabularySize)
        precondition(tokenizer.bosTokenID >= 0 && Int(tokenizer.bosTokenID) < tokenizer.vocabularySize)
        if let ids = try? tokenizer.encode("Hi <|im_start|>user 12 日本 🤖\n\n  x") {
            precondition(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabularySize }, "encode gave an id outside the vocabulary")
            _ = try? tokenizer.decode(validating: ids)
        }
    }
    if let model = try? LlamaModel(gguf: file, mode: .fast) {
        let row = UnsafeMutablePointer<Float>.allocate(capacity: model.config.hidden)
        defer { row.deallocate() }
        model.embed(0, into: row)
        model.embed(Int32(model.config.vocab - 1), into: row)
    }
    return 0
}
