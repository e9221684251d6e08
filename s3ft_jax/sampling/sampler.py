"""The device side of generation: the decode state and the jitted programs over it.

`SamplerEngine` (engine.py) drives these, following the `Scheduler`'s plan (scheduler.py).

Compile budget. Every jitted function is keyed by shapes only: the batch, the cache length
(fixed for a whole `generate` call), the refill group and its prompt bucket. Sampling
parameters, the seed and the step limits are traced values. Prompts are sorted by length and
enter the batch in groups of similar length, so thousands of prompts compile one decode loop
(plus one per halving at the end) and one prefill per prompt bucket, and changing
temperature/top-p between calls compiles nothing.

Refill. The decode loop hands control back as soon as enough rows have finished; `insert`
prefills the next prompts into those rows while the others keep their state.

Cache layout. Each row holds its sequence in order: the shared prefix (computed once, the
same in every row), its prompt left-padded to its group's bucket, then its generated tokens,
each decode step writing every row's token at that row's own next slot. A worked example:
prefix width 2, cache of 8 slots; row 0 holds the 2-token prompt ab (bucket 3), refilled into
row 1 later is the 3-token prompt cde:

    slot:      0  1 | 2    3   4  | 5   6   7
    row 0:     p  p | pad  a   b  | g0  g1  g2      positions: p=0,1  a=2  b=3  g0=4 ...
    row 1:     p  p | c    d   e  | h0  -   -       (its previous prompt's slots: invalid)

Pads and stale slots are marked invalid and never attended. Keeping a row's tokens in
sequence order whatever else the batch holds makes a prompt's result independent of its
neighbours and of when it entered the batch: attention sums its terms in slot order, and
invalid (zero) terms between them change no rounding. At a given batch size a prompt decodes
bit for bit the same in any company, which is what lets a resumed work queue write the same
file as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter

import jax
import jax.numpy as jnp

from s3ft_jax.models.llama import (
    ForwardSpec,
    forward_cached,
    init_cache,
    logits_from_hidden,
    positions_from_mask,
)
from s3ft_jax.sampling.params import SamplingParams, next_token, row_keys

# How many times each jitted function has been traced (compiled); tests bound these.
TRACE_COUNTS: Counter = Counter()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DecodeState:
    cache: dict
    tokens: jax.Array  # [B, G] the row's generated ids, -1 past its end
    logprobs: jax.Array  # [B, G] log p(token) under the model (raw logits, before sampling cuts)
    last: jax.Array  # [B] the latest token, not yet written to the cache
    pos: jax.Array  # [B] that token's position
    count: jax.Array  # [B] tokens the row has generated
    done: jax.Array  # [B] finished, or holding no prompt
    write: jax.Array  # [B] the slot `last` goes to
    row_ids: jax.Array  # [B] the row's prompt id, which with the seed makes its PRNG key
    t: jax.Array  # () decode steps taken


def _cache_constraint(spec: ForwardSpec, cache: dict) -> dict:
    if spec.mesh is None:
        return cache
    return {
        "k": tuple(spec.constrain(k, "batch", "act_kv_heads", "head_dim", "seq") for k in cache["k"]),
        "v": tuple(spec.constrain(v, "batch", "act_kv_heads", "seq", "head_dim") for v in cache["v"]),
        "pos": spec.constrain(cache["pos"], "batch", "seq"),
        "valid": spec.constrain(cache["valid"], "batch", "seq"),
    }


def _with_prefix(cache: dict, prefix: dict | None) -> dict:
    """`cache` with the shared prefix's KV in its first slots, in every row."""
    if prefix is None:
        return cache
    batch = cache["pos"].shape[0]
    put = lambda buf, pre: jax.lax.dynamic_update_slice(buf, jnp.broadcast_to(pre, (batch, *pre.shape[1:])).astype(buf.dtype), (0,) * buf.ndim)  # noqa: E731
    return jax.tree.map(put, cache, prefix)


@functools.partial(jax.jit, static_argnames=("spec",))
def prefill_prefix(params, spec: ForwardSpec, ids, mask) -> dict:
    """The KV cache [1, ..., P_prefix] of the prompt prefix that every prompt shares (a chat
    template's system prompt and instructions), computed once for all rows."""
    TRACE_COUNTS["prefix"] += 1
    cache = init_cache(spec.cfg, 1, ids.shape[1], spec.dtype)
    _, cache = forward_cached(params, spec, ids, positions_from_mask(mask), mask.astype(bool), cache, 0)
    return cache


@functools.partial(jax.jit, static_argnames=("spec", "batch", "row_slots", "gen_len"))
def empty_state(spec: ForwardSpec, prefix, batch: int, row_slots: int, gen_len: int) -> DecodeState:
    """A batch of free rows over a cache of the prefix plus `row_slots` slots."""
    TRACE_COUNTS["empty"] += 1
    prefix_len = 0 if prefix is None else prefix["pos"].shape[1]
    cache = _with_prefix(init_cache(spec.cfg, batch, prefix_len + row_slots, spec.dtype), prefix)
    zeros = jnp.zeros((batch,), jnp.int32)
    return DecodeState(
        _cache_constraint(spec, cache),
        jnp.full((batch, gen_len), -1, jnp.int32),
        jnp.zeros((batch, gen_len), jnp.float32),
        zeros,
        zeros,
        zeros,
        jnp.ones((batch,), bool),
        # A free row's decode writes (marked invalid) go to its `write` slot: past the end,
        # dropped, until a prompt arrives; never into the prefix, which is copied only here.
        jnp.full((batch,), prefix_len + row_slots, jnp.int32),
        zeros,
        jnp.int32(0),
    )


