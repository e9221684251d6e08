"""The public entry points: from_pretrained, save_pretrained, load_tokenizer."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from s3ft_jax.errors import ModelError
from s3ft_jax.models import embedded
from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.llama import LlamaForCausalLM
from s3ft_jax.models.params import param_logical_axes, param_shapes
from s3ft_jax.models.safetensors_io import open_checkpoint
from s3ft_jax.models.weights import export_entries, load_array, plan_load, to_hf_layout, write_checkpoint
from s3ft_jax.progress import progress_bar
from s3ft_jax.sharding import DEFAULT_RULES, ShardingRules

log = logging.getLogger("s3ft_jax")

DEFAULT_MODEL = "smollm2-135m-instruct"
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
)


def to_dtype(name: Any) -> np.dtype:
    if isinstance(name, str):
        if name not in _DTYPES:
            raise ModelError(f"unsupported dtype {name!r}: use one of {', '.join(_DTYPES)}")
        return jnp.dtype(_DTYPES[name])
    return jnp.dtype(name)


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """An embedded model name, a local HF directory, or (with a hub reachable) a hub repo id."""
    name = str(path_or_name)
    if embedded.is_embedded(name):
        return embedded.ensure_embedded_model(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelError(f"model path {path} is not a directory")
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(f"no model directory at {name!r} (and it is not an embedded model name or a hub id)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.jinja", "tokenizer*"]))
    except Exception as e:  # offline, unknown repo, auth: one line either way
        raise ModelError(f"{name!r} is not a local directory and could not be fetched from the hub: {type(e).__name__}") from None


def from_pretrained(
    path_or_name: str | os.PathLike = DEFAULT_MODEL,
    *,
    dtype: Any = "float32",
    param_dtype: Any = None,
    mesh: jax.sharding.Mesh | None = None,
    rules: ShardingRules = DEFAULT_RULES,
) -> LlamaForCausalLM:
    """Load an HF checkpoint, each tensor placed straight into its target sharding.

    `dtype` is the compute dtype, `param_dtype` (default: `dtype`) the storage dtype. With a
    mesh, parameters are split by `rules`; a host only reads the slices its devices hold.
    """
    path = resolve_model_path(path_or_name)
    cfg = ModelConfig.from_dir(path)
    compute, storage = to_dtype(dtype), to_dtype(param_dtype or dtype)
    files = open_checkpoint(path)
    shapes = param_shapes(cfg)
    plan = plan_load(files, cfg, shapes)
    axes = param_logical_axes(cfg)

    abstract = nnx.eval_shape(lambda: LlamaForCausalLM(cfg, param_dtype=storage, dtype=compute, rules=rules, mesh=mesh))
    graphdef, state = nnx.split(abstract)
    values = nnx.to_pure_dict(state)
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    for param_path, shape in shapes.items():
        sharding = rules.named(mesh, axes[param_path], shape) if mesh is not None else default
        *parents, leaf = param_path.split(".")
        node = values
        for key in parents:
            node = node[key]
        node[leaf] = load_array(files, plan[param_path], cfg, shape, storage, sharding)
    nnx.replace_by_pure_dict(state, values)
    return nnx.merge(graphdef, state)


def load_tokenizer(path_or_name: str | os.PathLike = DEFAULT_MODEL, *, chat_template: str = ""):
    """The checkpoint's `transformers` tokenizer, padding on the left for batched generation.
    `chat_template` (model.chat_template: a name or a .jinja file) replaces the checkpoint's own."""
    from transformers import AutoTokenizer

    path = resolve_model_path(path_or_name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a tokenizer from {path}: {e}".splitlines()[0]) from None
    tokenizer.padding_side = "left"
    if chat_template:
        from s3ft_jax.models.chat_templates import chat_template_text

        tokenizer.chat_template = chat_template_text(chat_template)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def flat_params(model: nnx.Module) -> dict[str, jax.Array]:
    """Our parameter path ("layers.q_proj.kernel") -> array."""
    flat: dict[str, jax.Array] = {}

    def walk(node, prefix):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, path + ".")
            else:
                flat[path] = value

    walk(nnx.to_pure_dict(nnx.state(model, nnx.Param)), "")
    return flat


def save_pretrained(
    model: LlamaForCausalLM,
    path: str | os.PathLike,
    *,
    dtype: Any = None,
    tokenizer=None,
    source: str | os.PathLike | None = None,
    max_shard_bytes: int = 4 << 30,
) -> Path:
    """Write an HF directory (config.json + safetensors) that `transformers` loads.

    Written to a temporary sibling and renamed into place, so an interrupted export never
    leaves a half-written checkpoint under `path`. Tokenizer files come from `tokenizer` or
    are copied from the `source` checkpoint directory.
    """
    out = Path(path)
    cfg: ModelConfig = model.cfg
    params = flat_params(model)
    expected = set(param_shapes(cfg))
    extra = sorted(set(params) - expected)
    if extra:
        raise ModelError(f"parameter {extra[0]!r} has no HF equivalent (merge LoRA adapters before export)")
    storage = to_dtype(dtype) if dtype is not None else jnp.dtype(next(iter(params.values())).dtype)
    entries = export_entries({k: v.shape for k, v in params.items()}, cfg)

    def tensors():
        # One tensor (one layer of a stacked parameter) gathered to the host at a time. Every
        # process takes part in each gather (a collective on a multi-host mesh); only process 0
        # writes.
        bar = progress_bar(len(entries), desc="export", unit="tensor")
        for _, _, ours, layer in entries:
            value = params[ours] if layer is None else params[ours][layer]
            yield to_hf_layout(ours, np.asarray(_gather(value)).astype(storage), cfg)
            bar.update()
        bar.close()

    if jax.process_index() != 0:
        for _ in tensors():
            pass
        return out

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_checkpoint([(name, shape, storage) for name, shape, _, _ in entries], tensors(), tmp, max_shard_bytes)
        hf = cfg.hf_config
        hf["torch_dtype"] = hf["dtype"] = str(np.dtype(storage).name)
        (tmp / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        elif source is not None:
            for name in _TOKENIZER_FILES:
                if (Path(source) / name).is_file():
                    shutil.copy2(Path(source) / name, tmp / name)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved %s checkpoint to %s", cfg.architecture, out)
    return out


def _gather(x: jax.Array) -> np.ndarray:
    if jax.process_count() > 1 and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(x, tiled=True)
    return jax.device_get(x)


def model_fingerprint(path_or_name: str | os.PathLike) -> dict:
    """What identifies a checkpoint's behaviour, cheaply: config, tokenizer files, and each
    weight file's size plus a hash of its first and last MiB (its header names every tensor's
    dtype, shape and offset). Run stages compare this to decide whether to redo their work."""
    import hashlib

    path = resolve_model_path(path_or_name)
    h = hashlib.sha256()
    for name in sorted(p.name for p in path.iterdir()):
        file = path / name
        if not file.is_file() or not (name.endswith((".json", ".jinja", ".safetensors"))):
            continue
        size = file.stat().st_size
        h.update(f"{name}:{size}".encode())
        with open(file, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read())
    return {"name": str(path_or_name), "digest": h.hexdigest()[:16]}
