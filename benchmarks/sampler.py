"""Sampler throughput: ours against transformers `generate` (torch), same prompts, same batch.

Embedded SmolLM2-135M-Instruct, the first N GSM8K test questions rendered with the GSM8K
prediction prompt, greedy, float32, left padding on both sides. Each side runs in its own
process (peak RSS is its own). Tokens/s counts useful tokens (up to and including EOS) over
the whole generate call, prefill included; our compile time is measured separately by a
warm-up call over the same prompts. Prints one JSON line last.

    python benchmarks/sampler.py [--n 64] [--batch 32] [--max-new-tokens 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

COMMON = r"""
import json, os, resource, sys, time
args = json.loads(sys.argv[1])
from s3ft_jax.models import load_tokenizer, resolve_model_path
from s3ft_jax.sampling import render_chat
from s3ft_jax.tasks import gsm8k
from s3ft_jax.tasks.data import resolve_data_dir
path = resolve_model_path("smollm2-135m-instruct")
tokenizer = load_tokenizer(path)
rows = gsm8k.load_split(resolve_data_dir(None), "test")[: args["n"]]
prompts = [render_chat(tokenizer, [{"role": "user", "content": gsm8k.PREDICTION_PROMPT.format(question=r["question"])}]) for r in rows]
def rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

OURS = COMMON + r"""
from s3ft_jax.models import from_pretrained
from s3ft_jax.sampling import SamplingOptions, generate
model = from_pretrained(path, dtype="float32")
options = SamplingOptions(max_new_tokens=args["max_new_tokens"], batch_size=args["batch"])
t = time.perf_counter(); generate(model, tokenizer, prompts, options); first = time.perf_counter() - t
t = time.perf_counter(); out = generate(model, tokenizer, prompts, options); run = time.perf_counter() - t
tokens = sum(len(g.token_ids) for g in out)
print(json.dumps({"tokens": tokens, "seconds": run, "compile_s": max(first - run, 0.0), "rss_mb": rss_mb(), "ids": [g.token_ids for g in out]}))
"""

HF = COMMON + r"""
import torch
from transformers import AutoModelForCausalLM
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
ids_out, tokens, run = [], 0, 0.0
for start in range(0, len(prompts), args["batch"]):
    batch = tokenizer(prompts[start:start + args["batch"]], add_special_tokens=False, padding=True, return_tensors="pt")
    t = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=args["max_new_tokens"], do_sample=False, eos_token_id=2, pad_token_id=2)
    run += time.perf_counter() - t
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        row = row[: row.index(2) + 1] if 2 in row else row
        ids_out.append(row); tokens += len(row)
print(json.dumps({"tokens": tokens, "seconds": run, "rss_mb": rss_mb(), "ids": ids_out, "threads": torch.get_num_threads()}))
"""


def run(code: str, args: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"benchmark process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = vars(parser.parse_args())
    ours = run(OURS, args)
    hf = run(HF, args)
    same = sum(a == b for a, b in zip(ours["ids"], hf["ids"])) / len(hf["ids"])
    ours_tok_s = ours["tokens"] / ours["seconds"]
    hf_tok_s = hf["tokens"] / hf["seconds"]
    print(json.dumps({
        "ours_tok_s": round(ours_tok_s, 1),
        "hf_tok_s": round(hf_tok_s, 1),
        "ratio": round(ours_tok_s / hf_tok_s, 2),
        "same_tokens": round(same, 3),
        "ours_compile_s": round(ours["compile_s"], 1),
        "ours_peak_rss_mb": round(ours["rss_mb"]),
        "hf_peak_rss_mb": round(hf["rss_mb"]),
        "ours_tokens": ours["tokens"],
        "hf_tokens": hf["tokens"],
        "prompts": args["n"], "batch": args["batch"], "max_new_tokens": args["max_new_tokens"],
        "torch_threads": hf["threads"], "machine": f"{os.cpu_count()} CPU cores",
    }))


if __name__ == "__main__":
    main()
