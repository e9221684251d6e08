"""Sampler decode speed on a GPU: ours against the HBM roofline and transformers `generate`.

A random Llama-3.2-1B-shaped model in bfloat16 (16 layers, hidden 2048, 32 heads / 8 KV
heads, vocab 128256, tied embeddings), random prompts of `--prompt-len` tokens, greedy,
`--new-tokens` new tokens with no early stop, batches 1, 64 and 256. Three processes run one
after another (so JAX's and torch's allocators never share the card): one writes the random
checkpoint, one times HF `generate`, one times ours.

The HF baseline is HF's fast path: a static KV cache (`cache_implementation="static"`), with
which `generate` compiles the decode step with `torch.compile` (fullgraph, CUDA graphs) on
CUDA; on a CPU (`--tiny`) transformers does not compile. Both sides are timed the same way:
warm-up calls first (ours: the compiling call; HF: the compiling full call twice and a
prefill-only call), then `--repeats` rounds alternating a prefill-only call and a full call,
and decode tokens/s = batch x (new tokens - 1) / median(full call - prefill-only call).
The roofline is the time to read, once per step, every weight plus the KV cache of the
tokens so far (prompt + step, averaged over the steps) at the card's memory bandwidth: the
datasheet figure, and the copy bandwidth measured here.

    python benchmarks/sampler_gpu.py [--batches 1,64,256] [--new-tokens 512] [--repeats 3] [--tiny]

`--tiny` shrinks the model so the script can be smoke-tested on a CPU. Prints one JSON line
per batch ({"bench": "decode", "batch": ...}), then the summary line last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LLAMA_1B = dict(
    hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
    num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
    rope_theta=500000.0, max_position_embeddings=131072, rms_norm_eps=1e-5,
    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
)
TINY = dict(LLAMA_1B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=512)

# Datasheet HBM bandwidth (bytes/s) by device-name fragment.
DATASHEET_BW = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}

MAKE = r"""
import json, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
args = json.loads(sys.argv[1])
torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
with torch.device(device):
    model = LlamaForCausalLM(LlamaConfig(**args["shape"], bos_token_id=1, eos_token_id=2, pad_token_id=0)).to(torch.bfloat16)
model.save_pretrained(args["dir"])
print(json.dumps({"params": sum(p.numel() for p in model.parameters())}))
"""

HF = r"""
import json, sys, time, statistics, numpy as np, torch
from transformers import AutoModelForCausalLM
args = json.loads(sys.argv[1])
device = "cuda" if torch.cuda.is_available() else "cpu"
model = AutoModelForCausalLM.from_pretrained(args["dir"], dtype=torch.bfloat16).to(device).eval()
model.generation_config.eos_token_id = None
# HF's fast path: a static cache, with which generate torch.compiles the decode step on CUDA.
model.generation_config.cache_implementation = "static"
def sync():
    if device == "cuda": torch.cuda.synchronize()
def run(ids, n):
    sync(); t = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=0)
    sync(); return time.perf_counter() - t, out
