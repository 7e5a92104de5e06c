#!/usr/bin/env python3
"""Per-token negative log-likelihoods that Hugging Face transformers (float32, CPU) gives the
default model (its GGUF dequantized to float32 by transformers' GGUF loader), for
KVModelTests.PerplexityTests and for checking `kvcompress perplexity --exact`.

Input: token ids (--ids FILE: a JSON array, or an object with 'prompt_ids') or a UTF-8 text
(--text FILE, tokenized with no special tokens). transformers' GGUF converter builds the SmolLM2
tokenizer without the Digits(individual_digits=True) pre-tokenizer of the model's tokenizer.json
(llama.cpp's 'smollm' pre-tokenizer has it), which changes the ids around numbers ("\\n  2"); the
script puts it back so that the ids are the model's.

    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers gguf accelerate numpy
    /tmp/hf/bin/python Scripts/perplexity_reference.py --gguf ~/.cache/kvcompress/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --ids ../shared/reference/fixtures/passkey_prompt.json --out Tests/KVModelTests/Fixtures/perplexity_reference.json
"""
import argparse, json, os

import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

parser = argparse.ArgumentParser()
parser.add_argument("--gguf", required=True, help="the default model's GGUF file")
source = parser.add_mutually_exclusive_group(required=True)
source.add_argument("--ids", help="JSON token ids")
source.add_argument("--text", help="UTF-8 text")
parser.add_argument("--tokens", type=int, default=None, help="only the first N tokens")
parser.add_argument("--out", help="write the ids and NLLs here (JSON)")
args = parser.parse_args()

directory, name = os.path.split(os.path.abspath(os.path.expanduser(args.gguf)))
if args.ids:
    data = json.load(open(args.ids))
    ids = data["prompt_ids"] if isinstance(data, dict) else data
else:
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    ids = tokenizer(open(args.text, encoding="utf-8").read(), add_special_tokens=False).input_ids
ids = ids[: args.tokens] if args.tokens else ids

model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32).eval()
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0].double()
nll = -torch.log_softmax(logits[:-1], dim=-1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
mean = nll.mean().item()
print(f"{len(ids)} tokens, mean NLL {mean:.6f}, perplexity {torch.exp(nll.mean()).item():.6f}")
if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({
            "source": os.path.basename(args.ids or args.text) + (f", first {len(ids)} tokens" if args.tokens else ""),
            "reference": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
                         "float32 CPU, GGUF dequantized to float32",
            "ids": ids,
            "nll": [round(x, 7) for x in nll.tolist()],
            "mean_nll": mean,
        }, f)
