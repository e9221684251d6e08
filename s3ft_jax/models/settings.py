"""Which model to load and how (`model.*` and `mesh.*` in the configuration tree)."""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError

DTYPES = ("float32", "bfloat16", "float16")
MESH_AXES = ("data", "fsdp", "tensor")  # sharding.MESH_AXES, without importing JAX here


@dataclasses.dataclass(frozen=True)
class MeshShape:
    """Sizes of the (data, fsdp, tensor) mesh axes; one may be -1, "all remaining devices"."""

    data: int = 1
    fsdp: int = -1
    tensor: int = 1

    def __post_init__(self):
        for axis in MESH_AXES:
            size = getattr(self, axis)
            if size == 0 or size < -1:
                raise ConfigError(f"mesh.{axis} must be a positive size or -1, got {size}")

    def as_dict(self) -> dict[str, int]:
        """What `sharding.make_mesh` takes."""
        return {axis: getattr(self, axis) for axis in MESH_AXES}


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    # An embedded model name, a local HF directory, or a hub id (when a hub is reachable).
    name: str = "smollm2-135m-instruct"
    dtype: str = "float32"  # compute dtype
    param_dtype: str | None = None  # storage dtype; None: dtype
    mesh: MeshShape = MeshShape()
    # A chat template for a checkpoint without one (models.chat_templates): a name or a .jinja file.
    chat_template: str = ""

    def __post_init__(self):
        for key in ("dtype", "param_dtype"):
            value = getattr(self, key)
            if value is not None and value not in DTYPES:
                raise ConfigError(f"model.{key} must be float32, bfloat16 or float16, got {value!r}")

    def named(self, name: str) -> "ModelSettings":
        """The same placement and dtypes for another checkpoint (e.g. a separate judge model),
        which keeps its own chat template (model.chat_template is model.name's)."""
        return dataclasses.replace(self, name=name, chat_template="")
