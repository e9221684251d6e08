"""The weights in sampling form: compute dtype, a tensor-parallel layout, made once.

A decode step is bound by HBM bandwidth: it reads every weight once for a handful of
tokens. Two things decide how many bytes a chip reads per step:

- the dtype. Every matmul casts its kernel to the compute dtype, so weights held in float32
  were read at twice the bytes and cast on every step. Casting them once here gives
  bit-identical results (`models.params.held_dtype`; norm scales keep theirs).
- the layout. Under FSDP the weights are split over their `embed` dimension and the batch
  over the same devices, so every step all-gathers the whole model onto every chip (and
  prefill holds the gathered weights as temporaries). Sampling instead splits the heads,
  the MLP columns and the vocabulary over every non-data device (fsdp x tensor), keeps
  `embed` whole, and splits the batch over `data` only: each chip reads its share of each
  weight and of the KV cache, and only activations move (`sharding.sampling_rules`).

The reshard happens once, where the sampling form is made (an engine, a scoring call), not
per step.
"""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from s3ft_jax.models.llama import ForwardSpec, unstack_layers
from s3ft_jax.models.params import held_dtype, param_logical_axes
from s3ft_jax.sharding import sampling_rules


def sampling_spec(spec: ForwardSpec) -> ForwardSpec:
    """`spec` with the sampling layout's rules (unchanged without a mesh)."""
    if spec.mesh is None:
        return spec
    return dataclasses.replace(spec, rules=sampling_rules(spec.rules))


sampling_dtype = held_dtype  # compute dtype where every reader casts to it anyway


def sampling_params(model: nnx.Module, *, unstack: bool = True) -> tuple[ForwardSpec, dict]:
    """(spec, params) for the sampling programs: `sampling_spec(model.spec)`, and the model's
    weights in the compute dtype, placed in that spec's layout, layers unstacked for the
    cached forward pass unless `unstack=False` (the full-sequence passes of scoring)."""
    spec = sampling_spec(model.spec)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return spec, place(params, spec, unstack=unstack)


def place(params: dict, spec: ForwardSpec, *, unstack: bool = True) -> dict:
    """`params` (stacked layers, nested dicts) cast and resharded for `spec`; see the module doc."""
    axes = param_logical_axes(spec.cfg)

    def one(path: str, x):
        dtype = sampling_dtype(path, x.dtype, spec.dtype)
        if spec.mesh is not None and path in axes:
            return jax.device_put(x.astype(dtype), spec.rules.named(spec.mesh, axes[path], x.shape))
        return x.astype(dtype) if x.dtype != dtype else x

    out = _map_paths(one, params)
    return unstack_layers(out) if unstack else out


def _map_paths(fn, tree: dict, prefix: str = "") -> dict:
    return {k: _map_paths(fn, v, f"{prefix}{k}.") if isinstance(v, dict) else fn(f"{prefix}{k}", v) for k, v in tree.items()}
