import Foundation

/// Where the time of a session's decode steps goes, phase by phase, summed over the steps since it
/// was set (``LlamaSession/stepProfile``); `kvcompress generate --profile` prints it.
///
/// Each phase is timed on the session's thread around the work it starts, parallel regions
/// included (so a phase's time is wall-clock time, both threads' work inside it). The matrix
/// phases also count the weight bytes they read, so their read rate can be set beside the
/// machine's memory bandwidth. Timing costs nine clock reads per layer and step (about 0.1 %).
public struct DecodeStepProfile: Sendable {
    /// A part of a decode step, in the order a layer runs them.
    public enum Phase: Int, CaseIterable, Sendable {
        /// The RMS norms before attention and before the feed-forward block, and the residual adds.
        case norms
        /// The Q, K and V projections (one parallel region; the activations' quantization included).
        case qkvProjection
        /// Rotary position embedding of the queries and keys (and the pre-RoPE copy of the queries).
        case rope
        /// The cache append, the attention over the layer's cache and the policy's hook.
        case attention
        /// The attention output projection W_o.
        case outputProjection
        /// The gate and up projections (one parallel region).
        case gateUpProjection
        /// SiLU(gate) x up.
        case activation
        /// The down projection.
        case downProjection
        /// The final norm and the vocabulary projection (logits).
        case logits

        /// A short name for tables.
        public var name: String {
            switch self {
            case .norms: "norms, residuals"
            case .qkvProjection: "Q/K/V projection"
            case .rope: "RoPE"
            case .attention: "attention, policy"
            case .outputProjection: "W_o projection"
            case .gateUpProjection: "gate/up projection"
            case .activation: "SiLU x up"
            case .downProjection: "down projection"
            case .logits: "logits"
            }
        }
    }

    /// Decode steps recorded.
    public private(set) var steps = 0
    /// Seconds of every recorded step, from the start of its forward pass to its logits.
    public private(set) var stepSeconds = 0.0
    /// Seconds per phase, summed over the recorded steps (indexed by `Phase.rawValue`).
    public private(set) var phaseSeconds = [Double](repeating: 0, count: Phase.allCases.count)
    /// Weight bytes read per phase, summed over the recorded steps (zero for phases without a
    /// weight matrix).
    public private(set) var phaseBytes = [Int](repeating: 0, count: Phase.allCases.count)

    /// An empty profile.
    public init() {}

    /// Adds `seconds` (and `bytes` of weights read) to `phase`.
    mutating func add(_ phase: Phase, seconds: Double, bytes: Int = 0) {
        phaseSeconds[phase.rawValue] += seconds
        phaseBytes[phase.rawValue] += bytes
    }

    /// Counts one finished step of `seconds`.
    mutating func addStep(seconds: Double) {
        steps += 1
        stepSeconds += seconds
    }

    /// A table of microseconds per step and share of the step per phase, with the read rate of the
    /// matrix phases (GB/s), and the rest of the step (what no phase covers).
    public var report: String {
        guard steps > 0 else { return "decode step profile: no decode step recorded" }
        let n = Double(steps)
        let step = stepSeconds / n
        var lines = [String(format: "decode step profile, %d steps: %.1f us per step", steps, step * 1e6),
                     "  phase                  us/step   share   weights read"]
        func line(_ name: String, _ seconds: Double, _ bytes: Int) {
            var text = name.padding(toLength: 22, withPad: " ", startingAt: 0)
                + String(format: " %8.1f  %5.1f %%", seconds / n * 1e6, 100 * seconds / stepSeconds)
            if bytes > 0 {
                text += String(format: "   %5.1f MB at %5.1f GB/s", Double(bytes) / n / 1e6, Double(bytes) / seconds / 1e9)
            }
            lines.append("  " + text)
        }
        for phase in Phase.allCases { line(phase.name, phaseSeconds[phase.rawValue], phaseBytes[phase.rawValue]) }
        line("rest of the step", max(0, stepSeconds - phaseSeconds.reduce(0, +)), 0)
        return lines.joined(separator: "\n")
    }
}
