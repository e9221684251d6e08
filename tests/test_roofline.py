"""Sampling's weights: compute dtype and a tensor-parallel layout, and the decode step's HBM
reads against the ideal (`s3ft plan`); libtpu kept quiet on a host without a TPU."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from s3ft_jax import hostenv
from s3ft_jax.cli import parse_config
from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.llama import LlamaForCausalLM
from s3ft_jax.plan import plan
from s3ft_jax.plan.programs import step_reads
from s3ft_jax.sampling.engine import SamplerEngine
from s3ft_jax.sharding import make_mesh

# Every split dimension divides 8 devices: heads, KV heads, MLP columns, vocabulary.
WIDE = {
    "architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 256, "rope_theta": 10000.0,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "eos_token_id": 2,
}  # fmt: skip


def _decode_row(tmp_path, *overrides):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(WIDE))
    config = parse_config([
        f"--config.plan.model={path}", "--config.plan.topology=cpu-8", "--config.plan.programs=('decode',)",
        "--config.model.dtype=bfloat16", "--config.model.param_dtype=float32", "--config.mesh.fsdp=-1",
        "--config.sampling.batch_size=8", "--config.sampling.max_new_tokens=32", "--config.plan.prompt_length=32", *overrides,
    ])  # fmt: skip
    _, _, (row,) = plan(config, log=lambda line: None)
    return row


def test_decode_reads_each_chips_share_once_under_fsdp(tmp_path):
    row = _decode_row(tmp_path)
    cfg = ModelConfig.from_hf_dict(WIDE)
    D, F, H, K, Dh, V, L = 64, 128, 8, 8, 8, 256, 2
    kernels = 2 * (L * (D * H * Dh + 2 * D * K * Dh + H * Dh * D + 3 * D * F) + 2 * V * D)  # bfloat16
    norms = 4 * (2 * L * D + D)  # float32, as rms_norm reads them
    cache = L * 2 * 8 * K * Dh * 64 * 2 + 8 * 64 * (4 + 1)  # bfloat16 K and V, int32 pos, bool valid
    assert cfg.num_layers == L
    assert row.ideal_bytes == pytest.approx((kernels + norms + cache) / 8)
    # Float32 weights gathered over fsdp read 8 x 2 = 16 times the ideal; the sampling form reads
    # its share (norms are replicated: the only excess).
    assert row.ideal_bytes <= row.bytes_per_chip <= 1.25 * row.ideal_bytes


def test_step_reads_counts_all_gathered_weights():
    mesh = make_mesh({"fsdp": 8})
    w = jax.ShapeDtypeStruct((64, 256), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec("fsdp", None)))
    x = jax.ShapeDtypeStruct((8, 64), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec("fsdp", None)))
    # The batch and the weight's rows on the same devices: the weight is gathered whole.
    gathered = jax.jit(lambda x, w: x @ w).lower(x, w).compile()
    assert step_reads(gathered, (w,)) >= 64 * 256 * 4
    # Columns split, rows whole: each device reads its eighth, nothing is gathered.
    split = jax.ShapeDtypeStruct((64, 256), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec(None, "fsdp")))
    replicated_x = jax.ShapeDtypeStruct((8, 64), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec()))
    local = jax.jit(lambda x, w: x @ w).lower(replicated_x, split).compile()
    assert step_reads(local, (split,)) == 64 * 256 * 4 / 8


def test_engine_holds_compute_dtype_weights_split_over_heads():
    cfg = ModelConfig.from_hf_dict(WIDE)
    mesh = make_mesh({"fsdp": 8})
    model = LlamaForCausalLM(cfg, param_dtype=jnp.float32, dtype=jnp.bfloat16, mesh=mesh)
    engine = SamplerEngine(model)
    layer = engine.params["layers"][0]
    q, norm = layer["q_proj"]["kernel"], layer["input_norm"]["scale"]
    assert q.dtype == jnp.bfloat16 and norm.dtype == jnp.float32  # norms are read in float32
    assert q.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec(None, "fsdp", None)), 3)  # heads split, embed whole
    assert engine.multiple == 1  # the batch is split over data only (size 1 here)
    source = model.layers.q_proj.kernel.get_value()[0]
    np.testing.assert_array_equal(np.asarray(q, np.float32), np.asarray(source.astype(jnp.bfloat16), np.float32))
    # float32 compute keeps float32 weights: only narrowing casts.
    full = SamplerEngine(LlamaForCausalLM(cfg, param_dtype=jnp.float32, dtype=jnp.float32))
    assert full.params["layers"][0]["q_proj"]["kernel"].dtype == jnp.float32


def test_lora_frozen_base_is_held_in_the_compute_dtype(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(WIDE))
    common = [
        f"--config.plan.model={path}", "--config.plan.topology=cpu-8", "--config.plan.programs=('train',)",
        "--config.model.dtype=bfloat16", "--config.train.max_length=32", "--config.train.batch_size=8", "--config.lora.enabled=True",
    ]  # fmt: skip
    args = {}
    for dtype in ("float32", "bfloat16"):
        _, _, (row,) = plan(parse_config([*common, f"--config.model.param_dtype={dtype}"]), log=lambda line: None)
        args[dtype] = row.argument_bytes
    # Only the norm scales follow param_dtype (read in float32); every kernel is held in bfloat16.
    assert args["float32"] - args["bfloat16"] == 2 * (2 * WIDE["num_hidden_layers"] + 1) * WIDE["hidden_size"]
    _, _, (full,) = plan(parse_config([*common, "--config.lora.enabled=False"]), log=lambda line: None)
    assert full.argument_bytes > args["bfloat16"]  # trained weights stay float32 master copies


def test_libtpu_settings_only_where_no_tpu():
    env = {"TPU_WORKER_ID": "3"}
    assert hostenv.quiet_libtpu(env, tpu=False)
    assert env["TPU_SKIP_MDS_QUERY"] == "1" and env["TPU_WORKER_ID"] == "3"  # what is set is kept
    env = {}
    assert not hostenv.quiet_libtpu(env, tpu=True) and env == {}  # a TPU host is left alone


def test_starting_jax_with_libtpu_installed_prints_nothing():
    import libtpu  # noqa: F401  (the test environment has it: setup.cfg's test extra)

    env = {k: v for k, v in os.environ.items() if not k.startswith("TPU_") and k not in ("JAX_PLATFORMS", "ALLOW_MULTIPLE_LIBTPU_LOAD")}
    code = "import s3ft_jax, jax; jax.devices(); print('ok')"
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "ok"
    assert quiet.stderr == "", quiet.stderr
    # Without the package's settings libtpu does complain: the check above can fail.
    loud = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env, capture_output=True, text=True, timeout=120)
    assert "TPU" in loud.stderr
