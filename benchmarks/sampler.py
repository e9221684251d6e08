"""Sampler throughput: ours against transformers `generate` (torch), same prompts, same batch.

Embedded SmolLM2-135M-Instruct, the first N GSM8K test questions rendered with the GSM8K
prediction prompt, greedy, float32, left padding on both sides. Each side runs in its own
process (peak RSS is its own); both stay alive and are timed the same way: `--warmup` untimed
passes over all prompts each (ours compiles in its first, HF's allocator and kernels warm
up), then `--rounds` timed passes alternating ours, HF, ours, HF, ... so background load on
a shared machine hits both alike. Tokens/s counts useful tokens (up to and including EOS)
over the median pass, prefill included; our compile time is our first pass minus the median.
Prints one JSON line last.

    python benchmarks/sampler.py [--n 64] [--batch 32] [--max-new-tokens 256] [--warmup 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from worker import Worker  # benchmarks/worker.py (this script's folder is on sys.path)

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
def serve(one_pass, **extra):
    # The parent alternates the two sides pass by pass ("run" on stdin); one JSON line each.
    print(json.dumps({"ready": True}), flush=True)
    ids = []
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t = time.perf_counter()
        ids = one_pass()
        print(json.dumps({"seconds": time.perf_counter() - t, "tokens": sum(len(r) for r in ids)}), flush=True)
    print(json.dumps({"rss_mb": rss_mb(), "ids": ids, **extra}), flush=True)
"""

OURS = COMMON + r"""
from s3ft_jax.models import from_pretrained
from s3ft_jax.sampling import SamplingOptions, generate
model = from_pretrained(path, dtype="float32")
options = SamplingOptions(max_new_tokens=args["max_new_tokens"], batch_size=args["batch"])
serve(lambda: [list(g.token_ids) for g in generate(model, tokenizer, prompts, options)])
"""

HF = COMMON + r"""
import torch
from transformers import AutoModelForCausalLM
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
# Tokenized once, outside the timed passes (ours tokenizes inside its call: a few ms).
batches = [tokenizer(prompts[s:s + args["batch"]], add_special_tokens=False, padding=True, return_tensors="pt")
           for s in range(0, len(prompts), args["batch"])]
def one_pass():
    ids_out = []
    for batch in batches:
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=args["max_new_tokens"], do_sample=False, eos_token_id=2, pad_token_id=2)
        for row in out[:, batch["input_ids"].shape[1]:].tolist():
            ids_out.append(row[: row.index(2) + 1] if 2 in row else row)
    return ids_out
serve(one_pass, threads=torch.get_num_threads())
"""


def measure(args: dict) -> dict:
    """Both sides warmed up, then timed in alternating passes: name -> medians and final state."""
    sides = [Worker("ours", OURS, args), Worker("hf", HF, args)]
    passes = {s.name: [] for s in sides}
    for _ in range(args["warmup"] + args["rounds"]):
        for s in sides:
            passes[s.name].append(s.send("run"))
    out = {}
    for s in sides:
        timed = passes[s.name][args["warmup"] :]
        seconds = statistics.median(p["seconds"] for p in timed)
        out[s.name] = {"seconds": seconds, "tokens": timed[-1]["tokens"], "first_s": passes[s.name][0]["seconds"],
                       "all_s": [round(p["seconds"], 2) for p in timed], **s.finish()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes per side")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per side, alternating")
    args = vars(parser.parse_args())
    if args["warmup"] < 1 or args["rounds"] < 1:
        parser.error("--warmup and --rounds must be at least 1")
    both = measure(args)
    ours, hf = both["ours"], both["hf"]
    same = sum(a == b for a, b in zip(ours["ids"], hf["ids"])) / len(hf["ids"])
    ours_tok_s = ours["tokens"] / ours["seconds"]
    hf_tok_s = hf["tokens"] / hf["seconds"]
    print(json.dumps({
        "ours_tok_s": round(ours_tok_s, 1),
        "hf_tok_s": round(hf_tok_s, 1),
        "ratio": round(ours_tok_s / hf_tok_s, 2),
        "same_tokens": round(same, 3),
        "ours_compile_s": round(max(ours["first_s"] - ours["seconds"], 0.0), 1),
        "ours_pass_s": ours["all_s"], "hf_pass_s": hf["all_s"], "warmup": args["warmup"], "rounds": args["rounds"],
        "ours_peak_rss_mb": round(ours["rss_mb"]),
        "hf_peak_rss_mb": round(hf["rss_mb"]),
        "ours_tokens": ours["tokens"],
        "hf_tokens": hf["tokens"],
        "prompts": args["n"], "batch": args["batch"], "max_new_tokens": args["max_new_tokens"],
        "torch_threads": hf["threads"], "machine": f"{os.cpu_count()} CPU cores",
    }))


if __name__ == "__main__":
    main()
