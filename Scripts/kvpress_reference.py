#!/usr/bin/env python3
"""Kept sets that NVIDIA kvpress 0.5.5 (on Hugging Face transformers, float32, CPU) gives the default
model (its GGUF dequantized to float32 by transformers' GGUF loader) for many presses and compression
ratios, for the kvpress parity tests of KVModelTests (Tests/KVModelTests/Fixtures/kvpress_kept_more.json).

Every run prefills all the prompt ids in ONE forward pass inside `with press(model):` on a fresh
DynamicCache (kvpress's normal hook: the press compresses each layer right after its attention), exactly
as the shared fixture kvpress_kept_r050.json was made. The kept positions are then recovered:
  * token-evicting presses gather the kept rows out of the cache: each kept key row is matched exactly
    against the layer's keys from an uncompressed run (same attention implementation); the values must
    match too (except MergingPress, which rewrites values: for it the value-row norms after and before the
    merge are stored for a few layers, merged_value_norms / unmerged_value_norms);
  * presses that re-rotate the kept keys (KeyRerotationPress, FinchPress) report the indices they pass
    to KeyRerotationPress.rerotate_keys (the values are still checked);
  * presses that only mask (AdaKV, CriticalAdaKV, KVzip, KVgrad, KVCompose unstructured) leave
    `masked_key_indices` on each attention module: kept = the positions not masked;
  * ThinKPress zeroes key channels: kept_channels = the channels that are not all zero.
After the compressed prefill the greedy answer is decoded like kvpress's pipeline does ("whole" mode of
kvpress_answers_r050.json: first token from the prefill logits, then one token per step at the original
positions; at the cache length for the presses that re-rotate keys).

Install (kvpress 0.5.5 pins transformers < 5.3; the shared fixtures were made with transformers 5.2.0):

    python3 -m venv /tmp/kvp && /tmp/kvp/bin/pip install torch gguf numpy accelerate \\
        transformers==5.2.0 "fire<0.7" "cachetools<6" && /tmp/kvp/bin/pip install --no-deps kvpress==0.5.5
    # kvpress imports `datasets` at module level (only DuoAttention/ExpectedAttentionStats use it); either
    # pip install datasets, or put a stub package `datasets` with a load_dataset() that raises on the path.
    # A `kernels` package newer than transformers 5.2.0 knows breaks `import transformers`: uninstall it.

Run (about 11 minutes on one CPU thread; 3 GB of memory):

    /tmp/kvp/bin/python Scripts/kvpress_reference.py --gguf ~/.cache/kvcompress/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --ids ../shared/reference/fixtures/passkey_prompt.json \\
        --out Tests/KVModelTests/Fixtures/kvpress_kept_more.json \\
        [--check ../shared/reference/fixtures/kvpress_kept_r050.json] [--presses SnapKVPress,TOVAPress] [--ratios 0.5,0.8]

To (re)generate only some presses and keep the rest of an existing fixture, name them with --presses (and
--ratios) and pass the fixture to --merge-into (usually also as --out): the press/ratio entries run now are
replaced or added, everything else is kept as it is (same_as then only points to presses earlier in the
press table), e.g. (about 25 s for the model and the uncompressed reference, then 5 to 10 s per press and ratio):

    /tmp/kvp/bin/python Scripts/kvpress_reference.py --gguf ~/.cache/kvcompress/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --ids ../shared/reference/fixtures/passkey_prompt.json \\
        --presses 'ChunkPress(KeyDiffPress),ChunkPress(KnormPress)' --ratios 0.5,0.8 \\
        --merge-into Tests/KVModelTests/Fixtures/kvpress_kept_more.json --out Tests/KVModelTests/Fixtures/kvpress_kept_more.json

It writes one JSON file (layout in its "layout" key): per press and ratio the kept positions of every
[layer][kv_head] as a hex bitset, the constructor arguments, the near-tie indicator (score gap at the
kept/evicted boundary, where the press ranks each head by one score; for ChunkPress/BlockPress, whose inner
press ranks several subsets, step_gap: the smallest relative boundary gap over all those top-k steps, taken
from the scores the inner press returned in the run itself), the greedy answer, for MergingPress
the norms of the kept value rows after and before merging (--value-norm-layers, --value-norm-ratios), and the
list of kvpress presses skipped with the reason. --check compares the kept sets with an older fixture in the
kvpress_kept_r050.json layout and prints the differences.
"""
import argparse, contextlib, dataclasses, json, os, sys, time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch

torch.set_num_threads(1)

import transformers
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

import kvpress
from kvpress import (AdaKVPress, BlockPress, CapPress, ChunkKVPress, ChunkPress, CompactorPress, CriticalAdaKVPress,
                     CriticalKVPress, CURPress, DMSPress, EntropyGatedChunkKVPress, LUKVPress, ExpectedAttentionPress, FinchPress,
                     KeyDiffPress, KeyRerotationPress, KnormPress, KVComposePress, KVgradPress, KVzipPress,
                     LagKVPress, LeverageScorePress, MergingPress, NonCausalAttnPress, ObservedAttentionPress,
                     PyramidKVPress, RandomPress, SimLayerKVPress, SnapKVPress, StreamingLLMPress, ThinKPress,
                     TOVAPress)
import kvpress.presses.kvzip_press as kvzip_module
from kvpress.presses.expected_attention_with_stats import ExpectedAttentionStatsPress
from kvpress.presses.fastkvzip_press import FastKVzipGate, FastKVzipPress
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from artifact_stand_ins import fastkvzip_gate
from kvpress.presses.kvzap_press import KVzapModel, KVzapPress
from kvpress.presses.restorekv_press import RestoreKVPress

KVPRESS_VERSION = getattr(kvpress, "__version__", None)
if KVPRESS_VERSION is None:
    from importlib.metadata import version as _version
    KVPRESS_VERSION = _version("kvpress")

# --------------------------------------------------------------------------------------------------
# Presses. Each entry: name -> (factory(ratio) -> press, attention implementation, options).
#   kind: "tokens" (default) | "channels" (ThinK) | "lazy" (SimLayerKV: no ratio, a threshold)
#         | "threshold" (DMS: no ratio, its `thresholds` instead; threshold_gap stored)
#   rng: the press draws from torch's global RNG (runs are seeded with torch.manual_seed(seed))
# --------------------------------------------------------------------------------------------------

EA_NO_VNORM = dict(use_vnorm=False)  # kvpress warns that CriticalKV/CriticalAdaKV need use_vnorm=False


def _spec(factory, attn="sdpa", **options):
    return dict(factory=factory, attn=attn, **options)


