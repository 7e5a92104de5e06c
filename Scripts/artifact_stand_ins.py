#!/usr/bin/env python3
"""Seeded stand-ins for trained artifacts that kvpress downloads for other models only, shaped for the
default model (SmolLM2-135M: 30 layers, hidden size 576, 3 KV heads) and written in the published formats,
for the parity tests (Tests/KVModelTests/Fixtures):

  * kvzap-linear/, kvzap-mlp/: KVzap surrogates (nvidia/KVzap-{linear,mlp}-<model>), kvpress's
    KVzapModel.save_pretrained (config.json + model.safetensors); the linear one in float32, the MLP
    (hidden size 16) in bfloat16, so both element types of the published checkpoints are read;
  * fastkvzip-small.pt: Fast KVzip gates in the published torch.save layout ({"module": [state dict per
    layer]}) for a toy shape (2 layers, input 8, 2 KV heads x 2, width 4, 3 sinks) with the values of
    fastkvzip_gate() below, plus an "extra" dict holding a transposed (non-contiguous) tensor and float16,
    bfloat16 and float64 copies, for the checkpoint reader's test. The default model's stand-in gates
    (30 layers, 13 MB) are not stored: the parity test and Scripts/kvpress_reference.py build them from
    the same formula;
  * torch-hostile.pt: a hand-made torch.save archive whose one tensor claims 2^40 elements of a 3-element
    storage (the checkpoint reader must refuse it, not allocate);
  * lukv-curve.npy: an LU-KV budget curve ([99, layers, kv_heads] float32 prune ratios, as LU-KV's
    generate_curve.sh writes them): row t is ratio r = (t + 1) / 100 moved per head by a seeded offset,
    r + 4 o r (1 - r) with o uniform in [-0.3, 0.3], clipped to [0, 0.99].

  * restorekv/: a RestoreKV artifact (higokri/RestoreKV-<model>) in its published format: a PEFT LoRA
    adapter (adapter_config.json + adapter_model.safetensors: rank 2, alpha 4, on q/k/v/o/gate/up/down of
    every layer, bfloat16) and restore_embeddings.safetensors (8 x 576, bfloat16), seeded.

The weights and the curve are random: the tests check the architectures, the formats and the allocation
rules, not a trained predictor or an optimized curve.

    /tmp/kvp/bin/python Scripts/artifact_stand_ins.py --out Tests/KVModelTests/Fixtures
"""
import argparse, os, struct, zipfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
import torch
from kvpress.presses.kvzap_press import KVzapConfig, KVzapModel


