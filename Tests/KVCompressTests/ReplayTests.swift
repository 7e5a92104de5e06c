import Foundation
import XCTest
@testable import KVCompress

/// Replays (``KVReplay``): the compressor's order of steps and hooks, the cache rolled back after
/// each replay, and KVzip / KVCompose over synthetic replays against a scalar double-precision
/// transcription of their scoring and selection.
final class ReplayTests: XCTestCase {
    /// Records the hooks it sees; asks for one replay of the prompt's first three tokens (with
    /// gradients when `gradients`).
    struct Recorder: KVCachePolicy {
        final class Log: @unchecked Sendable { var events: [String] = [] }
        let log = Log()
        var gradients = false
        func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {}
        func replays(afterPrompt prompt: Range<Int>, cache: KVCache, state: inout KVNoState) -> [KVReplay] {
            log.events.append("replays \(prompt)")
            return [KVReplay([.text("again:"), .prompt(0..<3)], gradients: gradients)]
        }
        func afterReplay(_ context: KVLayerContext, replay: Int, state: inout KVNoState) throws(KVError) {
            log.events.append("replay \(replay) layer \(context.layer) \(context.phase) rows \(context.counts) at \(context.positions[0])"
                + (context.replayGradientNorms.map { " norms \($0)" } ?? ""))
        }
        func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout KVNoState, pool: ThreadPool?) throws(KVError) {
            log.events.append("afterPrompt")
        }
    }

    /// Runs replay tokens `tokens` of the synthetic prompt (its rows after the prompt) in chunks.
    static func replay(_ compressor: KVCompressor, _ p: SyntheticPrompt, tokens: Range<Int>, chunk: Int) throws {
        let qw = p.shape.heads * p.shape.headDim
        for start in stride(from: tokens.lowerBound, to: tokens.upperBound, by: chunk) {
            let end = min(tokens.upperBound, start + chunk)
            let step = try compressor.beginReplay(tokenCount: end - start, endsReplay: end == tokens.upperBound)
            for l in 0..<p.shape.layers {
                try compressor.append(layer: l, step: step, keys: p.rows(p.keys, layer: l, start..<end),
                                      values: p.rows(p.values, layer: l, start..<end))
                try p.queries[l].withUnsafeBufferPointer { q in
                    try compressor.afterAttention(layer: l, step: step, queries: q.baseAddress! + start * qw, preRoPEQueries: nil)
                }
            }
        }
    }

    func testReplaysRunAfterThePromptAndLeaveTheCache() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 20, seed: 1)
        let cache = p.makeCache(.f16)
        let recorder = Recorder()
        let compressor = try KVCompressor(policy: recorder, cache: cache, shape: shape, pool: nil)
        try p.prefill(compressor, chunk: 6, prompt: 10)
        XCTAssertEqual(compressor.pendingReplays, [KVReplay([.text("again:"), .prompt(0..<3)])])
        XCTAssertEqual(recorder.log.events, ["replays 0..<10"], "the cross-layer hook waits for the replays")
        XCTAssertThrowsError(try compressor.beginDecode()) { error in
            guard case .invalidState? = error as? KVError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try compressor.beginPrefill(tokenCount: 2))
        try Self.replay(compressor, p, tokens: 10..<15, chunk: 3)
        XCTAssertEqual(recorder.log.events, ["replays 0..<10",
                                             "replay 0 layer 0 replay rows [13, 13] at 10", "replay 0 layer 1 replay rows [13, 13] at 10",
                                             "replay 0 layer 0 replay rows [15, 15] at 13", "replay 0 layer 1 replay rows [15, 15] at 13",
                                             "afterPrompt"])
        XCTAssertEqual(compressor.pendingReplays, [])
        XCTAssertEqual(cache.nextPosition, 10)
        XCTAssertEqual(cache.positions(layer: 1, head: 1), (0..<10).map { Int32($0) })
        XCTAssertEqual(compressor.processedTokens, 10)
        XCTAssertThrowsError(try compressor.beginReplay(tokenCount: 1, endsReplay: true), "nothing pending")
        XCTAssertEqual(try compressor.beginDecode().positions, [10])
    }

    /// A replay with gradients: no hook during its forward pass, its entries stay until every
    /// layer is attributed (any order, each once, one norm per replay token), then it ends as usual.
    func testGradientReplayWaitsForEveryLayersAttribution() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 20, seed: 3)
        let cache = p.makeCache(.f16)
        var recorder = Recorder()
        recorder.gradients = true
        let compressor = try KVCompressor(policy: recorder, cache: cache, shape: shape, pool: nil)
        try p.prefill(compressor, chunk: 6, prompt: 10)
        try Self.replay(compressor, p, tokens: 10..<15, chunk: 3)
        XCTAssertEqual(recorder.log.events, ["replays 0..<10"], "the replay's hooks wait for the backward pass")
        XCTAssertEqual(cache.nextPosition, 15, "the replay's entries stay for the backward pass")
        XCTAssertThrowsError(try compressor.beginDecode()) { error in
            guard case .invalidState(let message)? = error as? KVError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("attributeReplay"), message)
        }
        let qw = shape.heads * shape.headDim
        func attribute(_ layer: Int, norms: [Float]) throws {
            try p.queries[layer].withUnsafeBufferPointer { q in
                try compressor.attributeReplay(layer: layer, queries: q.baseAddress! + 10 * qw, gradientNorms: norms)
            }
        }
        XCTAssertThrowsError(try attribute(1, norms: [1, 2])) { error in
            guard case .shapeMismatch? = error as? KVError else { return XCTFail("\(error)") }
        }
        try attribute(1, norms: [1, 2, 3, 4, 5])
        XCTAssertThrowsError(try attribute(1, norms: [1, 2, 3, 4, 5]), "each layer once") { error in
            guard case .invalidState? = error as? KVError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(cache.nextPosition, 15)
        try attribute(0, norms: [5, 4, 3, 2, 1])
        XCTAssertEqual(recorder.log.events, ["replays 0..<10",
                                             "replay 0 layer 1 replay rows [15, 15] at 10 norms [1.0, 2.0, 3.0, 4.0, 5.0]",
                                             "replay 0 layer 0 replay rows [15, 15] at 10 norms [5.0, 4.0, 3.0, 2.0, 1.0]",
                                             "afterPrompt"])
        XCTAssertEqual(cache.nextPosition, 10)
        XCTAssertEqual(compressor.pendingReplays, [])
        XCTAssertThrowsError(try attribute(0, norms: [1, 2, 3, 4, 5]), "nothing waits any more")
        XCTAssertEqual(try compressor.beginDecode().positions, [10])
    }

    func testRemoveEntriesRollsTheSequenceBack() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 12, seed: 2)
        let cache = p.makeCache(.f16)
        p.append(0..<12, to: cache)
        try cache.retain(layer: 0, head: 1, indices: [0, 5, 9, 11])
        try cache.removeEntries(from: 9)
        XCTAssertEqual(cache.positions(layer: 0, head: 1), [0, 5])
        XCTAssertEqual(cache.positions(layer: 1, head: 0), (0..<9).map { Int32($0) })
        XCTAssertEqual(cache.nextPosition, 9)
        XCTAssertEqual(cache.totalEntries, 2 + 9 * 3)
        XCTAssertThrowsError(try cache.removeEntries(from: -1))
    }

    /// Double-precision softmax probabilities of query `q` over key rows `keys` (`[row][d]`).
    static func softmax(_ q: ArraySlice<Float>, _ keys: [ArraySlice<Float>]) -> [Double] {
        let scale = 1 / Double(q.count).squareRoot()
        let logits = keys.map { k in zip(q, k).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } * scale }
        let top = logits.max()!
        let e = logits.map { exp($0 - top) }
        let sum = e.reduce(0, +)
        return e.map { $0 / sum }
    }

    func testKVzipOverSeveralChunksMatchesAScalarTranscription() throws {
        let shape = SyntheticPrompt.shape(layers: 3, heads: 4, kvHeads: 2, headDim: 16)
        let (length, d, g) = (40, 16, 2)
        let policy = try KVzip(budget: .compressionRatio(0.6), sinks: 2, chunkSize: 16, prefixLength: 3)
        let chunks = [3..<19, 19..<35, 35..<40]
        let replayLengths = chunks.map { $0.count + 6 }
        let p = SyntheticPrompt(shape: shape, length: length + replayLengths.reduce(0, +), seed: 3)
        let cache = p.makeCache(.f32)
        let compressor = try KVCompressor(policy: policy, cache: cache, shape: shape, pool: nil)
        try p.prefill(compressor, chunk: 16, prompt: length)
        XCTAssertEqual(compressor.pendingReplays.count, 3)
        XCTAssertEqual(compressor.pendingReplays[1], KVReplay([.text(KVzip.laterInstruction), .prompt(11..<19), .assistantTurn,
                                                              .prompt(19..<35)]))
        var start = length
        var reference = Array(repeating: Array(repeating: [Double](repeating: 0, count: length), count: 2), count: 3)
        for (chunk, r) in zip(chunks, replayLengths) {
            try Self.replay(compressor, p, tokens: start..<(start + r), chunk: 5)
            for l in 0..<3 {
                func key(_ t: Int, _ m: Int) -> ArraySlice<Float> { p.keys[l][((t * 2 + m) * d)..<((t * 2 + m) * d + d)] }
                for h in 0..<4 {
                    let m = h / g
                    for t in 0..<r {
                        let q = p.queries[l][(((start + t) * 4 + h) * d)..<(((start + t) * 4 + h) * d + d)]
                        let rows = Array(0..<min(2, chunk.lowerBound)) + Array(chunk) + Array(start...(start + t))
                        let probabilities = Self.softmax(q, rows.map { key($0, m) })
                        for (i, row) in rows.enumerated() where chunk.contains(row) {
                            reference[l][m][row] = max(reference[l][m][row], probabilities[i])
                        }
                    }
                }
            }
            start += r
        }
        XCTAssertEqual(cache.nextPosition, length)
        // Sinks above everything, then the globally lowest 60 % go (ties by flat index).
        let top = reference.flatMap { $0 }.flatMap { $0 }.max()!
        for l in 0..<3 { for m in 0..<2 { reference[l][m][0] = top + 1; reference[l][m][1] = top + 1 } }
        let flat = reference.flatMap { $0 }.flatMap { $0 }
        let dropped = Set(flat.indices.sorted { flat[$0] < flat[$1] || (flat[$0] == flat[$1] && $0 < $1) }
            .prefix(Int(Double(flat.count) * 0.6)))
        for l in 0..<3 {
            for m in 0..<2 {
                let expected = (0..<length).filter { !dropped.contains((l * 2 + m) * length + $0) }
                XCTAssertEqual(cache.positions(layer: l, head: m).map { Int($0) }, expected, "layer \(l) head \(m)")
            }
        }
        XCTAssertEqual(cache.totalEntries, flat.count - dropped.count)
        XCTAssertTrue((0..<3).allSatisfy { l in cache.positions(layer: l, head: 0).prefix(2) == [0, 1] }, "sinks kept")
        XCTAssertTrue(dropped.isSuperset(of: [2, length + 2, 2 * length + 2]), "the unscored prefix after the sinks goes first")
    }

    func testKVComposeMatchesAScalarTranscriptionWhateverTheReplaysChunks() throws {
        let shape = SyntheticPrompt.shape(layers: 3, heads: 4, kvHeads: 2, headDim: 16)
        let (length, d, g) = (30, 16, 2)
        var p = SyntheticPrompt(shape: shape, length: 2 * length, seed: 4)
        // Layer 0 attends flatly: its own composite curve is the lowest, and the maximum over the
        // layers that replaces it gives it the largest share.
        p.queries[0] = p.queries[0].map { $0 * 0.05 }
        var kept: [[[Int32]]] = []
        for (structured, chunk) in [(true, 30), (true, 7), (false, 4)] {
            let cache = p.makeCache(.f32)
            let compressor = try KVCompressor(policy: try KVCompose(budget: .tokens(12), structured: structured), cache: cache,
                                              shape: shape, pool: nil)
            try p.prefill(compressor, prompt: length)
            XCTAssertEqual(compressor.pendingReplays, [KVReplay([.prompt(0..<length)])])
            try Self.replay(compressor, p, tokens: length..<(2 * length), chunk: chunk)
            let positions = (0..<3).map { l in (0..<2).map { cache.positions(layer: l, head: $0) } }
            // Scalar transcription: max over the replay's queries, mean over the group, + the mean over heads.
            func query(_ l: Int, _ t: Int, _ h: Int) -> ArraySlice<Float> {
                let base = ((length + t) * 4 + h) * d
                return p.queries[l][base..<(base + d)]
            }
            func key(_ l: Int, _ row: Int, _ m: Int) -> ArraySlice<Float> {
                let base = (row * 2 + m) * d
                return p.keys[l][base..<(base + d)]
            }
            var scores: [[[Double]]] = []
            for l in 0..<3 {
                var layer = Array(repeating: [Double](repeating: 0, count: length), count: 2)
                for h in 0..<4 {
                    var task = [Double](repeating: 0, count: length)
                    for t in 0..<length {
                        let probabilities = Self.softmax(query(l, t, h), (0...(length + t)).map { key(l, $0, h / g) })
                        for j in 0..<length { task[j] = max(task[j], probabilities[j]) }
                    }
                    for j in 0..<length { layer[h / g][j] += task[j] / Double(g) }
                }
                let mean = (0..<length).map { j in (layer[0][j] + layer[1][j]) / 2 }
                for m in 0..<2 { for j in 0..<length { layer[m][j] += mean[j] } }
                scores.append(layer)
            }
            var curves: [[Double]] = []
            if structured {
                for layer in scores {
                    let a = layer[0].sorted(by: >), b = layer[1].sorted(by: >)
                    curves.append((0..<length).map { (a[$0] + b[$0]) / 2 })
                }
                let first = (0..<length).map { j in curves.map { $0[j] }.max()! }
                curves[0] = first
            } else {
                for layer in scores { for head in layer { curves.append(head.sorted(by: >)) } }
            }
            let flat = curves.flatMap { $0 }
            var counts = Array(repeating: 0, count: curves.count)
            let order = flat.indices.sorted { flat[$0] > flat[$1] }
            for i in order.prefix(12 * 3 * (structured ? 1 : 2)) { counts[i / length] += 1 }
            for l in 0..<3 {
                for m in 0..<2 {
                    let n = max(1, counts[structured ? l : l * 2 + m])
                    let expected = scores[l][m].indices.sorted { scores[l][m][$0] > scores[l][m][$1] }.prefix(n).sorted()
                    XCTAssertEqual(positions[l][m].map { Int($0) }, expected, "structured \(structured) layer \(l) head \(m)")
                }
                if structured { XCTAssertEqual(positions[l][0].count, positions[l][1].count) }
            }
            // The budget's 72 entries, however the layers share them; a head (or layer) ranked out
            // entirely still keeps one.
            XCTAssertEqual(cache.totalEntries, counts.reduce(0) { $0 + max(1, $1) } * (structured ? 2 : 1))
            XCTAssertEqual(counts.reduce(0, +) * (structured ? 2 : 1), 72)
            if structured { kept.append(positions.flatMap { $0 }) }
        }
        XCTAssertEqual(kept[0], kept[1], "a replay in chunks scores as one pass")
        XCTAssertNotEqual(Set((0..<3).map { kept[0][$0 * 2].count }).count, 1, "layers keep different counts")
    }
}
