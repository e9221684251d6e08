"""Model FLOPs utilisation of our full fine-tuning step on a GPU (or a quick CPU smoke run).

A random Llama-3.2-1B-shaped model (hidden 2048, 16 layers, 32 heads / 8 KV heads, MLP 8192,
vocab 128256, tied embeddings, RoPE theta 500000 with llama3 scaling), float32 master
weights, bfloat16 compute, AdamW, sequence 2048, every position trained, all devices on the
fsdp axis. MFU = 6 x params x tokens / step time / peak FLOP/s, with params the non-embedding
weights plus the (tied) LM head, i.e. all of them once; attention's own FLOPs are not counted,
as usual. Needs only jax, flax, optax and numpy. Prints one JSON line last.

    python benchmarks/train_gpu.py                       # H100/H200: batch 8, remat minimal, cuDNN attention
    python benchmarks/train_gpu.py --batch 16 --remat full --peak-tflops 989   # if memory runs short
    python benchmarks/train_gpu.py --tiny                # CPU smoke test of the same code
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from flax import nnx  # noqa: E402

from s3ft_jax.models.config import ModelConfig, RopeConfig  # noqa: E402
from s3ft_jax.models.llama import ForwardSpec, LlamaForCausalLM  # noqa: E402
from s3ft_jax.models.params import param_logical_axes, param_shapes  # noqa: E402
from s3ft_jax.sharding import DEFAULT_RULES, make_mesh  # noqa: E402
from s3ft_jax.training import data as data_lib  # noqa: E402
from s3ft_jax.training import step as step_lib  # noqa: E402
from s3ft_jax.training.settings import TrainSettings  # noqa: E402
from s3ft_jax.training.trainer import setup  # noqa: E402


def llama_1b(tiny: bool) -> ModelConfig:
    size = dict(hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64, vocab_size=128256)
    if tiny:
        size = dict(hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32, vocab_size=1024)
    return ModelConfig(
        architecture="LlamaForCausalLM", rms_norm_eps=1e-5, max_position_embeddings=131072,
        rope=RopeConfig(theta=500000.0, rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                        original_max_position_embeddings=8192),
        qkv_bias=False, o_bias=False, mlp_bias=False, tie_word_embeddings=True,
        sliding_windows=(0,) * size["num_layers"], eos_token_ids=(128001,), **size,
    )  # fmt: skip


def random_params(cfg: ModelConfig, mesh, seed: int = 0) -> dict:
    """The model's own random initialisation (float32), made on device directly in the
    parameters' shardings: a 1B model is never whole on one device or on the host."""
    shardings = step_lib.param_shardings(mesh, DEFAULT_RULES, param_logical_axes(cfg), param_shapes(cfg))

    def init():
        model = LlamaForCausalLM(cfg, param_dtype=jnp.float32, rngs=nnx.Rngs(seed))
        return nnx.to_pure_dict(nnx.state(model, nnx.Param))

    return jax.jit(init, out_shardings=shardings)()


def full_rows(cfg: ModelConfig, batch: int, seq: int, row_multiple: int) -> dict:
    """A batch of random token rows with every position trained (pretraining-style), so the
    LM head sees all tokens; laid out by the training data code."""
    tokens = np.random.RandomState(0).randint(0, cfg.vocab_size, (batch, seq + 1)).astype(np.int32)
    examples = [data_lib.Example(row, n_prompt=0) for row in tokens]
    rows = [[i] for i in range(batch)]
    return data_lib.make_batch(examples, rows, num_rows=batch, grad_accum=1, row_multiple=row_multiple, max_length=seq)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--remat", default="minimal", choices=["minimal", "none", "full", "dots"])
    parser.add_argument("--attention", default=None, choices=["xla", "cudnn", "dot_product"], help="default: cudnn on GPU, xla elsewhere")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None, help="per device; default 989 (H100/H200 bf16 dense), 1 on CPU")
    parser.add_argument("--tiny", action="store_true", help="a tiny model on CPU: a smoke test of this script")
    args = parser.parse_args()
    if args.tiny:
        args.batch, args.seq, args.steps, args.warmup = min(args.batch, 4), min(args.seq, 128), min(args.steps, 3), 1

    backend = jax.default_backend()
    attention = args.attention or ("cudnn" if backend == "gpu" else "xla")
    peak = (args.peak_tflops or (989.0 if backend == "gpu" else 1.0)) * 1e12 * jax.device_count()
    cfg = llama_1b(args.tiny)
    mesh = make_mesh({"fsdp": -1})
    spec = ForwardSpec(cfg, jnp.dtype(args.dtype), DEFAULT_RULES, mesh)
    params = random_params(cfg, mesh)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    settings = TrainSettings(
        model_name="random llama-3.2-1b shape", dtype=args.dtype, learning_rate=1e-5, schedule="constant", remat=args.remat,
        attention=attention,
    )  # fmt: skip
    trainer = setup(params, cfg, spec, settings, None, mesh, total_steps=1000)
    del params
    state = trainer.take_state()
    B, T = args.batch, args.seq
    batch = trainer.device_batch(full_rows(cfg, B, T, trainer.rows_multiple))

    times, losses = [], []
    for _ in range(args.warmup + args.steps):
        t = time.perf_counter()
        state, metrics = trainer.step(state, trainer.frozen, batch)
        losses.append(float(metrics["loss"]))  # waits for the step
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times[args.warmup :])
    flops = 6 * n_params * B * T
    memory = {}
    try:
        stats = jax.devices()[0].memory_stats() or {}
        memory = {"peak_gpu_mem_gb": round(stats.get("peak_bytes_in_use", 0) / 2**30, 2)}
    except Exception:
        pass
    print(json.dumps({
        "bench": "train", "mfu": round(flops / step_s / peak, 4), "step_s": round(step_s, 4), "tokens_per_s": round(B * T / step_s, 1),
        "compile_s": round(max(times[0] - step_s, 0.0), 1), "params": n_params, "batch": B, "seq": T,
        "remat": args.remat, "attention": attention, "dtype": args.dtype, "devices": jax.device_count(),
        "device": jax.devices()[0].device_kind, "peak_tflops_per_device": peak / 1e12 / jax.device_count(),
        "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4), "tiny": args.tiny, **memory,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
