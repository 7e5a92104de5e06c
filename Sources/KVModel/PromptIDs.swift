import Foundation
import KVCore

/// Reads token ids from JSON: either a bare array of integers or an object with a `prompt_ids`
/// array (the layout of the fixtures' `passkey_prompt.json`).
public enum PromptIDs {
    /// Loads the ids from `path`.
    /// - Throws: `KVError.io` when the file cannot be read; `.malformedFile` with the byte offset
    ///   of the problem when it is not JSON, holds no ids, or holds a value that is not a token id
    ///   (an integer in `0...Int32.max`); `.emptyPrompt` for an empty array.
    public static func load(path: String) throws(KVError) -> [Int32] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .io(path: path, reason: error.localizedDescription)
        }
        let root: JSONReader.Node
        do {
            root = try JSONReader.parse([UInt8](data))
        } catch {
            throw .malformedFile(path: path, field: "JSON", offset: error.offset, reason: error.message)
        }
        guard let list = root["prompt_ids"] ?? root.arrayOrNil, case .array(let items) = list.value else {
            throw .malformedFile(path: path, field: "prompt_ids", offset: root.offset,
                                 reason: "expected a JSON array of token ids or an object with a 'prompt_ids' array")
        }
        guard !items.isEmpty else { throw .emptyPrompt }
        var ids: [Int32] = []
        ids.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard let v = item.integer, v >= 0, v <= Int64(Int32.max) else {
                throw .malformedFile(path: path, field: "prompt_ids[\(i)]", offset: item.offset,
                                     reason: "not a token id (an integer in 0...\(Int32.max))")
            }
            ids.append(Int32(v))
        }
        return ids
    }
}

extension JSONReader.Node {
    /// The node itself when it is an array.
    fileprivate var arrayOrNil: JSONReader.Node? {
        if case .array = value { return self }
        return nil
    }
}
