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
from s3ft_jax.training.settings import TrainSettings
from s3ft_jax.training.trainer import split_params

log = logging.getLogger("s3ft_jax")


def load_trained(
    settings: TrainSettings, lora: lora_lib.LoraSettings | None, workdir: str | Path, *, mesh=None, dtype: str | None = None
):
    """A LlamaForCausalLM holding the trained weights (float32, LoRA merged), and its step.
    `dtype` is its compute dtype (default settings.dtype); the mesh defaults to every device
    on the fsdp axis."""
    from s3ft_jax.models import from_pretrained
    from s3ft_jax.sharding import make_mesh
    from s3ft_jax.training.checkpoint import Checkpointer

    directory = Path(workdir) / "train" / "checkpoints"
    if not directory.is_dir():
        raise S3FTError(f"no training checkpoints in {directory}: run `s3ft train` first")
    mesh = mesh if mesh is not None else make_mesh()
    model = from_pretrained(settings.model_name, dtype=dtype or settings.dtype, param_dtype="float32", mesh=mesh)
    graphdef, model_state = nnx.split(model)
    base = nnx.to_pure_dict(model_state)
    params, frozen, _, _ = split_params(base, model.cfg, model.spec, lora, mesh, settings.seed)
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
    merged = jax.jit(lambda f, a: lora_lib.merge(f, a, lora))(frozen, state["params"]) if lora is not None else state["params"]
    nnx.replace_by_pure_dict(model_state, _only_model_keys(merged, base))
    return nnx.merge(graphdef, model_state), int(meta["step"])


def _only_model_keys(params: dict, like: dict) -> dict:
    return {k: _only_model_keys(params[k], v) if isinstance(v, dict) else params[k] for k, v in like.items()}


def export_hf(
    settings: TrainSettings,
    lora: lora_lib.LoraSettings | None,
    workdir: str | Path,
    output: str | Path | None = None,
    *,
    dtype: str = "",
    mesh=None,
) -> Path:
    """Write the trained model (LoRA merged) as an HF directory: config.json, safetensors,
    tokenizer. `output` defaults to <workdir>/export; `dtype` (float32 | bfloat16 | float16) to
    the base checkpoint's own."""
    from s3ft_jax.models import resolve_model_path, save_pretrained

    workdir = Path(workdir)
    out = Path(output or workdir / "export")
    model, step = load_trained(settings, lora, workdir, mesh=mesh)
    source = resolve_model_path(settings.model_name)
    dtype = dtype or _checkpoint_dtype(source)
    save_pretrained(model, out, dtype=dtype, source=source)
    if settings.chat_template and jax.process_index() == 0:
        # The template it was trained with (model.chat_template) travels with it.
        from s3ft_jax.models.chat_templates import chat_template_text

        (out / "chat_template.jinja").write_text(chat_template_text(settings.chat_template), encoding="utf-8")
    log.info("exported step %d of %s to %s (%s)", step, workdir / "train", out, dtype)
    return out


def _checkpoint_dtype(source: Path) -> str:
    try:
        hf = json.loads((source / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "float32"
    name = hf.get("torch_dtype") or hf.get("dtype") or "float32"
    return name if name in ("float32", "bfloat16", "float16") else "float32"
