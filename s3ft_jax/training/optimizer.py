"""The optax chain: global-norm clipping, then AdamW on a warmup + decay schedule.

Weight decay applies to matrices (kernels, embeddings, LoRA factors), never to norm scales
or biases, as in the HF Trainer.
"""

from __future__ import annotations

import dataclasses

import jax
import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-4
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    warmup_steps: int = 0
    total_steps: int = 1
    end_lr_ratio: float = 0.0  # the decay's final learning rate, as a fraction of the peak
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float = 1.0  # 0 disables clipping


def schedule(c: OptimizerConfig) -> optax.Schedule:
    warmup = max(0, min(c.warmup_steps, c.total_steps))
    decay_steps = max(1, c.total_steps - warmup)
    end = c.learning_rate * c.end_lr_ratio
    if c.schedule == "cosine":
        decay = optax.cosine_decay_schedule(c.learning_rate, decay_steps, alpha=c.end_lr_ratio)
    elif c.schedule == "linear":
        decay = optax.linear_schedule(c.learning_rate, end, decay_steps)
    elif c.schedule == "constant":
        decay = optax.constant_schedule(c.learning_rate)
    else:
        raise ValueError(f"unknown schedule {c.schedule!r}")
    if warmup == 0:
        return decay
    # Warmup from lr/warmup (not 0) so the first step already trains.
    ramp = optax.linear_schedule(c.learning_rate / warmup, c.learning_rate, warmup - 1) if warmup > 1 else optax.constant_schedule(c.learning_rate)
    return optax.join_schedules([ramp, decay], [warmup])


def decay_mask(params):
    def leaf_decays(path, _):
        name = getattr(path[-1], "key", getattr(path[-1], "name", None))  # dict key or dataclass field
        return name not in ("scale", "bias")

    return jax.tree_util.tree_map_with_path(leaf_decays, params)


def make_optimizer(c: OptimizerConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
    lr = schedule(c)
    parts = [optax.clip_by_global_norm(c.clip_norm)] if c.clip_norm > 0 else []
    parts.append(optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay, mask=decay_mask))
    return optax.chain(*parts), lr
