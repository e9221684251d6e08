"""Train-step speed and memory: ours against a plain PyTorch eager loop, same model, same batch.

Embedded SmolLM2-135M-Instruct, float32, one batch of 8 rows x 256 tokens built from the first
GSM8K training examples (chat-rendered prompt + gold answer + EOS, loss on the answer and EOS
only, rows right-padded to 256). Two modes: full fine-tuning, and LoRA (r=8, alpha=16,
dropout 0.1 on q_proj and v_proj). Both sides run AdamW (lr 1e-4) with gradient clipping at
1.0 and the same masked mean cross-entropy; the PyTorch side is `transformers`'
LlamaForCausalLM (sdpa attention) with a minimal LoRA wrapper for the LoRA mode.

Both processes get the same allocator settings: by default the malloc tunable that the
`s3ft` command sets for itself (s3ft_jax/hostenv.py, `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`,
about 8% on our step); `--malloc default` runs both without it, `--malloc both` measures each
mode both ways (entries "full@hugetlb", "full@default", ...).

Activation memory differs by design unless asked otherwise: our side rematerialises with
`--remat` (train.remat, default minimal), the PyTorch side keeps every activation (no
gradient checkpointing) unless `--torch-checkpointing` (HF's per-layer checkpointing, the
nearest to remat full). The JSON names both ("ours_remat", "torch_checkpointing"), so a
memory ratio is read with them.

Each (framework, mode) runs in its own process, so each peak RSS (VmHWM) is its own. The two
processes of a mode live side by side and step alternately (ours, then PyTorch, ...), so
background load on a shared machine hits both alike. Step time is the median of the timed
steps after warm-up (our compile is in the first step and reported separately). Prints one
JSON line last.

    python benchmarks/train_step.py [--warmup 2] [--steps 4] [--modes full,lora]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

from worker import Worker  # benchmarks/worker.py (this script's folder is on sys.path)

COMMON = r"""
import json, os, statistics, sys, time
import numpy as np
args = json.loads(sys.argv[1])
batch = dict(np.load(args["batch"]))
def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
def serve(step, **extra):
    # The parent alternates the two frameworks step by step ("step" on stdin), so both see
    # the same background load; each answer is one JSON line.
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t = time.perf_counter()
        loss = step()
        print(json.dumps({"seconds": time.perf_counter() - t, "loss": loss}), flush=True)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), **extra}), flush=True)
"""

OURS = COMMON + r"""
import jax
from flax import nnx
from s3ft_jax.models import from_pretrained, resolve_model_path
from s3ft_jax.sharding import make_mesh
from s3ft_jax.training.settings import LoraSettings, TrainSettings
from s3ft_jax.training.trainer import setup
mesh = make_mesh({"fsdp": 1}, jax.devices()[:1])
path = resolve_model_path("smollm2-135m-instruct")
model = from_pretrained(path, dtype="float32", mesh=mesh)
# What `s3ft train` runs (train.remat from the command line), on a constant learning rate.
settings = TrainSettings(model_name=str(path), learning_rate=1e-4, schedule="constant", remat=args["remat"], seed=0)
lora = LoraSettings() if args["mode"] == "lora" else None
base = nnx.to_pure_dict(nnx.state(model, nnx.Param))
trainer = setup(base, model.cfg, model.spec, settings, lora, mesh, total_steps=100); del model, base
state = trainer.take_state()
gb = trainer.device_batch({k: v[None] for k, v in batch.items()})
trainable = int(sum(x.size for x in jax.tree.leaves(state["params"])))
def step():
    global state
    state, metrics = trainer.step(state, trainer.frozen, gb)
    return float(metrics["loss"])
serve(step, trainable=trainable)
"""

TORCH = COMMON + r"""
import torch
from transformers import AutoModelForCausalLM
from s3ft_jax.models import resolve_model_path
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(resolve_model_path("smollm2-135m-instruct"), dtype=torch.float32)
model.train()
if args["torch_checkpointing"]:  # recompute each decoder layer in the backward pass
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

class LoraLinear(torch.nn.Module):
    def __init__(self, base, r=8, alpha=16, dropout=0.1):
        super().__init__()
        self.base, self.scale = base, alpha / r
        self.dropout = torch.nn.Dropout(dropout)
        self.lora_A = torch.nn.Linear(base.in_features, r, bias=False)
        self.lora_B = torch.nn.Linear(r, base.out_features, bias=False)
        torch.nn.init.kaiming_uniform_(self.lora_A.weight, a=5 ** 0.5)
        torch.nn.init.zeros_(self.lora_B.weight)
    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scale

if args["mode"] == "lora":
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        layer.self_attn.q_proj = LoraLinear(layer.self_attn.q_proj)
        layer.self_attn.v_proj = LoraLinear(layer.self_attn.v_proj)
trainable = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0)
ids = torch.from_numpy(batch["input_ids"]).long()
mask = torch.from_numpy((batch["segment_ids"] > 0).astype("int64"))
weights = torch.from_numpy(batch["weights"])
labels = torch.from_numpy(batch["labels"]).long()
def step():
    logits = model(input_ids=ids, attention_mask=mask).logits
    ce = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="none")
    loss = (ce * weights.flatten()).sum() / weights.sum()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()
