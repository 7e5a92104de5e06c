#!/usr/bin/env python3
"""Seeded stand-ins for the KVzap surrogates (nvidia/KVzap-{linear,mlp}-<model>) shaped for the default
model (SmolLM2-135M: 30 layers, hidden size 576, 3 KV heads), written in the published format
(kvpress's KVzapModel.save_pretrained: config.json + model.safetensors) for the KVzap parity test. No
surrogate is published for SmolLM2, so the weights are random: the test checks the architecture and the
format, not a trained predictor. The linear one is stored in float32, the MLP (hidden size 16) in
bfloat16, so both element types of the published checkpoints are read.

    /tmp/kvp/bin/python Scripts/kvzap_fixture.py --out Tests/KVModelTests/Fixtures
"""
import argparse, os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from kvpress.presses.kvzap_press import KVzapConfig, KVzapModel

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", required=True, help="directory that receives kvzap-linear/ and kvzap-mlp/")
args = parser.parse_args()
for kind, hidden, dtype, seed in [("linear", None, torch.float32, 1), ("mlp", 16, torch.bfloat16, 2)]:
    torch.manual_seed(seed)
    model = KVzapModel(KVzapConfig(input_dim=576, output_dim=3, n_modules=30, hidden_dim=hidden)).to(dtype)
    path = os.path.join(args.out, f"kvzap-{kind}")
    model.save_pretrained(path)
    print(path, sorted(os.listdir(path)))
