"""Fine-tuning: LoRA or full, optax on a mesh, Orbax checkpoints with exact resume, HF export.

    from s3ft_jax.training import LoraSettings, TrainSettings, export_hf, train
    settings = TrainSettings(model_name="smollm2-135m-instruct", max_steps=100)
    result = train(settings, LoraSettings(rank=8), Path("runs/x/sft"), dataset_path="runs/x/dataset.jsonl")

Names are imported lazily, so `s3ft_jax.training.step` (the jitted step) loads with jax,
flax and optax alone.
"""

from __future__ import annotations

_EXPORTS = {
    "train": "s3ft_jax.training.loop",
    "TrainResult": "s3ft_jax.training.loop",
    "export_hf": "s3ft_jax.training.export",
    "load_trained": "s3ft_jax.training.export",
    "LoraSettings": "s3ft_jax.training.settings",
    "TrainSettings": "s3ft_jax.training.settings",
    "Trainer": "s3ft_jax.training.trainer",
    "setup": "s3ft_jax.training.trainer",
    "Callback": "s3ft_jax.training.callbacks",
    "StepRecord": "s3ft_jax.training.callbacks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 's3ft_jax.training' has no attribute {name!r}")
