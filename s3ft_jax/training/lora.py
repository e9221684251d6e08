"""LoRA adapters (Hu et al. 2021) on the stacked projection kernels.

The trained tree is {"layers": {projection: LoraWeights(lora_a, lora_b)}}, A [layers, *kernel
input axes, r] and B [layers, r, *kernel output axes] (models.adapter). `attach` puts each one
next to its frozen kernel as an Adapter, and `models.llama.project` adds
scale * dropout(x) @ A @ B, with scale = alpha / r. A starts random (Kaiming-uniform, as PEFT
does), B at zero, so training starts from the base model exactly. Only A and B are trained and
saved; merging folds scale * A @ B into the kernel, after which the model is a plain HF model.
Shapes and logical axes are addressed by flat paths ("layers.q_proj.lora_a"), as the
parameter table's are; `adapter_tree` turns such a flat dict into the typed tree.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from s3ft_jax.errors import ConfigError
from s3ft_jax.models.adapter import Adapter, LoraWeights
from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.params import HF_MODULES, LORA_PROJECTIONS
from s3ft_jax.training.settings import LoraSettings, match_targets

# The projections an adapter can sit on -> their kernel's number of input axes, and their HF
# module paths: both read off the parameter table.
PROJECTIONS = LORA_PROJECTIONS


def target_modules(targets, cfg: ModelConfig | None = None) -> tuple[str, ...]:
    """The projections matched by `targets` (names or shell patterns; see `match_targets`)."""
    return match_targets(targets)


def adapter_shapes(cfg: ModelConfig, lcfg: LoraSettings, kernel_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Flat path ("layers.q_proj.lora_a") -> shape, for each targeted projection."""
    shapes = {}
    for name in target_modules(lcfg.targets, cfg):
        kernel = kernel_shapes[f"layers.{name}.kernel"]
        n_in = PROJECTIONS[name]
        shapes[f"layers.{name}.lora_a"] = (kernel[0], *kernel[1 : 1 + n_in], lcfg.rank)
        shapes[f"layers.{name}.lora_b"] = (kernel[0], lcfg.rank, *kernel[1 + n_in :])
    return shapes


def adapter_logical_axes(shapes: dict[str, tuple[int, ...]], kernel_axes: dict[str, tuple]) -> dict[str, tuple]:
    axes = {}
    for path in shapes:
        group = path.rsplit(".", 1)[0]
        kernel = kernel_axes[f"{group}.kernel"]
        n_in = PROJECTIONS[group.split(".")[-1]]
        if path.endswith("lora_a"):
            axes[path] = (*kernel[: 1 + n_in], "lora_rank")
        else:
            axes[path] = (kernel[0], "lora_rank", *kernel[1 + n_in :])
    return axes


def adapter_tree(flat: dict) -> dict:
    """{"layers.q_proj.lora_a": a, "layers.q_proj.lora_b": b, ...} -> {"layers": {"q_proj": LoraWeights(a, b)}}."""
    names = sorted({path.split(".")[1] for path in flat}, key=list(PROJECTIONS).index)
    return {"layers": {n: LoraWeights(lora_a=flat[f"layers.{n}.lora_a"], lora_b=flat[f"layers.{n}.lora_b"]) for n in names}}


def adapters_of(tree: dict) -> dict[str, LoraWeights]:
    """Projection name -> its LoraWeights, checked: a trained tree holds nothing else."""
    layers = tree.get("layers", {})
    if set(tree) != {"layers"} or not all(isinstance(w, LoraWeights) and n in PROJECTIONS for n, w in layers.items()):
        raise TypeError("a LoRA tree is {'layers': {projection: LoraWeights}}, made by training.lora.adapter_tree")
    return dict(layers)


def init_adapters(key: jax.Array, shapes: dict[str, tuple[int, ...]]) -> dict:
    """A ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PEFT's kaiming_uniform(a=sqrt(5))), B = 0."""
    out = {}
    for i, (path, shape) in enumerate(sorted(shapes.items())):
        if path.endswith("lora_a"):
            fan_in = math.prod(shape[1:-1])
            bound = 1.0 / math.sqrt(fan_in)
            out[path] = jax.random.uniform(jax.random.fold_in(key, i), shape, jnp.float32, -bound, bound)
        else:
            out[path] = jnp.zeros(shape, jnp.float32)
    return adapter_tree(out)


def attach(frozen: dict, adapters: dict, lcfg: LoraSettings, key: jax.Array | None, *, training: bool) -> dict:
    """The base parameters with each adapter next to its kernel (`lora`: an Adapter), holding
    the per-call constants `project` needs: the scale and, when training with dropout, a fresh
    dropout key per layer and projection."""
    layers = dict(frozen["layers"])
    for j, (name, weights) in enumerate(adapters_of(adapters).items()):
        n_layers = weights.lora_a.shape[0]
        scale = jnp.full((n_layers,), lcfg.scale, jnp.float32)
        dropout_key = keep = None
        if training and lcfg.dropout > 0:
            keys = jax.random.split(jax.random.fold_in(key, j), n_layers)
            dropout_key = jax.random.key_data(keys) if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys
            keep = jnp.full((n_layers,), 1.0 - lcfg.dropout, jnp.float32)
        layers[name] = {**layers[name], "lora": Adapter(weights, scale, dropout_key, keep)}
    return {**frozen, "layers": layers}


def merge(frozen: dict, adapters: dict, lcfg: LoraSettings) -> dict:
    """Fold every adapter into its kernel: W + scale * A @ B, in float32, cast back to W's dtype."""
    layers = dict(frozen["layers"])
    for name, weights in adapters_of(adapters).items():
        a, b = weights.lora_a, weights.lora_b
        kernel = layers[name]["kernel"]
        L, r = a.shape[0], a.shape[-1]
        delta = jnp.einsum("lir,lro->lio", a.reshape(L, -1, r).astype(jnp.float32), b.reshape(L, r, -1).astype(jnp.float32))
        layers[name] = {**layers[name], "kernel": (kernel.astype(jnp.float32) + lcfg.scale * delta.reshape(kernel.shape)).astype(kernel.dtype)}
    return {**frozen, "layers": layers}


def peft_tensors(adapters: dict, cfg: ModelConfig):
    """Yield (PEFT name, array) pairs from a (host) adapter tree: lora_A.weight [r, in_features],
    lora_B.weight [out, r]."""
    for name, weights in sorted(adapters_of(adapters).items()):
        module = HF_MODULES[name]
        for leaf, kind in (("lora_a", "lora_A"), ("lora_b", "lora_B")):
            value = getattr(weights, leaf)
            r = value.shape[1] if leaf == "lora_b" else value.shape[-1]
            for i in range(cfg.num_layers):
                w = np.asarray(value[i], np.float32)
                w = w.reshape(-1, r).T if leaf == "lora_a" else w.reshape(r, -1).T
                yield f"base_model.model.model.layers.{i}.{module}.{kind}.weight", np.ascontiguousarray(w)


def peft_config(lcfg: LoraSettings, base_model: str) -> dict:
    modules = [n for n in target_modules(lcfg.targets)]
    return {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": lcfg.rank, "lora_alpha": lcfg.alpha, "lora_dropout": lcfg.dropout,
        "target_modules": modules, "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
    }  # fmt: skip
