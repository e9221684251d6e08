"""Sharded checkpoint load: each device reads its slice (now) vs. every device reads whole
tensors (before), on a random checkpoint with Llama-3.2-1B's shapes over 8 CPU devices (fsdp=8).

Each load runs in its own process (peak RSS is its own), alternating before/after. "before"
is the previous loader: every device's callback read the whole tensor with a positioned
read (np.fromfile) and kept its slice. Bytes read are the bytes copied out of the file.
Prints one JSON line last.

    python benchmarks/load_sharded.py [--repeats 2] [--layers 16] [--dir /tmp/ckpt-1b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Llama-3.2-1B's config.json shapes (weights are random).
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "rope_theta": 500000.0,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}  # fmt: skip

LOAD = r"""
import json, os, resource, sys, time
import numpy as np
mode, path = sys.argv[1], sys.argv[2]
from s3ft_jax.models import weights
from s3ft_jax.models.safetensors_io import SafetensorsFile
copied = [0]
if mode == "before":
    import ml_dtypes
    def read_slice(files, src, index, cfg):  # the previous loader: the whole tensor, then the slice
        path = files[src.hf_name].path
        with open(path, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            info = json.loads(fh.read(header_len))[src.hf_name]
        begin, end = info["data_offsets"]
        dtype = np.dtype({"BF16": ml_dtypes.bfloat16, "F32": np.float32}[info["dtype"]])
        full = np.fromfile(path, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=8 + header_len + begin)
        copied[0] += full.nbytes
        return src.layout.to_ours(full.reshape(info["shape"]), cfg)[index]
    weights.read_slice = read_slice
else:
    original = SafetensorsFile.read
    def read(self, name, index):
        out = original(self, name, index)
        copied[0] += out.nbytes
        return out
    SafetensorsFile.read = read
import jax
from s3ft_jax.models import from_pretrained
from s3ft_jax.sharding import make_mesh
mesh = make_mesh({"fsdp": 8})
t = time.perf_counter()
model = from_pretrained(path, dtype="bfloat16", mesh=mesh)
jax.block_until_ready(jax.tree.leaves(model))
seconds = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "bytes_read": copied[0], "peak_rss_mb": rss}))
"""


def make_checkpoint(out: Path, layers: int) -> int:
    """A random bf16 checkpoint with the 1B shapes, written one tensor at a time."""
    import ml_dtypes
    import numpy as np

    from s3ft_jax.models.config import ModelConfig
    from s3ft_jax.models.params import param_shapes
    from s3ft_jax.models.safetensors_io import write_file
    from s3ft_jax.models.weights import export_entries

    config = {**CONFIG, "num_hidden_layers": layers}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config))
    cfg = ModelConfig.from_hf_dict(config)
    entries = [(name, shape, np.dtype(ml_dtypes.bfloat16)) for name, shape, _, _ in export_entries(param_shapes(cfg), cfg)]
    rng = np.random.default_rng(0)
    arrays = (rng.standard_normal(shape, np.float32).astype(ml_dtypes.bfloat16) for _, shape, _ in entries)
    write_file(entries, arrays, out / "model.safetensors")
    return (out / "model.safetensors").stat().st_size


def run(mode: str, path: Path) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", LOAD, mode, str(path)], check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layers", type=int, default=CONFIG["num_hidden_layers"])
    parser.add_argument("--dir", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.dir or tmp) / "ckpt"
        size = make_checkpoint(path, args.layers) if not (path / "model.safetensors").is_file() else (path / "model.safetensors").stat().st_size
        results: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(args.repeats):
            for mode in ("before", "after"):
                results[mode].append(run(mode, path))
                print(mode, results[mode][-1], file=sys.stderr)

    def summary(rows: list[dict]) -> dict:
        return {
            "bytes_read_mb": round(rows[0]["bytes_read"] / 2**20),
            "seconds": [round(r["seconds"], 2) for r in rows],
            "peak_rss_mb": [round(r["peak_rss_mb"]) for r in rows],
        }

    print(json.dumps({
        "checkpoint_mb": round(size / 2**20), "layers": args.layers, "devices": 8, "mesh": "fsdp=8",
        "before": summary(results["before"]), "after": summary(results["after"]), "machine": f"{os.cpu_count()} CPU cores",
    }))  # fmt: skip


if __name__ == "__main__":
    main()