PRESSES = {
    "SnapKVPress": _spec(lambda r: SnapKVPress(compression_ratio=r)),
    "SnapKVPress[eager-attn]": _spec(lambda r: SnapKVPress(compression_ratio=r), attn="eager"),
    "TOVAPress": _spec(lambda r: TOVAPress(compression_ratio=r)),
    "KnormPress": _spec(lambda r: KnormPress(compression_ratio=r)),
    "StreamingLLMPress": _spec(lambda r: StreamingLLMPress(compression_ratio=r)),
    "ExpectedAttentionPress": _spec(lambda r: ExpectedAttentionPress(compression_ratio=r)),
    "ObservedAttentionPress": _spec(lambda r: ObservedAttentionPress(compression_ratio=r), attn="eager"),
    "PyramidKVPress": _spec(lambda r: PyramidKVPress(compression_ratio=r)),
    "KeyDiffPress": _spec(lambda r: KeyDiffPress(compression_ratio=r)),
    "LagKVPress": _spec(lambda r: LagKVPress(compression_ratio=r)),
    "CURPress": _spec(lambda r: CURPress(compression_ratio=r)),
    "NonCausalAttnPress": _spec(lambda r: NonCausalAttnPress(compression_ratio=r)),
    "CapPress": _spec(lambda r: CapPress(compression_ratio=r)),
    "RandomPress(seed=0)": _spec(lambda r: RandomPress(compression_ratio=r, seed=0)),
    "RandomPress": _spec(lambda r: RandomPress(compression_ratio=r), rng=True),
    "LeverageScorePress": _spec(lambda r: LeverageScorePress(compression_ratio=r), rng=True),
    "CompactorPress": _spec(lambda r: CompactorPress(compression_ratio=r), rng=True),
    "ThinKPress": _spec(lambda r: ThinKPress(key_channel_compression_ratio=r), kind="channels"),
    "AdaKVPress(SnapKVPress)": _spec(lambda r: AdaKVPress(SnapKVPress(compression_ratio=r))),
    "AdaKVPress(ExpectedAttentionPress)": _spec(lambda r: AdaKVPress(ExpectedAttentionPress(compression_ratio=r))),
    "CriticalKVPress(SnapKVPress)": _spec(lambda r: CriticalKVPress(SnapKVPress(compression_ratio=r))),
    "CriticalKVPress(ExpectedAttentionPress)": _spec(
        lambda r: CriticalKVPress(ExpectedAttentionPress(compression_ratio=r, **EA_NO_VNORM))),
    "CriticalAdaKVPress(SnapKVPress)": _spec(lambda r: CriticalAdaKVPress(SnapKVPress(compression_ratio=r))),
    "CriticalAdaKVPress(ExpectedAttentionPress)": _spec(
        lambda r: CriticalAdaKVPress(ExpectedAttentionPress(compression_ratio=r, **EA_NO_VNORM))),
    "ChunkKVPress(SnapKVPress)": _spec(lambda r: ChunkKVPress(SnapKVPress(compression_ratio=r))),
    "EntropyGatedChunkKVPress(SnapKVPress)": _spec(
        lambda r: EntropyGatedChunkKVPress(SnapKVPress(compression_ratio=r))),
    "ChunkPress(SnapKVPress)": _spec(lambda r: ChunkPress(SnapKVPress(compression_ratio=r))),
    "ChunkPress(KeyDiffPress)": _spec(lambda r: ChunkPress(KeyDiffPress(compression_ratio=r))),
    "ChunkPress(KnormPress)": _spec(lambda r: ChunkPress(KnormPress(compression_ratio=r))),
    "BlockPress(SnapKVPress)": _spec(lambda r: BlockPress(SnapKVPress(compression_ratio=r))),
    "BlockPress(KeyDiffPress)": _spec(lambda r: BlockPress(KeyDiffPress(compression_ratio=r))),
    "KeyRerotationPress(SnapKVPress)": _spec(lambda r: KeyRerotationPress(SnapKVPress(compression_ratio=r))),
    "MergingPress(SnapKVPress)": _spec(lambda r: MergingPress(SnapKVPress(compression_ratio=r))),
    "FinchPress": _spec(lambda r: FinchPress(compression_ratio=r), finch=True),
    "KVzipPress": _spec(lambda r: KVzipPress(compression_ratio=r)),
    "KVzipPress(kvzip_plus_normalization=True)": _spec(
        lambda r: KVzipPress(compression_ratio=r, kvzip_plus_normalization=True)),
    # KVComposePress switches the model to eager attention for its whole prefill (and the replay).
    "KVComposePress": _spec(lambda r: KVComposePress(compression_ratio=r), ref_attn="eager"),
    "KVComposePress(structured=False)": _spec(lambda r: KVComposePress(compression_ratio=r, structured=False),
                                              ref_attn="eager"),
    "KVgradPress": _spec(lambda r: KVgradPress(compression_ratio=r)),
    "SimLayerKVPress": _spec(lambda t: SimLayerKVPress(lazy_threshold=t), kind="lazy"),
    "DMSPress(KnormPress)": _spec(lambda t: DMSPress(KnormPress(), threshold=t), kind="threshold", thresholds=[-19.0]),
    "DMSPress(KVzapPress(linear))": _spec(lambda t: DMSPress(kvzap("linear"), threshold=t), kind="threshold",
                                          thresholds=[0.0]),
    "DMSPress(KVzapPress(mlp))": _spec(lambda t: DMSPress(kvzap("mlp"), threshold=t), kind="threshold", thresholds=[0.0]),
    "LUKVPress": _spec(lambda r: lukv(r)),
    "FastKVzipPress": _spec(lambda r: fastkvzip(r)),
    "RestoreKVPress": _spec(lambda r: restorekv(r)),
    "ExpectedAttentionStatsPress": _spec(lambda r: ExpectedAttentionStatsPress(compression_ratio=r, stats_folder=STATS_DIR)),
}
# The default model's statistics as KVModel ships them (kvcompress calibrate expected-attention; kvpress's format).
STATS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "KVModel", "Resources",
                         "expected-attention-stats")
# KVzapPress loads nvidia/KVzap-<type>-<model> from the Hub and LUKVPress a budget curve from LU-KV's repository;
# none exists for SmolLM2, so they get the seeded stand-ins of Scripts/artifact_stand_ins.py (same formats) from
# --artifact-dir.
ARTIFACT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "KVModelTests", "Fixtures")


def restorekv(ratio):
    """RestoreKVPress with the stand-in adapter and embeddings of Scripts/artifact_stand_ins.py (restorekv/),
    loaded from --artifact-dir instead of the Hub (higokri/RestoreKV-<model> exists for other models only)."""
    from safetensors.torch import load_file
    press = RestoreKVPress(compression_ratio=ratio)
    path = os.path.join(ARTIFACT_DIR, "restorekv")

    def post_init_from_model(model):
        press.restore_embeddings = load_file(os.path.join(path, "restore_embeddings.safetensors"))[
            "restore_embeddings"].to(model.device, dtype=model.dtype)
        if press.adapter_name not in getattr(model, "peft_config", {}):
            model.load_adapter(path, adapter_name=press.adapter_name)
        model.disable_adapters()
        press.restore_model_name = path
    press.post_init_from_model = post_init_from_model
    return press


def kvzap(model_type):
    press = KVzapPress(model_type=model_type)
    press.kvzap_model = KVzapModel.from_pretrained(os.path.join(ARTIFACT_DIR, f"kvzap-{model_type}"))
    press.post_init_from_model = lambda model: None  # keep the stand-in (no Hub download)
    return press


