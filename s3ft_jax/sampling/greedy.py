"""Batched greedy decoding over a preallocated KV cache.

The foundation the full sampler (temperature/top-k/top-p, buckets, work queue) builds on:
one jitted prefill of the left-padded prompts, then a `lax.while_loop` of single-token steps
that exits as soon as every row has produced an end-of-sequence token.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from s3ft_jax.models.llama import ForwardSpec, forward_cached, init_cache, logits_from_hidden, positions_from_mask

@functools.partial(jax.jit, static_argnames=("spec", "max_new_tokens"))
def _greedy(params, spec: ForwardSpec, ids, mask, eos_ids, max_new_tokens: int):
    batch, prompt_len = ids.shape
    # Allocated inside the jit, the cache is updated in place by the loop: no second copy.
    cache = init_cache(spec.cfg, batch, prompt_len + max_new_tokens, spec.dtype)
    positions = positions_from_mask(mask)
    hidden, cache = forward_cached(params, spec, ids, positions, mask.astype(bool), cache, 0)
    first = jnp.argmax(logits_from_hidden(params, spec, hidden[:, -1:])[:, 0], axis=-1).astype(jnp.int32)

    def cond(state):
        step, _, _, done, _, _ = state
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(state):
        step, token, pos, done, out, cache = state
        out = out.at[:, step].set(jnp.where(done, -1, token))
        done = done | jnp.isin(token, eos_ids)
        hidden, cache = forward_cached(
            params, spec, token[:, None], pos[:, None], jnp.ones((batch, 1), bool), cache, prompt_len + step
        )
        token = jnp.argmax(logits_from_hidden(params, spec, hidden)[:, 0], axis=-1).astype(jnp.int32)
        return step + 1, token, pos + 1, done, out, cache

    out = jnp.full((batch, max_new_tokens), -1, jnp.int32)
    state = (jnp.int32(0), first, positions[:, -1] + 1, jnp.zeros((batch,), bool), out, cache)
    return jax.lax.while_loop(cond, body, state)[4]


def greedy_generate(model: nnx.Module, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_ids: Sequence[int], pad_id: int = 0) -> list[list[int]]:
    """Greedy continuations (token ids, EOS included when produced) of token-id prompts."""
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), pad_id, np.int32)
    mask = np.zeros((len(prompts), width), np.int32)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = prompt
        mask[row, width - len(prompt):] = 1
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    out = np.asarray(_greedy(params, model.spec, ids, mask, jnp.asarray(list(eos_ids), jnp.int32), max_new_tokens))
    return [[int(t) for t in row if t >= 0] for row in out]
