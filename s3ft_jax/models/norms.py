"""The decoder's elementwise pieces that differ between families: RMSNorm (Llama's w * x or
Gemma's (1 + w) * x), the MLP's gate activation, and tanh soft-capping of logits.

Each family picks its variant from static config (`ModelConfig`), so under jit the choice
costs nothing: the Llama path compiles to exactly what it did before the other variants.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rms_norm(x: jax.Array, scale: jax.Array, eps: float, plus_one: bool = False) -> jax.Array:
    """RMSNorm over the last axis in float32, the result in x's dtype. `plus_one`: Gemma's
    scale (1 + w), whose weights are stored centred on zero."""
    xf = x.astype(jnp.float32)
    normed = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    w = scale.astype(jnp.float32)
    return ((1.0 + w if plus_one else w) * normed).astype(x.dtype)


def gate_activation(x: jax.Array, activation: str) -> jax.Array:
    """SwiGLU's SiLU, or GeGLU's GELU in its tanh form (transformers' gelu_pytorch_tanh)."""
    if activation == "silu":
        return jax.nn.silu(x)
    if activation == "gelu_tanh":
        return jax.nn.gelu(x, approximate=True)
    raise ValueError(f"unknown activation {activation!r}")


def softcap(x: jax.Array, cap: float) -> jax.Array:
    """cap * tanh(x / cap), Gemma's soft bound on logits; cap 0: x unchanged."""
    if not cap:
        return x
    return jnp.tanh(x / cap) * cap