def fastkvzip(ratio):
    """FastKVzipPress with the stand-in gates of Scripts/artifact_stand_ins.py for SmolLM2 (30 layers, 576 inputs,
    3 KV heads x 3, width 16, 16 sinks; none is published), built from its formula (13 MB: not stored)."""
    press = FastKVzipPress(compression_ratio=ratio)
    gates = []
    for layer in range(30):
        gate = FastKVzipGate(layer, 576, 3, 3, torch.float32, 16, 16)
        gate.load_state_dict(fastkvzip_gate(layer, 576, 3, 3, 16, 16))
        gates.append(gate)
    press.gates = gates  # set: post_init_from_model loads nothing
    return press


def lukv(ratio):
    press = LUKVPress(compression_ratio=ratio)  # ExpectedAttentionPress(epsilon=2e-2), sink 4, window 1
    press._budget_curves = np.load(os.path.join(ARTIFACT_DIR, "lukv-curve.npy"))  # loaded: no download
    return press
# Not run by default (to keep the fixture small; pass them with --presses): RandomPress without a seed
# draws from torch's global RNG (reproducible only through torch.manual_seed and torch's generator);
# KVComposePress(structured=False) leaves its replayed copy of the context in the cache (2L entries,
# only the first L masked).
OPTIONAL = {"RandomPress", "KVComposePress(structured=False)"}
# SimLayerKV has no compression ratio (its default lazy_threshold=1.0 is a no-op): it runs at a lazy
# threshold instead (kvpress docs: Llama3 0.9, Llama2 0.65, Mistral 0.8, Qwen 0.85); --simlayerkv-thresholds.
SIMLAYERKV_THRESHOLDS = "0.9"
# MergingPress rewrites the values of the kept rows: the value-row norms of these layers are stored (all KV
# heads) at the --value-norm-ratios, after the merge (the cache) and before it (the inner press's kept rows).
VALUE_NORM_LAYERS = "0,15,29"
VALUE_NORM_RATIOS = "0.5"

# kvpress behaviours a reimplementation must copy (checked on this prompt where marked).
QUIRKS = {
    "n_kept": "compute_n_kept(L, r) = max(1, int(L * (1 - r))) in float64: L=1510 gives 755 at 0.5 and "
              "int(301.99999999999994) = 301 at 0.8",
    "ties": "torch.topk (CPU) does not break ties by position (it partially sorts; for 2000 equal values and "
            "k=1000 it returns the upper half, for 20 equal values and k=5 indices 11..15): where score_gap is 0 the "
            "kept set among the tied positions is torch's choice (boundary_ties lists those heads)",
    "PyramidKVPress": "per-layer budget round(max_num - layer * (max_num - min_num) / (n_layers - 1)) with "
                      "Python round (half to even); when min_num < window_size (here at 0.8) it falls back to "
                      "max(1, round(L * (1 - r))) = 302, not compute_n_kept's 301",
    "ChunkKVPress": "budget in chunks: n_chunks = ceil(L / 20) (the 10-token tail is a chunk), keep "
                    "max(1, int(n_chunks * (1 - r))) chunks ranked by the mean over the chunk of the head-summed "
                    "scores, so 750 (0.5) and 290 (0.8) tokens here; same positions for every head",
    "ChunkPress": "int(len_chunk * (1 - r)) per 1024-token chunk: 512 + 243 (0.5), 204 + 97 (0.8); the inner "
                  "press scores each chunk alone (hidden_states, keys and values sliced to the chunk, so KeyDiff's "
                  "anchor is the mean normalized key of the chunk) but gets the full-length kwargs: SnapKV's window "
                  "queries are the chunk's last 64 hidden states rotated with the cos/sin of the last 64 prompt "
                  "positions (1446..1509), not their own; keys keep their original rotation. No score_gap is "
                  "stored for ChunkPress/BlockPress (the inner press never scores all L positions at once; "
                  "step_gap holds the smallest relative gap over its per-chunk / per-block top-k instead); "
                  "exact ties at a chunk boundary (found by re-deriving the per-chunk top-k from the uncompressed "
                  "keys): ChunkPress(KnormPress) in both chunks of every layer-0 head at 0.5 and 0.8 (as "
                  "KnormPress: layer-0 keys depend only on the token and RoPE keeps the norm), "
                  "ChunkPress(KeyDiffPress) at 0.8 in layer 5 head 0 chunk 0 (positions 360 and 991, 991 kept)",
    "BlockPress": "n_kept = compute_n_kept(L, r) for the whole layer; kept starts as [0, n_kept) unscored, then for "
                  "each block [i, i + 128) from i = n_kept (the last block shorter: 1395..1509 at 0.5, 1453..1509 "
                  "at 0.8) the inner press scores kept + block alone (kept indices in the previous top-k order, "
                  "then the block in order) and keeps its top n_kept: KeyDiff's anchor is the mean normalized key "
                  "of that subset; positions never re-enter once evicted. The hidden states it passes are "
                  "gathered per KV head from hidden_states.view(L, n_kv_heads, hidden / n_kv_heads), i.e. slice h "
                  "of the hidden vector from head h's selected tokens (a mix of tokens when heads differ); kwargs "
                  "(position embeddings) stay full-length. One exact tie on this prompt (re-derived): "
                  "BlockPress(KeyDiffPress) at 0.5, layer 1 head 2, block 1011: positions 492 and 838, 838 kept",
    "LagKVPress": "scores are within-partition ranks / 128 (identical value sets in every partition), so every "
                  "head has a tie at the boundary; sinks [0, 4) and the last 128 + (L - 4) % 128 = 226 "
                  "positions score 1",
    "RandomPress": "with seed: a fresh torch.Generator seeded the same for every layer, so every layer keeps the "
                   "same positions (heads differ); without seed: torch's global RNG (different per layer)",
    "LeverageScorePress": "random Gaussian sketch from torch's global RNG each call (unseeded); "
                          "other_seeds gives the fraction of kept entries shared with another seed",
    "CompactorPress": "leverage part random as in LeverageScorePress; blending defaults to the compression "
                      "ratio; first 8 and last 4 positions always kept",
    "KVzipPress": "the chat-template prefix length (24 tokens for this GGUF's template, which adds a default "
                  "system prompt) is subtracted from the context even though this prompt has no template: "
                  "positions 4..23 are never scored (score 0) and are evicted in every layer and head; sinks "
                  "[0, 4) get max + 1; global bottom-k over all layers and heads (masking, cache length unchanged)",
    "KVgradPress": "same prefix quirk as KVzipPress",
    "KVComposePress": "the whole prefill (and a replay of the context) runs with eager attention; structured "
                      "mode keeps the same count in every head of a layer, counts differ per layer",
    "FinchPress": "needs context + delimiter + question in one prefill; the delimiter (any id absent from the "
                  "prompt) was put before the last 11 ids (the question), so the window is the 11 question "
                  "tokens; keys are re-rotated to positions 0..n_kept-1 and decoding continues at n_kept",
    "KeyRerotationPress": "kept set = inner press's; keys re-rotated, decoding continues at n_kept",
    "MergingPress": "kept set = inner press's (keys unchanged); each evicted value is folded into the kept row "
                    "whose key is most cosine-similar, weighted by max(sim, 0) * |v_e| / (|v_e| + |v_t| + 1e-6) "
                    "with |v_t| the target's norm before merging, kept = (v_t + sum w v_e) / (1 + sum w) (float32); "
                    "merged_value_norms / unmerged_value_norms hold the value-row norms after / before it",
    "AdaKVPress": "head budgets vary, their sum per layer is n_heads * n_kept; masking only",
    "SimLayerKVPress": "lazy layers keep [0, n_initial) and the last n_recent - n_last = 1023 positions; the "
                       "lazy test sums the last query's attention (over keys 0..L-2) on the first 4 and last 1024 "
                       "of those keys",
    "ThinKPress": "zeroes the int(64 * r) lowest channels of every key of a head (32 at 0.5, 51 at 0.8)",
}

