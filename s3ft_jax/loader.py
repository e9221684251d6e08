"""Settings -> loaded things: the device mesh, the base model and its tokenizer, a fine-tuned
model, each placed on the configured mesh. Every command and stage that needs a model gets it
here, so "which mesh, which dtype, which tokenizer" is decided once.

`LazyModel` defers the load to first use: a rerun whose stages are all done loads nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from s3ft_jax.models.settings import ModelSettings


def make_settings_mesh(settings: ModelSettings):
    from s3ft_jax.sharding import make_mesh

    return make_mesh(settings.mesh.as_dict())


def model_identity(settings: ModelSettings) -> dict:
    """The model's identity in stage fingerprints: its files and the dtypes it computes in
    (both change output bits; the mesh only changes summation order, and a stage may resume
    on another slice)."""
    from s3ft_jax.models.loading import model_fingerprint

    identity = {**model_fingerprint(settings.name), "dtype": settings.dtype, "param_dtype": settings.param_dtype}
    if settings.chat_template:  # it renders every prompt; absent when unset, so older runs keep their identity
        from s3ft_jax.io import json_digest
        from s3ft_jax.models.chat_templates import chat_template_text

        identity["chat_template"] = json_digest(chat_template_text(settings.chat_template))
    return identity


def load_model_and_tokenizer(settings: ModelSettings):
    """The model on its mesh, and its tokenizer."""
    from s3ft_jax.models import from_pretrained, load_tokenizer

    model = from_pretrained(settings.name, dtype=settings.dtype, param_dtype=settings.param_dtype, mesh=make_settings_mesh(settings))
    return model, load_tokenizer(settings.name, chat_template=settings.chat_template)


def load_trained_model(model: ModelSettings, train, lora, run_dir: str | Path):
    """The base model with the newest checkpoint under `run_dir`/train (LoRA merged), and the
    base tokenizer. `train`, `lora`: the run's training.TrainSettings and LoraSettings."""
    from s3ft_jax.models import load_tokenizer
    from s3ft_jax.training import load_trained

    trained, _ = load_trained(train, lora, Path(run_dir), mesh=make_settings_mesh(model))
    return trained, load_tokenizer(model.name, chat_template=model.chat_template)


class LazyModel:
    """A (model, tokenizer) loaded on the first `get()`."""

    def __init__(self, load: Callable[[], tuple]):
        self._load, self._value = load, None

    def get(self) -> tuple:
        if self._value is None:
            self._value = self._load()
        return self._value
