"""Fine-tuning: LoRA or full, optax on a mesh, Orbax checkpoints with exact resume, HF export.

    from s3ft_jax.training import train, export_hf
    result = train(config, "runs/x/dataset.jsonl", Path("runs/x/sft"))

Names are imported lazily, so `s3ft_jax.training.step` (the jitted step) loads with jax,
flax and optax alone.
"""

from __future__ import annotations

_EXPORTS = {
    "train": "s3ft_jax.training.loop",
    "TrainResult": "s3ft_jax.training.loop",
    "export_hf": "s3ft_jax.training.export",
    "load_trained": "s3ft_jax.training.export",
    "LoraConfig": "s3ft_jax.training.lora",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 's3ft_jax.training' has no attribute {name!r}")