SKIPPED = {
    "QFilterPress": "needs trained filters downloaded from the HF hub (nthngdy/<model>_qfilt); none for SmolLM2",
    "ExpectedAttentionStatsPress": "needs precomputed query statistics from the HF hub (or a booksum dataset run)",
    "DuoAttentionPress": "needs a downloaded DuoAttention head pattern (or on-the-fly scoring on the booksum dataset)",
    "KVzapPress": "needs a trained KVzap surrogate model from the HF hub",
    "FastKVzipPress": "needs trained gates from the HF hub (Jang-Hyun/Fast-KVzip)",
    "LUKVPress": "needs a downloaded per-layer/per-head pruning curve (only Llama-3.1-8B shipped)",
    "DMSPress": "threshold-based (no compression ratio); meant to wrap KVzapPress (trained surrogate)",
    "DecodingPress": "decoding-time compression only (prefill untouched)",
    "CompressionRatioDecodingPress": "decoding-time compression only",
    "PrefillDecodingPress": "dispatcher: its prefill half is the wrapped prefill press, its decoding half decoding-only",
    "CAMPress": "decoding-time press that merges evicted values (Bernoulli-sampled)",
    "PerLayerCompressionPress": "experimental, flash-attention only (per its docstring); = inner press with per-layer ratios",
    "ComposedPress": "composition of other presses (each runs its own hook on the already compressed cache)",
    "ScorerPress": "abstract base class",
    "BasePress": "abstract base class",
    "KVPressTextGenerationPipeline": "not a press (the pipeline)",
}

# --------------------------------------------------------------------------------------------------


