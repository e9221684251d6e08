"""Sampling parameters as traced values, and the one function that picks the next token.

Temperature, top-k and top-p are arrays inside the jitted step, not Python constants, so a run
that changes them between calls reuses the compiled program. Randomness is per row: each row
has its own key derived from the seed and the prompt's index, so a prompt's sample does not
depend on which other prompts share its batch (and a resumed run reproduces it).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

_NEG = -1e30


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SamplingParams:
    temperature: jax.Array  # 0 means greedy
    top_k: jax.Array  # 0 means no top-k cut
    top_p: jax.Array  # 1 means no nucleus cut

    @classmethod
    def make(cls, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0) -> "SamplingParams":
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        return cls(jnp.float32(temperature), jnp.int32(top_k), jnp.float32(top_p))


def row_keys(seed: int, row_ids: jax.Array) -> jax.Array:
    """One PRNG key per row, a function of (seed, the row's global prompt index) only."""
    base = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(row_ids)


def next_token(logits: jax.Array, params: SamplingParams, keys: jax.Array, step: jax.Array) -> jax.Array:
    """logits [B, V] float32 -> token ids [B]. `step` (scalar or [B]) is the index of the token
    being drawn in each row's generation: rows of one batch may be at different steps."""
    return jax.lax.cond(
        params.temperature == 0.0,
        lambda: greedy_token(logits),
        lambda: _sample(logits, params, keys, step),
    )


_ARGMAX_BLOCK = 128


def greedy_token(logits: jax.Array) -> jax.Array:
    """`jnp.argmax(logits, axis=-1)` as int32 (ties go to the first index), without a variadic reduction.

    XLA's CPU backend runs argmax as one variadic (value, index) reduction on a single
    thread. Here the vocabulary is cut into blocks of 128: a plain max per block (vectorised,
    parallel), the first block holding the row's maximum, then the first index inside that
    block: the same answer, several times faster (docs/performance.md).
    """
    rows, vocab = logits.shape
    pad = -vocab % _ARGMAX_BLOCK
    if pad:
        logits = jnp.pad(logits, ((0, 0), (0, pad)), constant_values=-jnp.inf)
    blocks = logits.reshape(rows, -1, _ARGMAX_BLOCK)
    block_max = jnp.max(blocks, axis=-1)
    row_max = jnp.max(block_max, axis=-1, keepdims=True)
    # A NaN maximum matches nothing; the clamps keep the answer a valid id all the same.
    first_block = _first_true(block_max == row_max)
    inside = jnp.take_along_axis(blocks, first_block[:, None, None], axis=1, mode="clip")[:, 0]
    token = first_block * _ARGMAX_BLOCK + _first_true(inside == row_max)
    return jnp.minimum(token, vocab - 1)


def _first_true(hits: jax.Array) -> jax.Array:
    """Index of the first True along the last axis ([..., N] -> [...]; N where none)."""
    n = hits.shape[-1]
    return jnp.min(jnp.where(hits, jnp.arange(n, dtype=jnp.int32), n), axis=-1)


def _sample(logits, params: SamplingParams, keys, step):
    logits = logits / params.temperature
    # One descending sort serves both cuts; ties at the threshold are kept, as in HF.
    ordered = jnp.sort(logits, axis=-1)[:, ::-1]
    vocab = logits.shape[-1]
    k = jnp.where(params.top_k > 0, jnp.minimum(params.top_k, vocab), vocab)
    kth = jnp.take(ordered, k - 1, axis=-1)[:, None]
    ordered = jnp.where(jnp.arange(vocab)[None, :] < k, ordered, _NEG)
    probs = jax.nn.softmax(ordered, axis=-1)
    # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
    before = jnp.cumsum(probs, axis=-1) - probs
    kept = before < params.top_p
    p_threshold = jnp.min(jnp.where(kept, ordered, jnp.inf), axis=-1, keepdims=True)
    threshold = jnp.maximum(kth, p_threshold)
    logits = jnp.where(logits >= threshold, logits, _NEG)
    step_keys = jax.vmap(jax.random.fold_in)(keys, jnp.broadcast_to(step, keys.shape))
    return jax.vmap(jax.random.categorical)(step_keys, logits).astype(jnp.int32)