result = {"compiled": device == "cuda", "static_cache": True}
for batch in args["batches"]:
    ids = torch.tensor(np.random.default_rng(batch).integers(3, args["vocab"], (batch, args["prompt_len"])), device=device)
    t = time.perf_counter()
    run(ids, args["new_tokens"]); run(ids, args["new_tokens"]); run(ids, 1)  # warm-up: compiles, records graphs
    warmup = time.perf_counter() - t
    prefills, totals = [], []
    for _ in range(args["repeats"]):  # alternate, as ours
        prefills.append(run(ids, 1)[0])
        total, out = run(ids, args["new_tokens"])
        totals.append(total)
    assert out.shape[1] == args["prompt_len"] + args["new_tokens"], out.shape
    decode = statistics.median(t - p for t, p in zip(totals, prefills))
    result[batch] = {"total_s": statistics.median(totals), "prefill_s": statistics.median(prefills), "warmup_s": warmup,
                     "decode_tok_s": batch * (args["new_tokens"] - 1) / decode,
                     "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None}
print(json.dumps(result))
"""

OURS = r"""
import json, sys, time, statistics, numpy as np, jax, jax.numpy as jnp
from flax import nnx
from s3ft_jax.models import from_pretrained
from s3ft_jax.sampling.params import SamplingParams
from s3ft_jax.models.llama import unstack_layers
from s3ft_jax.sampling.engine import generate
from s3ft_jax.sampling.options import SamplingOptions
from s3ft_jax.sampling.sampler import decode, empty_state, insert
from s3ft_jax.sampling.scheduler import bucket, row_slots
args = json.loads(sys.argv[1])
model = from_pretrained(args["dir"], dtype="bfloat16")
params = unstack_layers(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
spec = model.spec
weight_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
greedy = SamplingParams.make()
no_eos = jnp.asarray([-1], jnp.int32)

def copy_bandwidth():
    x = jnp.ones((1 << (20 if args["tiny"] else 30),), jnp.bfloat16)  # 2 GiB (2 MiB for --tiny)
    double = jax.jit(lambda x: x * 2)
    double(x).block_until_ready()
    t = time.perf_counter()
    for _ in range(10): y = double(x)
    y.block_until_ready()
    return 10 * 2 * x.size * x.dtype.itemsize / (time.perf_counter() - t)

class NoTextTokenizer:  # the decode-speed run needs ids only
    pad_token_id, eos_token_id = 0, None
    def decode(self, ids, skip_special_tokens=True): return ""

def one_run(ids, mask, rows, gen_len, n):
    # The whole batch as one refill group: one prefill, then n - 1 decode steps.
    t0 = time.perf_counter()
    state = empty_state(spec, None, ids.shape[0], row_slots(ids.shape[1], n), gen_len)
    state = insert(params, spec, state, None, rows, ids, mask, rows, jnp.int32(0), greedy, no_eos, jnp.int32(n))
    state.count.block_until_ready(); t1 = time.perf_counter()
    state = decode(params, spec, state, jnp.int32(0), greedy, no_eos, jnp.int32(n), jnp.int32(n), jnp.int32(ids.shape[0]), False)
    state.tokens.block_until_ready(); t2 = time.perf_counter()
    return t1 - t0, t2 - t1, state

result = {"weight_bytes": weight_bytes, "copy_bw": copy_bandwidth(), "device": jax.devices()[0].device_kind}
cfg = spec.cfg
kv_bytes_per_token = cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * 2
for batch in args["batches"]:
    P, N = args["prompt_len"], args["new_tokens"]
    ids = jnp.asarray(np.random.default_rng(batch).integers(3, args["vocab"], (batch, P)), jnp.int32)
    mask = jnp.ones((batch, P), jnp.int32)
    rows = jnp.arange(batch, dtype=jnp.int32)
    gen_len = bucket(N)
    t = time.perf_counter(); one_run(ids, mask, rows, gen_len, N); compile_s = time.perf_counter() - t
    # Timed as HF's side: full call - prefill, the median over alternating rounds (here the
    # prefill is the same call's first program, the same work as a prefill-only call).
    runs = [one_run(ids, mask, rows, gen_len, N) for _ in range(args["repeats"])]
    dec = statistics.median(d for _, d, _ in runs)
    pre, state = statistics.median(p for p, _, _ in runs), runs[-1][2]
    assert int(state.t) == N - 1 and bool((np.asarray(state.tokens)[:, :N] >= 0).all())
    prompts = [list(map(int, row)) for row in np.asarray(ids)]
    options = SamplingOptions(max_new_tokens=N, batch_size=batch)
    generate(model, NoTextTokenizer(), prompts, options, eos_ids=[])
    t = time.perf_counter()
    out = generate(model, NoTextTokenizer(), prompts, options, eos_ids=[])
    e2e = time.perf_counter() - t
    assert all(len(g.token_ids) == N for g in out)
    kv_avg = batch * (P + N / 2) * kv_bytes_per_token  # KV bytes a step must read, averaged
    result[batch] = {
        "compile_s": max(0.0, compile_s - pre - dec), "prefill_s": pre, "decode_s": dec,
        "decode_tok_s": batch * (N - 1) / dec,
        "e2e_tok_s": batch * N / e2e,
        "bytes_per_step_ideal": weight_bytes + kv_avg,
        "ms_per_step": 1e3 * dec / (N - 1),
    }
print(json.dumps(result))
"""


def run(code: str, args: dict, env_extra: dict | None = None) -> dict:
    import os

    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"benchmark process failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,64,256")
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed rounds per side and batch (median)")
    parser.add_argument("--tiny", action="store_true", help="small model, for a CPU smoke test")
    parser.add_argument("--skip-hf", action="store_true")
    a = parser.parse_args(argv)
    try:
        a.batches = [int(b) for b in a.batches.split(",")]
    except ValueError:
        parser.error(f"--batches takes comma-separated integers, got {a.batches!r}")
    if min(a.batches) < 1 or a.new_tokens < 2 or a.prompt_len < 1 or a.repeats < 1:
        parser.error("--batches must be positive, --new-tokens at least 2, --prompt-len and --repeats at least 1")
    return a


def summarize(a, made: dict, hf: dict, ours: dict) -> tuple[list[dict], dict]:
    """One row per batch (ours, the roofline and HF's baseline), and the summary."""
    device = ours["device"]
    datasheet = next((bw for name, bw in DATASHEET_BW.items() if name in device), None)
    summary = {"device": device, "params": made["params"], "copy_bw_tb_s": round(ours["copy_bw"] / 1e12, 2),
               "datasheet_bw_tb_s": datasheet and datasheet / 1e12, "prompt_len": a.prompt_len, "new_tokens": a.new_tokens,
               "repeats": a.repeats}
    rows = []
    for batch in a.batches:
        o = ours[str(batch)]
        row = {"ours_decode_tok_s": round(o["decode_tok_s"]), "ours_e2e_tok_s": round(o["e2e_tok_s"]),
               "ours_ms_per_step": round(o["ms_per_step"], 3), "ours_compile_s": round(o["compile_s"], 1)}
        for name, bw in (("datasheet", datasheet), ("measured", ours["copy_bw"])):
            if bw:
                roofline = batch / (o["bytes_per_step_ideal"] / bw)
                row[f"roofline_{name}_tok_s"] = round(roofline)
                row[f"of_roofline_{name}"] = round(o["decode_tok_s"] / roofline, 3)
        if hf:
            h = hf[str(batch)]
            row.update(hf_decode_tok_s=round(h["decode_tok_s"]), vs_hf=round(o["decode_tok_s"] / h["decode_tok_s"], 2),
                       hf_static_cache=hf["static_cache"], hf_compiled=hf["compiled"], hf_warmup_s=round(h["warmup_s"], 1))
        summary[f"batch_{batch}"] = row
        rows.append({"bench": "decode", "batch": batch, "device": device, "prompt_len": a.prompt_len,
                     "new_tokens": a.new_tokens, **row})
    return rows, summary


def main(argv=None) -> None:
    a = parse_args(argv)
    shape = TINY if a.tiny else LLAMA_1B
    with tempfile.TemporaryDirectory() as tmp:
        args = {"dir": tmp, "shape": shape, "batches": a.batches, "new_tokens": a.new_tokens, "prompt_len": a.prompt_len,
                "vocab": shape["vocab_size"], "repeats": a.repeats, "tiny": a.tiny}
        made = run(MAKE, args)
        hf = {} if a.skip_hf else run(HF, args)
        ours = run(OURS, args)
    rows, summary = summarize(a, made, hf, ours)
    for row in rows:
        print(json.dumps(row))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
