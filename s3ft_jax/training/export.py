"""The fine-tuned model: base weights + the newest good checkpoint, LoRA merged; and its export
to a Hugging Face directory that `transformers` loads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax
from flax import nnx

from s3ft_jax.errors import S3FTError
from s3ft_jax.training import lora as lora_lib
from s3ft_jax.training import step as step_lib
from s3ft_jax.training.loop import lora_config, split_params

log = logging.getLogger("s3ft_jax")


def load_trained(config, workdir: str | Path | None = None, *, mesh=None, dtype: str | None = None):
    """A LlamaForCausalLM holding the trained weights (float32, LoRA merged), and its step."""
    from s3ft_jax.config import mesh_shape
    from s3ft_jax.models import from_pretrained
    from s3ft_jax.sharding import make_mesh
    from s3ft_jax.training.checkpoint import Checkpointer

    workdir = Path(workdir if workdir is not None else config.workdir)
    directory = workdir / "train" / "checkpoints"
    if not directory.is_dir():
        raise S3FTError(f"no training checkpoints in {directory}: run `s3ft train` first")
    mesh = mesh if mesh is not None else make_mesh(mesh_shape(config))
    lcfg = lora_config(config)
    model = from_pretrained(config.model.name, dtype=dtype or config.model.dtype, param_dtype="float32", mesh=mesh)
    graphdef, model_state = nnx.split(model)
    base = nnx.to_pure_dict(model_state)
    params, frozen, _, _ = split_params(base, model.cfg, model.spec, lcfg, mesh, config.seed)
    abstract = {"params": jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), params)}
    del params
    ckpt = Checkpointer(directory, keep=0, async_save=False)
    try:
        restored = ckpt.restore_latest(abstract, None, params_only=True, delete_bad=False)
    finally:
        ckpt.close()
    if restored is None:
        raise S3FTError(f"no training checkpoints in {directory}: run `s3ft train` first")
    state, meta = restored
    merged = step_lib.merge_trees(frozen, state["params"]) if lcfg is not None else state["params"]
    if lcfg is not None:
        merged = jax.jit(lambda p: lora_lib.merge(p, lcfg))(merged)
    nnx.replace_by_pure_dict(model_state, _only_model_keys(merged, base))
    return nnx.merge(graphdef, model_state), int(meta["step"])


def _only_model_keys(params: dict, like: dict) -> dict:
    return {k: _only_model_keys(params[k], v) if isinstance(v, dict) else params[k] for k, v in like.items()}


def export_hf(config, output: str | Path | None = None, workdir: str | Path | None = None, *, mesh=None) -> Path:
    """Write the trained model (LoRA merged) as an HF directory: config.json, safetensors, tokenizer."""
    from s3ft_jax.models import resolve_model_path, save_pretrained

    workdir = Path(workdir if workdir is not None else config.workdir)
    out = Path(output or config.export.output or workdir / "export")
    model, step = load_trained(config, workdir, mesh=mesh)
    source = resolve_model_path(config.model.name)
    dtype = config.export.dtype or _checkpoint_dtype(source)
    save_pretrained(model, out, dtype=dtype, source=source)
    log.info("exported step %d of %s to %s (%s)", step, workdir / "train", out, dtype)
    return out


def _checkpoint_dtype(source: Path) -> str:
    try:
        hf = json.loads((source / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "float32"
    name = hf.get("torch_dtype") or hf.get("dtype") or "float32"
    return name if name in ("float32", "bfloat16", "float16") else "float32"