serve(step, threads=torch.get_num_threads(), trainable=sum(p.numel() for p in trainable))
"""


def make_batch(path: str, rows: int, length: int) -> dict:
    """The first GSM8K training examples as one [rows, length] batch, saved to `path`."""
    import numpy as np

    from s3ft_jax.models import load_tokenizer
    from s3ft_jax.tasks import gsm8k
    from s3ft_jax.tasks.data import resolve_data_dir
    from s3ft_jax.training import data as data_lib

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    examples = gsm8k.load_split(resolve_data_dir(None), "train")
    rows_in = [{"prompt": gsm8k.PREDICTION_PROMPT.format(question=e["question"]), "target": e["answer"]} for e in examples]
    # A short --length drops the examples whose prompt alone fills it: read on until `rows` remain.
    for take in (rows, 4 * rows, 16 * rows):
        tokenized, stats = data_lib.tokenize(rows_in[:take], tokenizer, length + 1)
        if len(tokenized) >= rows:
            break
    else:
        sys.exit(f"only {len(tokenized)} of the first {take} GSM8K examples have a target token within --length {length}")
    tokenized = tokenized[:rows]
    batch = data_lib.make_batch(tokenized, [[i] for i in range(rows)], num_rows=rows, grad_accum=1, row_multiple=1, max_length=length)
    full = {}
    for key, value in batch.items():
        if key.startswith("loss_"):
            full[key] = value[0]
            continue
        assert value.shape == (1, rows, length), value.shape  # the longest rows fill all 256
        full[key] = value[0]
    np.savez(path, **full)
    return {"real_tokens": int((full["segment_ids"] > 0).sum()), "trained_tokens": int(full["weights"].sum()), "truncated": stats.truncated}


def allocator_environ(environ, malloc: str) -> dict:
    """`environ` with the malloc tunable `s3ft` uses ("hugetlb") or without it ("default")."""
    from s3ft_jax import hostenv

    env = dict(environ)
    kept = [t for t in env.pop("GLIBC_TUNABLES", "").split(":") if t and not t.startswith("glibc.malloc.hugetlb=")]
    if kept:
        env["GLIBC_TUNABLES"] = ":".join(kept)
    return hostenv.tuned_environ(env) if malloc == "hugetlb" else env


def start(code: str, name: str, args: dict) -> Worker:
    """One framework's process, with the same allocator settings for both frameworks."""
    env = allocator_environ(os.environ, args["malloc"])
    env.pop("XLA_FLAGS", None)
    return Worker(name, code, args, env=env)


def run_mode(args: dict, only: str | None) -> dict:
    """Both frameworks alive at once, stepping alternately: warm-up steps, then timed ones."""
    workers = [start(code, name, args) for code, name in ((OURS, "ours"), (TORCH, "torch")) if only in (None, name)]
    times = {w.name: [] for w in workers}
    losses = {w.name: [] for w in workers}
    for _ in range(args["warmup"] + args["steps"]):
        for w in workers:
            r = w.send("step")
            times[w.name].append(r["seconds"])
            losses[w.name].append(r["loss"])
    out = {}
    for w in workers:
        final = w.finish()
        timed = times[w.name][args["warmup"] :]
        out[w.name] = {
            "step_s": statistics.median(timed), "min_step_s": min(timed), "first_step_s": times[w.name][0],
            "losses": losses[w.name], **final,
        }  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--modes", default="full,lora")
    parser.add_argument("--remat", default="minimal", help="train.remat for our side")
    parser.add_argument("--only", choices=["ours", "torch"], default=None, help="run one side (for profiling)")
    parser.add_argument("--malloc", choices=["hugetlb", "default", "both"], default="hugetlb",
                        help="allocator settings, the same for both sides; both: measure each way")
    parser.add_argument("--torch-checkpointing", action="store_true", help="gradient checkpointing on the PyTorch side")
    cli = parser.parse_args()
    mallocs = ["hugetlb", "default"] if cli.malloc == "both" else [cli.malloc]
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "batch.npz")
        info = make_batch(path, cli.rows, cli.length)
        for mode, malloc in [(m, a) for m in cli.modes.split(",") for a in mallocs]:
            args = {"batch": path, "mode": mode, "warmup": cli.warmup, "steps": cli.steps, "remat": cli.remat,
                    "malloc": malloc, "torch_checkpointing": cli.torch_checkpointing}
            both = run_mode(args, cli.only)
            ours, ref = both.get("ours"), both.get("torch")
            tokens = cli.rows * cli.length
            entry = {}
            if ours:
                entry.update(ours_tok_s=round(tokens / ours["step_s"], 1), ours_step_s=round(ours["step_s"], 2),
                             ours_compile_s=round(max(ours["first_step_s"] - ours["step_s"], 0.0), 1),
                             ours_peak_rss_mb=round(ours["peak_rss_mb"]), trainable=ours["trainable"])  # fmt: skip
            if ref:
                entry.update(torch_tok_s=round(tokens / ref["step_s"], 1), torch_step_s=round(ref["step_s"], 2),
                             torch_peak_rss_mb=round(ref["peak_rss_mb"]), torch_threads=ref["threads"])  # fmt: skip
            if ours and ref:
                entry["ratio"] = round(ref["step_s"] / ours["step_s"], 2)
                entry["memory_ratio"] = round(ours["peak_rss_mb"] / ref["peak_rss_mb"], 2)
                entry["first_loss_diff"] = round(abs(ours["losses"][0] - ref["losses"][0]), 5)
            key = f"{mode}@{malloc}" if cli.malloc == "both" else mode
            result[key] = entry
            print(f"{key}: {json.dumps(entry)}", file=sys.stderr)
    print(json.dumps({
        **result, "batch": f"{cli.rows}x{cli.length}", **info, "dtype": "float32",
        "timed_steps": cli.steps, "remat": cli.remat, "machine": f"{os.cpu_count()} CPU cores",
        "malloc": cli.malloc, "ours_remat": cli.remat,
        "torch_checkpointing": "per layer (HF gradient checkpointing)" if cli.torch_checkpointing else "none",
        "memory_note": (f"ours rematerialises (remat {cli.remat}); PyTorch "
                        + ("checkpoints every layer" if cli.torch_checkpointing else "keeps every activation")),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