def fastkvzip_gate(layer, input_dim, heads, group, width, sinks):
    """Deterministic stand-in values of one Fast KVzip gate (the same formula as the Swift tests)."""
    def grid(n, a, c, scale, fn=np.sin):
        return (scale * fn(a * np.arange(n, dtype=np.float64) + c)).astype(np.float32)
    return {
        "q_proj.weight": torch.from_numpy(grid(heads * group * width * input_dim, 0.37, 1.3 * layer + 0.1, 0.08)
                                          .reshape(heads * group * width, input_dim)),
        "q_proj.bias": torch.from_numpy(grid(heads * group * width, 0.53, layer, 0.1, np.cos)),
        "k_proj.weight": torch.from_numpy(grid(heads * width * input_dim, 0.41, 0.7 * layer + 0.2, 0.08)
                                          .reshape(heads * width, input_dim)),
        "q_norm.weight": torch.from_numpy(1 + grid(width, 1.0, layer, 0.3)),
        "k_norm.weight": torch.from_numpy(1 + grid(width, 1.0, layer, 0.3, np.cos)),
        "k_base": torch.from_numpy(grid(heads * sinks * width, 0.9, layer, 0.5).reshape(heads, 1, sinks, width)),
        "b": torch.from_numpy(grid(heads * group, 1.0, layer, 0.2, np.cos).reshape(heads, 1, group)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory that receives kvzap-linear/, kvzap-mlp/, fastkvzip-small.pt and lukv-curve.npy")
    args = parser.parse_args()
    for kind, hidden, dtype, seed in [("linear", None, torch.float32, 1), ("mlp", 16, torch.bfloat16, 2)]:
        torch.manual_seed(seed)
        model = KVzapModel(KVzapConfig(input_dim=576, output_dim=3, n_modules=30, hidden_dim=hidden)).to(dtype)
        path = os.path.join(args.out, f"kvzap-{kind}")
        model.save_pretrained(path)
        print(path, sorted(os.listdir(path)))

    small = [fastkvzip_gate(l, 8, 2, 2, 4, 3) for l in range(2)]
    w = small[0]["q_proj.weight"]
    extra = {"transposed": w.t(), "half": w.half(), "bfloat16": w.bfloat16(), "double": w.double()}
    torch.save({"module": small, "extra": extra}, os.path.join(args.out, "fastkvzip-small.pt"))
    print(os.path.join(args.out, "fastkvzip-small.pt"))

    def text(value):
        data = value.encode()
        return b"X" + struct.pack("<I", len(data)) + data
    storage = b"((" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu") + b"K\x03tQ"
    shape = b"(\x8a\x06" + (2 ** 40).to_bytes(6, "little") + b"t"
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n" + storage + b"K\x00" + shape + b"(K\x01t\x89}tR"
    with zipfile.ZipFile(os.path.join(args.out, "torch-hostile.pt"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("hostile/data.pkl", b"\x80\x02}(" + text("t") + tensor + b"u.")
        z.writestr("hostile/data/0", bytes(12))
    print(os.path.join(args.out, "torch-hostile.pt"))

    rng = np.random.default_rng(3)
    offsets = rng.uniform(-0.3, 0.3, size=(30, 3))
    r = (np.arange(99) + 1)[:, None, None] / 100
    curve = np.clip(r + 4 * offsets[None] * r * (1 - r), 0, 0.99).astype(np.float32)
    np.save(os.path.join(args.out, "lukv-curve.npy"), curve)
    print(os.path.join(args.out, "lukv-curve.npy"), curve.shape, curve.dtype)

    restorekv(os.path.join(args.out, "restorekv"))


def restorekv(path, layers=30, hidden=576, kv=192, ffn=1536, rank=2, alpha=4, tokens=8):
    """A seeded RestoreKV stand-in: PEFT LoRA adapter + restore embeddings, bfloat16."""
    import json
    from safetensors.torch import save_file
    os.makedirs(path, exist_ok=True)
    g = torch.Generator().manual_seed(4)
    shapes = {"self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (kv, hidden), "self_attn.v_proj": (kv, hidden),
              "self_attn.o_proj": (hidden, hidden), "mlp.gate_proj": (ffn, hidden), "mlp.up_proj": (ffn, hidden),
              "mlp.down_proj": (hidden, ffn)}
    tensors = {}
    for layer in range(layers):
        for module, (out_dim, in_dim) in shapes.items():
            name = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{name}.lora_A.weight"] = (0.05 * torch.randn(rank, in_dim, generator=g)).bfloat16()
            tensors[f"{name}.lora_B.weight"] = (0.05 * torch.randn(out_dim, rank, generator=g)).bfloat16()
    save_file(tensors, os.path.join(path, "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0,
              "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "inference_mode": True,
              "target_modules": sorted({m.split(".")[-1] for m in shapes}), "base_model_name_or_path": "SmolLM2-135M-Instruct"}
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=1, sort_keys=True)
    save_file({"restore_embeddings": (0.05 * torch.randn(tokens, hidden, generator=g)).bfloat16()},
              os.path.join(path, "restore_embeddings.safetensors"))
    print(path, sorted(os.listdir(path)))


if __name__ == "__main__":
    main()