def bitset_hex(positions, length):
    data = bytearray((length + 7) // 8)
    for p in positions:
        data[p >> 3] |= 1 << (p & 7)
    return data.hex()


def bitset_positions(hex_string, length):
    """Inverse of bitset_hex."""
    data = bytes.fromhex(hex_string)
    return [p for p in range(length) if data[p >> 3] >> (p & 7) & 1]


def set_attn(model, impl):
    if model.config._attn_implementation == impl:
        return
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:
        model.config._attn_implementation = impl
    assert model.config._attn_implementation == impl


class ScoreCapture:
    """Wraps a ScorerPress's `score` to keep, per layer, the full-length score tensor it returned; with
    every_call (the inner press of ChunkPress/BlockPress), also every score tensor it returned, in call order
    (calls[layer] = [scores of chunk 0, chunk 1, ...] or [scores of block step 0, 1, ...])."""

    def __init__(self, press, length, every_call=False):
        self.press, self.length, self.scores, self.calls = press, length, {}, {}
        original = press.score

        def score(module, hidden_states, keys, values, attentions, kwargs):
            s = original(module, hidden_states, keys, values, attentions, kwargs)
            if keys.shape[2] == self.length and int(module.layer_idx) not in self.scores:
                self.scores[int(module.layer_idx)] = s.detach().float().clone()
            if every_call:
                self.calls.setdefault(int(module.layer_idx), []).append(s.detach().clone())
            return s

        press.score = score


@contextlib.contextmanager
def capture_rerotation():
    """Records the (sorted) indices that KeyRerotationPress.rerotate_keys receives, per layer."""
    captured = {}
    original = KeyRerotationPress.rerotate_keys

    def rerotate_keys(module, indices, keys):
        captured[int(module.layer_idx)] = indices.detach().clone()
        return original(module, indices, keys)

    KeyRerotationPress.rerotate_keys = staticmethod(rerotate_keys)
    try:
        yield captured
    finally:
        KeyRerotationPress.rerotate_keys = staticmethod(original)


def constructor_args(press):
    """The press's constructor arguments (dataclass init fields; CriticalKVPress has a plain __init__)."""
    names = [f.name for f in dataclasses.fields(press) if f.init] if dataclasses.is_dataclass(press) else []
    if isinstance(press, CriticalKVPress):
        names += ["epsilon", "first_stage_ratio"]
    args = {}
    for n in names:
        v = getattr(press, n, None)
        if isinstance(v, str) and os.path.isabs(v):  # a file of this repository: stored relative to its root
            v = os.path.relpath(v, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        if isinstance(v, (int, float, str, bool, type(None))):
            args[n] = v
    return args


def scorer_of(press):
    """The ScorerPress whose score ranks the tokens (the press itself or the wrapped one)."""
    from kvpress.presses.scorer_press import ScorerPress
    if isinstance(press, ScorerPress):
        return press
    inner = getattr(press, "press", None)
    return inner if isinstance(inner, ScorerPress) else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", help="the default model's GGUF file")
    parser.add_argument("--ids", help="JSON token ids (an array, or an object with 'prompt_ids')")
    parser.add_argument("--out", help="output JSON")
    parser.add_argument("--presses", default=None, help="comma-separated press names (default: all but " + ", ".join(sorted(OPTIONAL)) + "); see --list")
    parser.add_argument("--ratios", default="0.5,0.8", help="compression ratios (default 0.5,0.8)")
    parser.add_argument("--answer-ratios", default="0.5", help="ratios for which the greedy answer is decoded")
    parser.add_argument("--answer-tokens", type=int, default=8, help="new tokens per answer (default 8)")
    parser.add_argument("--seeds", default="0,1",
                        help="torch.manual_seed values for presses drawing from torch's global RNG: the first "
                             "gives the stored kept sets, the others only the overlap statistic")
    parser.add_argument("--question-tokens", type=int, default=None,
                        help="FinchPress: the last N ids are the question (default: the prompt file's "
                             "n_question_tokens)")
    parser.add_argument("--simlayerkv-thresholds", default=SIMLAYERKV_THRESHOLDS,
                        help=f"SimLayerKVPress lazy thresholds, used instead of --ratios (default {SIMLAYERKV_THRESHOLDS})")
    parser.add_argument("--artifact-dir", default=None,
                        help="directory with kvzap-linear/, kvzap-mlp/ and lukv-curve.npy (default Tests/KVModelTests/Fixtures)")
    parser.add_argument("--value-norm-layers", default=VALUE_NORM_LAYERS,
                        help=f"MergingPress: layers whose kept value-row norms are stored (default {VALUE_NORM_LAYERS})")
    parser.add_argument("--value-norm-ratios", default=VALUE_NORM_RATIOS,
                        help=f"MergingPress: ratios at which they are stored (default {VALUE_NORM_RATIOS}; empty: none)")
    parser.add_argument("--merge-into", default=None, metavar="FIXTURE",
                        help="start from this existing output (usually the same file as --out): only the "
                             "press/ratio entries run now are replaced or added, every other entry is kept as it "
                             "is; layout, quirks and skipped are rewritten from this script. Refused when the "
                             "kvpress/transformers/torch versions, model, prompt length or full-cache answer differ")
    parser.add_argument("--check", default=None, help="compare with a fixture in the kvpress_kept_r050.json layout")
    parser.add_argument("--list", action="store_true", help="list the press names and exit")
    args = parser.parse_args()

    if args.artifact_dir:
        global ARTIFACT_DIR
        ARTIFACT_DIR = args.artifact_dir
    if args.list:
        print("\n".join(PRESSES))
        return
    if not (args.gguf and args.ids and args.out):
        parser.error("--gguf, --ids and --out are required")
    names = [n for n in PRESSES if n not in OPTIONAL] if not args.presses else [n.strip() for n in args.presses.split(",") if n.strip()]
    for n in names:
        if n not in PRESSES:
            sys.exit(f"unknown press {n!r}; --list shows the names")
    ratios = [float(r) for r in args.ratios.split(",")]
    answer_ratios = {float(r) for r in args.answer_ratios.split(",")} if args.answer_ratios else set()
    seeds = [int(s) for s in args.seeds.split(",")]
    value_norm_layers = [int(x) for x in args.value_norm_layers.split(",") if x.strip()]
    value_norm_ratios = {float(r) for r in args.value_norm_ratios.split(",") if r.strip()}
    base = json.load(open(args.merge_into)) if args.merge_into else None

    directory, name = os.path.split(os.path.abspath(os.path.expanduser(args.gguf)))
    data = json.load(open(args.ids))
    ids = data["prompt_ids"] if isinstance(data, dict) else data
    n_question = args.question_tokens or (data.get("n_question_tokens") if isinstance(data, dict) else None)
    L = len(ids)
    input_ids = torch.tensor([ids])

    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = model.config
    n_layers, n_kv, head_dim = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim \
        if getattr(cfg, "head_dim", None) else cfg.hidden_size // cfg.num_attention_heads
    # KVzip/KVgrad load a tokenizer from model.config.name_or_path (a GGUF directory here): hand them ours.
    kvzip_module.AutoTokenizer = type("GGUFTokenizer", (), {"from_pretrained": staticmethod(lambda *a, **k: tokenizer)})
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    print(f"model loaded in {time.time() - t0:.1f}s: {n_layers} layers, {n_kv} KV heads, head dim {head_dim}",
          flush=True)
    if any(not 0 <= l < n_layers for l in value_norm_layers):
        sys.exit(f"--value-norm-layers: the model has {n_layers} layers")

    def decode(cache, first_logits, start_position, n_tokens):
        out = [int(first_logits[0, -1].argmax())]
        position = start_position
        while len(out) < n_tokens and out[-1] not in eos:
            logits = model(input_ids=torch.tensor([[out[-1]]]), past_key_values=cache,
                           position_ids=torch.tensor([[position]])).logits
            out.append(int(logits[0, -1].argmax()))
            position += 1
        return out

    # Uncompressed reference keys/values (and the full-cache answer) per attention implementation.
    reference = {}

    def reference_kv(impl):
        if impl not in reference:
            set_attn(model, impl)
            cache = DynamicCache()
            with torch.no_grad():
                logits = model(input_ids=input_ids, past_key_values=cache, logits_to_keep=1).logits
                keys = [cache.layers[l].keys[0].clone() for l in range(n_layers)]
                values = [cache.layers[l].values[0].clone() for l in range(n_layers)]
                answer = decode(cache, logits, L, args.answer_tokens)
            lookup = []
            for l in range(n_layers):
                per_head = []
                for h in range(n_kv):
                    rows = {}
                    for p, row in enumerate(keys[l][h].numpy()):
                        rows.setdefault(row.tobytes(), []).append(p)
                    per_head.append(rows)
                lookup.append(per_head)
            reference[impl] = dict(keys=keys, values=values, lookup=lookup, answer=answer)
        return reference[impl]

    def recover_tokens(press, cache, ref, rerotated, check_values=True, row_order=None):
        """Kept positions per [layer][kv_head] (sorted); row_order (a dict) receives, for the exact-match path,
        row_order[layer][kv_head] = the original position of each cache row, in cache order."""
        kept, notes = [], set()
        for l in range(n_layers):
            module = model.model.layers[l].self_attn
            masked = getattr(module, "masked_key_indices", None)
            keys_l, values_l = cache.layers[l].keys[0], cache.layers[l].values[0]
            layer = []
            if masked is not None:
                notes.add("masked_key_indices")
                if keys_l.shape[1] != L:  # KVComposePress(structured=False) leaves its replay in the cache
                    notes.add(f"cache holds {keys_l.shape[1]} entries; kept set over the first {L}")
                _, heads, seqs = masked
                for h in range(n_kv):
                    drop = set(seqs[heads == h].tolist())
                    layer.append([p for p in range(L) if p not in drop])
            elif l in rerotated:
                notes.add("rerotate_keys indices")
                idx = rerotated[l][0]
                for h in range(n_kv):
                    layer.append(sorted(idx[h].tolist()))
            else:
                notes.add("exact key-row match")
                for h in range(n_kv):
                    positions = []
                    for i, row in enumerate(keys_l[h].numpy()):
                        candidates = ref["lookup"][l][h].get(row.tobytes())
                        if candidates is None:
                            raise RuntimeError(f"layer {l} head {h} row {i}: no exact key match")
                        if len(candidates) > 1:  # identical key rows: disambiguate by the value row
                            candidates = [p for p in candidates if torch.equal(ref["values"][l][h, p], values_l[h, i])]
                        positions.append(candidates[0])
                    if len(set(positions)) != len(positions):
                        raise RuntimeError(f"layer {l} head {h}: duplicate positions")
                    if row_order is not None:
                        row_order.setdefault(l, []).append(positions)
                    layer.append(sorted(positions))
                    if check_values and masked is None:
                        order = torch.tensor(positions)
                        assert torch.equal(ref["values"][l][h, order], values_l[h]), f"value mismatch layer {l}"
            if l in rerotated and check_values:
                for h in range(n_kv):
                    assert torch.equal(ref["values"][l][h, torch.tensor(layer[h])], values_l[h]), \
                        f"value mismatch (rerotated) layer {l}"
            kept.append(layer)
        return kept, sorted(notes)

    def score_gaps(capture, kept):
        """min kept score - max evicted score per [layer][head]; None where the press does not keep the
        per-head top-n of the captured score (then the score is not what ranks the tokens)."""
        if capture is None or len(capture.scores) != n_layers:
            return None, None
        gaps, ties = [], []
        for l in range(n_layers):
            s = capture.scores[l][0]
            row = []
            for h in range(n_kv):
                mask = torch.zeros(L, dtype=torch.bool)
                mask[torch.tensor(kept[l][h], dtype=torch.long)] = True
                if mask.all():
                    row.append(None)
                    continue
                low = s[h][mask].min()
                gap = (low - s[h][~mask].max()).item()
                if gap < 0:
                    return None, None
                if gap == 0:
                    tied = s[h] == low
                    ties.append([l, h, int(tied.sum()), int((tied & mask).sum())])
                row.append(float(f"{gap:.4g}"))
            gaps.append(row)
        return gaps, ties

    def step_gaps(press, capture, kept):
        """ChunkPress / BlockPress: the inner press ranks several subsets (each chunk; kept + block at each block
        step) with its own top-k. For every such call, the boundary gap relative to the smallest kept score,
        (k-th largest - (k+1)-th largest) / |k-th largest| (in float64 from the exact float32 scores the inner
        press returned in the run; independent of which tied positions topk kept), and per [layer][kv_head] the
        smallest of them (rounded to 4 significant digits; 0 = exact tie). The captured scores are replayed
        through the wrapper's own top-k selection and must give the recovered kept sets. Also returns, per
        [layer][kv_head], (step start position, unrounded gap) of the minimum (printed, not stored)."""
        from kvpress.utils import compute_n_kept
        chunked = isinstance(press, ChunkPress)
        if capture is None or not capture.calls or not isinstance(press, (ChunkPress, BlockPress)):
            return None, None
        r = press.press.compression_ratio
        if chunked:
            starts = list(range(0, L, press.chunk_length))
        else:
            n_block = compute_n_kept(L, r)
            block = press.block_size if press.block_size < L else L
            starts = list(range(n_block, L, block))
        gaps, where = [], []
        for l in range(n_layers):
            calls = capture.calls.get(l, [])
            if len(calls) != len(starts):
                raise RuntimeError(f"layer {l}: {len(calls)} inner score calls, expected {len(starts)}")
            best = [(None, float("inf"))] * n_kv
            replay = [] if chunked else torch.arange(n_block).expand(1, n_kv, -1)
            for start, s in zip(starts, calls):
                if s.dtype != torch.float32 or s.shape[:2] != (1, n_kv):
                    raise RuntimeError(f"layer {l}: unexpected score tensor {s.dtype} {tuple(s.shape)}")
                length = s.shape[-1]
                if chunked:
                    if length != min(press.chunk_length, L - start):
                        raise RuntimeError(f"layer {l} chunk {start}: {length} scores")
                    n = max(1, int(length * (1 - r)))
                    replay.append(start + s.topk(n, dim=-1).indices)
                else:
                    if length != n_block + min(block, L - start):
                        raise RuntimeError(f"layer {l} block {start}: {length} scores")
                    n = n_block
                    current = torch.cat([replay, torch.arange(start, start + length - n_block).expand(1, n_kv, -1)],
                                        dim=-1)
                    replay = current.gather(-1, s.topk(n, dim=-1).indices)
                if n >= length:
                    continue
                ordered = s[0].double().sort(dim=-1, descending=True).values
                for h in range(n_kv):
                    low, high = ordered[h, n - 1].item(), ordered[h, n].item()
                    gap = 0.0 if low == high else (low - high) / abs(low)
                    if gap < best[h][1]:
                        best[h] = (start, gap)
            final = torch.cat(replay, dim=-1) if chunked else replay
            for h in range(n_kv):
                if sorted(final[0, h].tolist()) != kept[l][h]:
                    raise RuntimeError(f"layer {l} head {h}: replaying the captured inner scores does not give "
                                       "the recovered kept set")
            gaps.append([None if best[h][0] is None else float(f"{best[h][1]:.4g}") for h in range(n_kv)])
            where.append(best)
        return gaps, where

    def norms6(rows):
        """L2 norm of each row, computed in float32, rounded to 6 significant digits."""
        return [float(f"{x:.6g}") for x in torch.linalg.vector_norm(rows.float(), dim=-1).tolist()]

    def run(press_name, spec, ratio, seed=None, want_answer=False):
        ref = reference_kv(spec.get("ref_attn", spec["attn"]))
        set_attn(model, spec["attn"])
        press = spec["factory"](ratio)
        params = constructor_args(press)
        inner = getattr(press, "press", None)
        if inner is not None:
            params["press"] = {"class": type(inner).__name__, **constructor_args(inner)}
        scorer = scorer_of(press)
        capture = ScoreCapture(scorer, L, every_call=isinstance(press, (ChunkPress, BlockPress))) \
            if scorer is not None else None
        run_ids, window_note = input_ids, None
        if spec.get("finch"):
            # FinchPress needs `context + delimiter + question` in one prefill; its embedding hook drops the
            # delimiter, so the cache covers exactly the L prompt ids. Any id absent from the prompt works as
            # the delimiter (its embedding is removed), so the model is not resized.
            if not n_question:
                raise RuntimeError("FinchPress needs --question-tokens (or n_question_tokens in --ids)")
            delimiter = next(t for t in range(cfg.vocab_size) if t not in set(ids))
            press.delimiter_token, press.delimiter_token_id = tokenizer.convert_ids_to_tokens(delimiter), delimiter
            run_ids = torch.tensor([ids[:L - n_question] + [delimiter] + ids[L - n_question:]])
            window_note = f"delimiter inserted before the last {n_question} ids (the question); window = {n_question}"
        prefix_seen = {}
        if isinstance(press, KVzipPress):  # record the chat-template prefix/suffix KVzip derives (reset on exit)
            original_prepare = press.prepare

            def prepare(*a, **k):
                prefix_seen["prefix_length"] = int(press.prefix_length)
                prefix_seen["suffix_ids"] = press._suffix_ids[0].tolist()
                return original_prepare(*a, **k)

            press.prepare = prepare
        pre_merge = {}  # layer -> the values MergingPress received (before merging), for the value norms
        norm_layers = value_norm_layers if isinstance(press, MergingPress) and ratio in value_norm_ratios else []
        if norm_layers:
            original_compress = press.compress

            def compress(module, hidden_states, keys, values, attentions, kwargs):
                if int(module.layer_idx) in norm_layers and keys.shape[2] == L:
                    pre_merge[int(module.layer_idx)] = values[0].detach().clone()
                return original_compress(module, hidden_states, keys, values, attentions, kwargs)

            press.compress = compress
        if seed is not None:
            torch.manual_seed(seed)
        cache = DynamicCache()
        t = time.time()
        grad_ctx = torch.no_grad() if not isinstance(press, KVgradPress) else contextlib.nullcontext()
        with grad_ctx, capture_rerotation() as rerotated:
            with press(model):
                logits = model(input_ids=run_ids, past_key_values=cache, logits_to_keep=1).logits.detach()
            lengths = [cache.layers[l].keys.shape[2] for l in range(n_layers)]
            result = dict(params=params, attn_implementation=spec.get("ref_attn", spec["attn"]))
            if spec.get("kind") == "channels":
                channels = []
                for l in range(n_layers):
                    k = cache.layers[l].keys[0]
                    channels.append([[c for c in range(head_dim) if bool(k[h, :, c].ne(0).any())]
                                     for h in range(n_kv)])
                result["kept_channels"] = channels
                result["n_pruned_channels"] = head_dim - len(channels[0][0])
            else:
                row_order = {}
                kept, notes = recover_tokens(press, cache, ref, rerotated,
                                             check_values=not isinstance(press, MergingPress), row_order=row_order)
                result["kept_sets"] = kept
                result["recovered_by"] = notes
                counts = [[len(h) for h in layer] for layer in kept]
                flat = sorted({c for layer in counts for c in layer})
                result["n_kept"] = flat[0] if len(flat) == 1 else counts
                result["cache_lengths"] = lengths if len(set(lengths)) > 1 else lengths[0]
                gaps, ties = score_gaps(capture, kept) if spec.get("kind") != "threshold" else (None, None)
                if spec.get("kind") == "threshold":
                    # DMS judges every position but the last sliding_window_size by score < threshold: the
                    # smallest |score - threshold| among them per head says how near a tie each head came
                    judged = L - press.sliding_window_size
                    result["threshold_gap"] = [[float((capture.scores[l][0, h, :judged] - ratio).abs().min())
                                                for h in range(n_kv)] for l in range(n_layers)]
                if gaps is not None:
                    result["score_gap"] = gaps
                    result["boundary_ties"] = ties
                steps, where = step_gaps(press, capture, kept)
                if steps is not None:
                    result["step_gap"] = steps
                    result["step_gap_where"] = where  # printed, not stored
                if norm_layers:
                    # Value rows in the cache (merged) and the same positions' values before the merge, both in
                    # ascending original-position order (= the order of the kept bitset).
                    merged, unmerged = {}, {}
                    for l in norm_layers:
                        if l not in row_order or l not in pre_merge:
                            raise RuntimeError(f"layer {l}: no row order / pre-merge values for the value norms")
                        values_l = cache.layers[l].values[0]
                        merged[str(l)], unmerged[str(l)] = [], []
                        for h in range(n_kv):
                            order = torch.tensor(row_order[l][h])
                            perm = torch.argsort(order)
                            positions = order[perm]
                            before = pre_merge[l][h, positions]
                            assert torch.equal(before, ref["values"][l][h, positions]), \
                                f"pre-merge values differ from the uncompressed run (layer {l} head {h})"
                            merged[str(l)].append(norms6(values_l[h][perm]))
                            unmerged[str(l)].append(norms6(before))
                    result["merged_value_norms"] = merged
                    result["unmerged_value_norms"] = unmerged
            if window_note:
                result["finch_window"] = window_note
            if isinstance(press, SimLayerKVPress):
                result["layer_ratios"] = [round(x, 6) for x in press.compression_ratios]
                result["lazy_layers"] = [i for i, x in enumerate(press.compression_ratios) if x > 0]
            if isinstance(press, KVzipPress):
                result["kvzip_prefix_length"] = prefix_seen.get("prefix_length")
                result["kvzip_suffix_ids"] = prefix_seen.get("suffix_ids")
            if want_answer:
                start = L
                if isinstance(press, (KeyRerotationPress, RestoreKVPress)) or (isinstance(press, FinchPress) and press.rerotate_keys):
                    start = cache.get_seq_length()  # RestoreKV: after its restore tokens at L..L+n-1
                with torch.no_grad():
                    answer = decode(cache, logits, start, args.answer_tokens)
                result["answer_ids"] = answer
                result["answer"] = tokenizer.decode(answer)
                result["answer_start_position"] = start
        result["seconds"] = round(time.time() - t, 2)  # printed, not stored (keeps the file reproducible)
        for l in range(n_layers):  # masks must not leak into the next run
            model.model.layers[l].self_attn.masked_key_indices = None
        return result

    out = dict(
        layout=("kept[press][ratio] = {kept: [layer][kv_head] -> hex string of the membership bitset over the "
                f"{L} prompt positions (bit p set iff original position p is kept; byte i = hex chars 2i..2i+1 "
                "holds positions 8i..8i+7, least-significant bit = position 8i), or same_as: another press name "
                "whose kept sets at this ratio are identical; params: constructor arguments (press: the wrapped "
                "press); n_kept: per-head count (one number when uniform, else [layer][kv_head]); score_gap "
                "(where the press keeps each head's top-n of one score): [layer][kv_head] smallest kept score "
                "minus largest evicted score (0 = tie at the boundary), boundary_ties: [layer, kv_head, number of positions "
                "scoring exactly the boundary score, how many of them kept] for each head with score_gap 0; "
                "step_gap (ChunkPress/BlockPress, whose inner press makes one top-k per chunk / per block step "
                "instead of one over all positions): [layer][kv_head] the smallest relative boundary gap over "
                "those top-k, each (smallest kept score - largest evicted score) / |smallest kept score| on the "
                "float32 scores the inner press returned in that call, rounded to 4 significant digits "
                "(0 = exact tie); "
                "merged_value_norms (MergingPress, at ratio" + ("s " if len(value_norm_ratios) != 1 else " ")
                + ", ".join(f"{r:g}" for r in sorted(value_norm_ratios)) + "): {layer (\"" + "\", \"".join(
                    str(l) for l in value_norm_layers) + "\"): [kv_head] -> L2 norm (computed in float32, "
                "rounded to 6 significant digits) of each value row left in the cache after the press, i.e. the "
                "merged values, in ascending original-position order (the order of the kept bitset's set bits)}, "
                "unmerged_value_norms: the same for the values of the same kept positions before merging (the "
                "inner press's plain kept rows = the uncompressed run's values); "
                "answer_ids/answer: greedy continuation "
                "decoded after the compressed prefill}. kept_channels[press][ratio] = [layer][kv_head] -> sorted "
                "key channels ThinKPress keeps (the others are zeroed). For SimLayerKVPress the 'ratio' key is "
                "the lazy_threshold; for DMSPress it is the threshold, and threshold_gap: [layer][kv_head] the smallest "
                "|score - threshold| over the positions DMS judged (all but the last sliding_window_size). quirks: kvpress behaviours a reimplementation must copy; skipped: presses not run."),
        prompt=(os.path.basename(args.ids) + f" ({L} ids prefilled in one pass, press applied to each layer "
                "right after its attention, float32 CPU, GGUF dequantized to float32)"),
        kvpress_version=KVPRESS_VERSION,
        transformers_version=transformers.__version__,
        torch_version=torch.__version__,
        model=name,
        n_positions=L,
        kept={}, kept_channels={}, skipped=SKIPPED, quirks=QUIRKS, notes={},
    )
    t_all = time.time()
    print("reference (no press): sdpa", flush=True)
    out["full_cache_answer_ids"] = reference_kv("sdpa")["answer"]
    out["full_cache_answer"] = tokenizer.decode(out["full_cache_answer_ids"])

    def press_ratios_of(spec):
        if spec.get("kind") == "threshold":
            return spec["thresholds"]
        return [float(t) for t in args.simlayerkv_thresholds.split(",")] if spec.get("kind") == "lazy" else ratios

    regenerated = {(n, f"{r:g}") for n in names for r in press_ratios_of(PRESSES[n])}
    order = list(PRESSES)

    def rank(press_name):  # position in the written file (PRESSES order; others after, in their order)
        return order.index(press_name) if press_name in order else len(order)

    raw = {}  # name -> ratio -> kept lists (for same_as and --check)
    if base is not None:
        for k in ("kvpress_version", "transformers_version", "torch_version", "model", "n_positions",
                  "full_cache_answer_ids"):
            if base.get(k) != out[k]:
                sys.exit(f"--merge-into: {k} differs ({base.get(k)!r} there, {out[k]!r} now); regenerate all")

        def unpack(press_name, key, entry, seen=()):
            kept = entry["kept"]
            if isinstance(kept, dict):
                target = kept["same_as"]
                if target in seen or target not in base["kept"] or key not in base["kept"][target]:
                    sys.exit(f"--merge-into: broken same_as {press_name}@{key} -> {target}")
                return unpack(target, key, base["kept"][target][key], seen + (press_name,))
            return [[bitset_positions(h, L) for h in layer] for layer in kept]

        for press_name, per_ratio in base["kept"].items():
            for key, entry in per_ratio.items():
                if (press_name, key) not in regenerated:
                    raw.setdefault(press_name, {})[key] = unpack(press_name, key, entry)
        # a failure recorded earlier for an entry run again now is replaced by this run's outcome
        out["notes"] = {k: v for k, v in base.get("notes", {}).items() if k != "failed"}
        failed = {k: v for k, v in base.get("notes", {}).get("failed", {}).items()
                  if tuple(k.rsplit("@", 1)) not in regenerated}
        if failed:
            out["notes"]["failed"] = failed
    for press_name in names:
        spec = PRESSES[press_name]
        press_ratios = press_ratios_of(spec)
        for ratio in press_ratios:
            key = f"{ratio:g}"
            print(f"{press_name} @ {key} ...", end=" ", flush=True)
            try:
                use_seeds = seeds if spec.get("rng") else [None]
                result = run(press_name, spec, ratio, seed=use_seeds[0],
                             want_answer=ratio in answer_ratios or spec.get("kind") in ("lazy", "threshold"))
                if use_seeds[0] is not None:
                    result["torch_manual_seed"] = use_seeds[0]
                    overlaps = []
                    for other in use_seeds[1:]:
                        r2 = run(press_name, spec, ratio, seed=other)
                        inter = sum(len(set(a) & set(b)) for la, lb in zip(result["kept_sets"], r2["kept_sets"])
                                    for a, b in zip(la, lb))
                        total = sum(len(a) for la in result["kept_sets"] for a in la)
                        overlaps.append({"seed": other, "shared_fraction": round(inter / total, 4)})
                    result["other_seeds"] = overlaps
            except Exception as error:  # keep going: record the failure
                import traceback
                traceback.print_exc()
                out["notes"].setdefault("failed", {})[f"{press_name}@{key}"] = f"{type(error).__name__}: {error}"
                print("FAILED", flush=True)
                continue
            if "kept_channels" in result:
                out["kept_channels"].setdefault(press_name, {})[key] = result
            else:
                kept = result.pop("kept_sets")
                raw.setdefault(press_name, {})[key] = kept
                # same_as only points to a press written earlier (with --merge-into: earlier in the PRESSES
                # order, the order of the merged file), as a full run would write it
                same = next((n for n in raw if n != press_name and raw[n].get(key) == kept
                             and (base is None or rank(n) < rank(press_name))), None)
                result["kept"] = {"same_as": same} if same else \
                    [[bitset_hex(h, L) for h in layer] for layer in kept]
                out["kept"].setdefault(press_name, {})[key] = result
            seconds = result.pop("seconds")
            where = result.pop("step_gap_where", None)
            if where is not None:
                small = [(l, h, start, gap) for l, layer in enumerate(where) for h, (start, gap) in enumerate(layer)
                         if start is not None and gap < 1e-5]
                print(f"step_gap < 1e-5 in {len(small)} heads" + "".join(
                    f"\n    layer {l} head {h}: {gap:.4g} at the {'chunk' if press_name.startswith('Chunk') else 'block'} "
                    f"starting at {start}"
                    for l, h, start, gap in small), flush=True)
            print(f"{seconds}s" + (f" answer {result.get('answer')!r}" if "answer" in result else ""),
                  flush=True)

    if args.check:
        old = json.load(open(args.check))
        report = {}
        for press_name, per_ratio in old["kept"].items():
            for key, kept_old in per_ratio.items():
                mine = raw.get(press_name, {}).get(key)
                if mine is None:
                    continue
                diff = sum(len(set(a) ^ set(b)) for la, lb in zip(kept_old, mine) for a, b in zip(la, lb))
                heads = sum(1 for la, lb in zip(kept_old, mine) for a, b in zip(la, lb) if sorted(a) != sorted(b))
                report[f"{press_name}@{key}"] = {"identical": diff == 0, "heads_differing": heads,
                                                 "positions_differing": diff}
                print(f"check {press_name}@{key}: {'identical' if diff == 0 else f'{heads} heads differ, {diff} positions'}")
        if base is not None and base.get("check_against", {}).get("file") == os.path.basename(args.check):
            report = {**{k: v for k, v in base["check_against"]["result"].items() if k not in report}, **report}
        out["check_against"] = {"file": os.path.basename(args.check), "result": report}

    if base is not None:
        def merged(section):
            entries = {n: dict(per_ratio) for n, per_ratio in base.get(section, {}).items()}
            for n, per_ratio in out[section].items():
                entries.setdefault(n, {}).update(per_ratio)
            ranked = sorted(entries, key=lambda n: (rank(n), list(entries).index(n)))
            return {n: dict(sorted(entries[n].items(), key=lambda kv: float(kv[0]))) for n in ranked}

        out["kept"], out["kept_channels"] = merged("kept"), merged("kept_channels")
        if "check_against" not in out and "check_against" in base:
            out["check_against"] = base["check_against"]
        for k, v in base.items():  # keys this script no longer writes are kept
            out.setdefault(k, v)
        replaced = sorted(f"{n}@{k}" for n, k in regenerated if k in base.get("kept", {}).get(n, {})
                          or k in base.get("kept_channels", {}).get(n, {}))
        print(f"merged into {args.merge_into}: {len(regenerated) - len(replaced)} entries added, "
              f"{len(replaced)} replaced ({', '.join(replaced)})")
    for press_name, per_ratio in out["kept"].items():  # every same_as must still hold after a merge
        for key, entry in per_ratio.items():
            target = entry["kept"].get("same_as") if isinstance(entry["kept"], dict) else None
            if target and raw.get(target, {}).get(key) != raw.get(press_name, {}).get(key):
                print(f"WARNING: {press_name}@{key} same_as {target}, but the kept sets now differ")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
