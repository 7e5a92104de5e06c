import Foundation
import KVCore

/// Reads token ids from JSON: either a bare array of integers or an object with a `prompt_ids`
/// array (the layout of the fixtures' `passkey_prompt.json`).
public enum PromptIDs {
    /// Loads the ids from `path`.
    /// - Throws: `KVError.io` when the file cannot be read, `.malformedFile` when it holds no ids.
    public static func load(path: String) throws(KVError) -> [Int32] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .io(path: path, reason: error.localizedDescription)
        }
        let object = try? JSONSerialization.jsonObject(with: data)
        let array = (object as? [Any]) ?? ((object as? [String: Any])?["prompt_ids"] as? [Any])
        guard let numbers = array, !numbers.isEmpty else {
            throw .malformedFile(path: path, field: "prompt_ids", offset: 0,
                                 reason: "expected a JSON array of token ids or an object with a 'prompt_ids' array")
        }
        var ids: [Int32] = []
        ids.reserveCapacity(numbers.count)
        for (i, n) in numbers.enumerated() {
            guard let v = (n as? NSNumber)?.int64Value, v >= 0, v <= Int64(Int32.max) else {
                throw .malformedFile(path: path, field: "prompt_ids[\(i)]", offset: 0, reason: "not a token id")
            }
            ids.append(Int32(v))
        }
        return ids
    }
}
