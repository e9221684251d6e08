"""Configuration -> loaded things: the device mesh, the base model and its tokenizer, a
fine-tuned model, each placed on the configured mesh. Every command and stage that needs a
model gets it here, so "which mesh, which dtype, which tokenizer" is decided once.

`LazyModel` defers the load to first use: a rerun whose stages are all done loads nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def make_config_mesh(config):
    from s3ft_jax.sharding import make_mesh

    return make_mesh(config.mesh.to_dict())  # {"data": ..., "fsdp": ..., "tensor": ...}


def load_model_and_tokenizer(config, name: str | None = None):
    """The configured model (or `name`) on the configured mesh, and its tokenizer."""
    from s3ft_jax.models import from_pretrained, load_tokenizer

    name = name or config.model.name
    model = from_pretrained(name, dtype=config.model.dtype, param_dtype=config.model.param_dtype, mesh=make_config_mesh(config))
    return model, load_tokenizer(name)


def load_trained_model(settings, lora, run_dir: str | Path, mesh):
    """The base model with the newest checkpoint under `run_dir`/train (LoRA merged), and the
    base tokenizer. `settings`, `lora`: the run's TrainSettings and LoraSettings (or None)."""
    from s3ft_jax.models import load_tokenizer
    from s3ft_jax.training import load_trained

    model, _ = load_trained(settings, lora, Path(run_dir), mesh=mesh)
    return model, load_tokenizer(settings.model_name)


class LazyModel:
    """A (model, tokenizer) loaded on the first `get()`."""

    def __init__(self, load: Callable[[], tuple]):
        self._load, self._value = load, None

    def get(self) -> tuple:
        if self._value is None:
            self._value = self._load()
        return self._value
