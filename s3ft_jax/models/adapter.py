"""LoRA's typed pytrees: what a projection carries besides its kernel and bias.

`LoraWeights` is the trained part (A and B, stacked over layers like the kernel); `Adapter` is
what `llama.project` reads: the weights plus the per-call constants (scale, and for training
with dropout a key and the keep probability). A projection's parameters are a dict with
`kernel`, optional `bias` and optional `lora` (an Adapter); `project` rejects any other key
and any other type under `lora`, so a misspelt or un-attached adapter fails at trace time
instead of silently leaving the base model.

Both are registered dataclasses, so jit, scan (over the leading layer axis), optax and Orbax
see ordinary pytrees; the field names keep Orbax's on-disk names those of the earlier dict
layout ("layers.q_proj.lora_a"), so older checkpoints restore into them.
"""

from __future__ import annotations

import dataclasses

import jax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LoraWeights:
    """A [layers, *kernel input axes, r] and B [layers, r, *kernel output axes]."""

    lora_a: jax.Array
    lora_b: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Adapter:
    """An adapter as the forward pass uses it: y += scale * dropout(x) @ A @ B.

    scale [layers] is alpha / r; dropout_key [layers, 2] (raw key data) and keep [layers]
    (1 - dropout) are set only when training with dropout.
    """

    weights: LoraWeights
    scale: jax.Array
    dropout_key: jax.Array | None = None
    keep: jax.Array | None = None


# What a projection's parameter dict may hold (llama.project checks it).
PROJECTION_KEYS = frozenset({"kernel", "bias", "lora"})
