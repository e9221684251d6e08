"""Device mesh and the rules that map logical axis names to it.

Parameters and activations name their axes logically ("embed", "q_heads", "batch"); one small
rules object says which mesh axis each name is split over. The mesh always has the three axes
`data`, `fsdp` and `tensor`, so a config only changes their sizes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from s3ft_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")


def make_mesh(shape: Mapping[str, int] | Sequence[int] | None = None, devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh; one size may be -1 for "all remaining devices".

    `make_mesh()` puts every device on the fsdp axis, the usual choice for fine-tuning.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_sizes({"fsdp": -1} if shape is None else shape, len(devices))
    try:
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(sizes, devices)
    except Exception:  # CPU and odd device counts: no topology to respect
        grid = np.asarray(devices, dtype=object).reshape(sizes)
    return Mesh(grid, MESH_AXES)


def mesh_sizes(shape: Mapping[str, int] | Sequence[int], n_devices: int) -> list[int]:
    """The (data, fsdp, tensor) sizes of `shape` on `n_devices` devices, -1 resolved; a
    ConfigError when they do not split the devices (the CLI's preflight calls this too)."""
    if isinstance(shape, Mapping):
        unknown = set(shape) - set(MESH_AXES)
        if unknown:
            raise ConfigError(f"unknown mesh axis {sorted(unknown)[0]!r}: axes are {', '.join(MESH_AXES)}")
        sizes = [int(shape.get(axis, 1)) for axis in MESH_AXES]
    else:
        sizes = [int(s) for s in shape]
        if len(sizes) != len(MESH_AXES):
            raise ConfigError(f"mesh shape needs {len(MESH_AXES)} sizes (data, fsdp, tensor), got {sizes}")
    if sizes.count(-1) > 1:
        raise ConfigError(f"at most one mesh axis may be -1, got {sizes}")
    if any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"mesh sizes must be positive or -1, got {sizes}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if n_devices % known:
            raise ConfigError(f"{n_devices} devices do not split into a mesh {sizes} (mesh.data, mesh.fsdp, mesh.tensor)")
        sizes[sizes.index(-1)] = n_devices // known
    if math.prod(sizes) != n_devices:
        raise ConfigError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, have {n_devices}")
    return sizes


@dataclasses.dataclass(frozen=True)
class ShardingRules:
    """Logical axis name -> mesh axis (or tuple of axes, or None for replicated).

    A dimension whose size does not divide its mesh axes is replicated instead: SmolLM2's 3
    KV heads stay whole on a 4-way tensor axis rather than failing to load.
    """

    rules: tuple[tuple[str, str | tuple[str, ...] | None], ...]

    def mesh_axes(self, logical: str | None):
        if logical is None:
            return None
        for name, target in self.rules:
            if name == logical:
                return target
        raise KeyError(f"no sharding rule for logical axis {logical!r}")

    def spec(self, logical_axes: Sequence[str | None], shape: Sequence[int] | None = None, mesh: Mesh | None = None) -> PartitionSpec:
        parts = []
        used: set[str] = set()
        for i, logical in enumerate(logical_axes):
            target = self.mesh_axes(logical)
            axes = (target,) if isinstance(target, str) else tuple(target or ())
            # A mesh axis may appear once per spec, and size-1 axes add nothing.
            axes = tuple(a for a in axes if a not in used and (mesh is None or mesh.shape[a] > 1))
            if shape is not None and mesh is not None and axes:
                if shape[i] % math.prod(mesh.shape[a] for a in axes):
                    axes = ()
            used.update(axes)
            parts.append(None if not axes else axes[0] if len(axes) == 1 else axes)
        return PartitionSpec(*parts)

    def named(self, mesh: Mesh, logical_axes: Sequence[str | None], shape: Sequence[int]) -> NamedSharding:
        return NamedSharding(mesh, self.spec(logical_axes, shape, mesh))


DEFAULT_RULES = ShardingRules(
    rules=(
        # activations
        ("batch", ("data", "fsdp")),
        ("seq", None),
        ("act_embed", None),
        ("act_heads", "tensor"),
        ("act_kv_heads", "tensor"),
        ("act_mlp", "tensor"),
        ("act_vocab", "tensor"),
        # parameters
        ("vocab", "tensor"),
        ("embed", "fsdp"),
        ("q_heads", "tensor"),
        ("kv_heads", "tensor"),
        ("head_dim", None),
        ("mlp", "tensor"),
        ("layers", None),
        ("norm", None),
        ("lora_rank", None),
    )
)


# Sampling's layout (sampling/weights.py): weights split over their heads, MLP columns and
# vocabulary on every non-data device and whole over `embed`; the batch over `data` only. A
# decode step then reads each chip's share of every weight and gathers none (under FSDP's
# rules it gathers the whole model onto every chip, every step).
_SAMPLING_SPLIT = ("fsdp", "tensor")
_SAMPLING = {
    "batch": "data", "embed": None, "vocab": _SAMPLING_SPLIT, "q_heads": _SAMPLING_SPLIT, "kv_heads": _SAMPLING_SPLIT,
    "mlp": _SAMPLING_SPLIT, "act_heads": _SAMPLING_SPLIT, "act_kv_heads": _SAMPLING_SPLIT, "act_mlp": _SAMPLING_SPLIT,
    "act_vocab": _SAMPLING_SPLIT,
}  # fmt: skip


def sampling_rules(rules: ShardingRules = DEFAULT_RULES) -> ShardingRules:
    """`rules` with the sampling layout's entries (the others, LoRA's among them, kept)."""
    return ShardingRules(tuple((name, _SAMPLING.get(name, target)) for name, target in rules.rules))


def host_to_global(x, sharding: NamedSharding | None) -> jax.Array:
    """A host array that every process holds in full -> a global array in `sharding`.

    Each process contributes only the slices its own devices hold, so the same call works on
    one host and on a multi-host mesh (where every process runs the same batches).
    """
    x = np.asarray(x)
    if sharding is None:
        return jax.device_put(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def global_to_host(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly multi-host) global array, on every process."""
    if jax.process_count() > 1 and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
