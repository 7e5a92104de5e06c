#!/usr/bin/env python3
"""Seeded stand-ins for trained artifacts that kvpress downloads for other models only, shaped for the
default model (SmolLM2-135M: 30 layers, hidden size 576, 3 KV heads) and written in the published formats,
for the parity tests (Tests/KVModelTests/Fixtures):

  * kvzap-linear/, kvzap-mlp/: KVzap surrogates (nvidia/KVzap-{linear,mlp}-<model>), kvpress's
    KVzapModel.save_pretrained (config.json + model.safetensors); the linear one in float32, the MLP
    (hidden size 16) in bfloat16, so both element types of the published checkpoints are read;
  * lukv-curve.npy: an LU-KV budget curve ([99, layers, kv_heads] float32 prune ratios, as LU-KV's
    generate_curve.sh writes them): row t is ratio r = (t + 1) / 100 moved per head by a seeded offset,
    r + 4 o r (1 - r) with o uniform in [-0.3, 0.3], clipped to [0, 0.99].

The weights and the curve are random: the tests check the architectures, the formats and the allocation
rules, not a trained predictor or an optimized curve.

    /tmp/kvp/bin/python Scripts/artifact_stand_ins.py --out Tests/KVModelTests/Fixtures
"""
import argparse, os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
import torch
from kvpress.presses.kvzap_press import KVzapConfig, KVzapModel

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", required=True, help="directory that receives kvzap-linear/, kvzap-mlp/ and lukv-curve.npy")
args = parser.parse_args()
for kind, hidden, dtype, seed in [("linear", None, torch.float32, 1), ("mlp", 16, torch.bfloat16, 2)]:
    torch.manual_seed(seed)
    model = KVzapModel(KVzapConfig(input_dim=576, output_dim=3, n_modules=30, hidden_dim=hidden)).to(dtype)
    path = os.path.join(args.out, f"kvzap-{kind}")
    model.save_pretrained(path)
    print(path, sorted(os.listdir(path)))
rng = np.random.default_rng(3)
offsets = rng.uniform(-0.3, 0.3, size=(30, 3))
r = (np.arange(99) + 1)[:, None, None] / 100
curve = np.clip(r + 4 * offsets[None] * r * (1 - r), 0, 0.99).astype(np.float32)
np.save(os.path.join(args.out, "lukv-curve.npy"), curve)
print(os.path.join(args.out, "lukv-curve.npy"), curve.shape, curve.dtype)