def _logprob(logits: jax.Array, token: jax.Array) -> jax.Array:
    return jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("state",))
def insert(
    params, spec: ForwardSpec, state: DecodeState, prefix, rows, ids, mask, row_ids, seed, sampling: SamplingParams, eos_ids, max_new
) -> DecodeState:
    """Prefill a group of prompts (left-padded `ids` [g, P] after the shared `prefix`) into the
    batch rows `rows` (an index >= batch is a filler row, dropped), sampling each one's first
    token."""
    TRACE_COUNTS["prefill"] += 1
    group, prompt_len = ids.shape
    gen_len = state.tokens.shape[1]
    prefix_len = 0 if prefix is None else prefix["pos"].shape[1]
    positions = positions_from_mask(mask)
    if prefix is not None:
        positions = positions + jnp.sum(prefix["valid"], dtype=jnp.int32)
    # The group runs in a cache of its own (prefix + prompt), then its prompt slots are copied
    # into its rows: the batch's other rows are mid-generation and keep theirs.
    cache = _cache_constraint(spec, _with_prefix(init_cache(spec.cfg, group, prefix_len + prompt_len, spec.dtype), prefix))
    hidden, small = forward_cached(params, spec, ids, positions, mask.astype(bool), cache, prefix_len)
    logits = logits_from_hidden(params, spec, hidden[:, -1:])[:, 0]
    token = next_token(logits, sampling, row_keys(seed, row_ids), jnp.int32(0))

    span = slice(prefix_len, prefix_len + prompt_len)
    big = state.cache
    cache = {
        "k": tuple(k.at[rows, :, :, span].set(sk[..., span], mode="drop") for k, sk in zip(big["k"], small["k"])),
        "v": tuple(v.at[rows, :, span].set(sv[:, :, span], mode="drop") for v, sv in zip(big["v"], small["v"])),
        "pos": big["pos"].at[rows, span].set(small["pos"][:, span], mode="drop"),
        # The row's previous prompt and generation, wherever they reached, are invalid now.
        "valid": big["valid"].at[rows, prefix_len:].set(False, mode="drop").at[rows, span].set(small["valid"][:, span], mode="drop"),
    }
    put = lambda x, value: x.at[rows].set(value, mode="drop")  # noqa: E731
    first = lambda fill, value: jnp.full((group, gen_len), fill, value.dtype).at[:, 0].set(value)  # noqa: E731
    return DecodeState(
        _cache_constraint(spec, cache),
        put(state.tokens, first(-1, token)),
        put(state.logprobs, first(0.0, _logprob(logits, token))),
        put(state.last, token),
        put(state.pos, positions[:, -1] + 1),
        put(state.count, jnp.ones_like(token)),
        put(state.done, jnp.isin(token, eos_ids) | (max_new <= 1)),
        put(state.write, jnp.full_like(token, prefix_len + prompt_len)),
        put(state.row_ids, row_ids),
        state.t,
    )


@functools.partial(jax.jit, static_argnames=("spec", "return_logprobs"), donate_argnames=("state",))
def decode(
    params,
    spec: ForwardSpec,
    state: DecodeState,
    seed,
    sampling: SamplingParams,
    eos_ids,
    max_new,
    t_limit,
    done_target,
    return_logprobs: bool,
) -> DecodeState:
    """Decode until step `t_limit` or until at least `done_target` rows are done (free rows
    count as done: they wait for a refill)."""
    TRACE_COUNTS["decode"] += 1
    batch, gen_len = state.tokens.shape
    rows = jnp.arange(batch)

    def cond(s: DecodeState):
        return (s.t < t_limit) & (jnp.sum(s.done, dtype=jnp.int32) < done_target)

    def body(s: DecodeState):
        live = ~s.done
        hidden, cache = forward_cached(params, spec, s.last[:, None], s.pos[:, None], live[:, None], s.cache, s.write)
        logits = logits_from_hidden(params, spec, hidden)[:, 0]
        token = next_token(logits, sampling, row_keys(seed, s.row_ids), s.count)
        column = jnp.where(live, s.count, gen_len)  # out of range: dropped
        tokens = s.tokens.at[rows, column].set(token, mode="drop")
        logprobs = s.logprobs.at[rows, column].set(_logprob(logits, token), mode="drop") if return_logprobs else s.logprobs
        count = s.count + live
        done = s.done | (jnp.isin(token, eos_ids) | (count >= max_new))
        return DecodeState(
            _cache_constraint(spec, cache), tokens, logprobs, jnp.where(live, token, s.last), s.pos + live, count, done, s.write + live,
            s.row_ids, s.t + 1,
        )

    return jax.lax.while_loop(cond, body, state)


@jax.jit
def compact(state: DecodeState, keep: jax.Array) -> DecodeState:
    """The rows `keep` of every batch-major field."""
    TRACE_COUNTS["compact"] += 1
    t = state.t
    state = jax.tree.map(lambda x: x[keep], dataclasses.replace(state, t=None))
    return dataclasses.replace(state, t=t)


def batch_multiple(spec: ForwardSpec) -> int:
    """Batch sizes must split evenly over the mesh axes that hold the batch."""
    if spec.mesh is None:
        return 1
    axes = spec.rules.mesh_axes("batch")
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    return math.prod(spec.mesh.shape[a] for a in axes)
