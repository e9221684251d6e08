"""Batched generation: one jitted prefill, then a jitted decode loop over a KV cache.

Compile budget. Every jitted function here is keyed by (batch, prompt bucket, generation
slots); sampling parameters, the seed and the step limit are traced values. Prompts are sorted
by length and cut into fixed-size batches, so thousands of prompts compile once per prompt
bucket (a handful), and changing temperature/top-p between calls compiles nothing.

Generation slots grow: a batch starts with room for `min_slots` generated tokens and doubles
it (up to the generation bucket) only when a row gets that far, because every decode step
reads the whole cache, and reading slots no token has reached yet was a third of a step's
time on a CPU. That costs one compiled decode per capacity (at most log2(G / min_slots) + 1).

Cache layout, a worked example. Batch of two, prompt bucket P = 4, generation bucket G = 3:

    slot:        0    1    2    3  |  4    5    6
    row 0:     pad  pad    a    b  | g0   g1   g2      positions: a=0 b=1 g0=2 g1=3 g2=4
    row 1:       c    d    e    f  | h0   h1   h2      positions: c=0 ... f=3 h0=4 ...

Prefill writes slots 0..3 (pads marked invalid, never attended) and samples g0/h0 from the
logits at slot 3. Decode step s (s = 1, 2, ...) feeds the token sampled last into slot
P + s - 1 and samples the next. Slots are shared by the batch, positions are per row, so rows
with different amounts of left padding decode together without a per-batch position offset.
A prefix shared by every prompt sits in the first slots of every row (computed once, copied),
and the rows' own tokens follow it, left-padded, with positions that continue the prefix's.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from s3ft_jax.models.llama import (
    ForwardSpec,
    forward_cached,
    init_cache,
    logits_from_hidden,
    positions_from_mask,
    unstack_layers,
)
from s3ft_jax.sampling.params import SamplingParams, next_token, row_keys
from s3ft_jax.sharding import global_to_host, host_to_global

# How many times each jitted function has been traced (compiled); tests bound these.
TRACE_COUNTS: Counter = Counter()


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DecodeState:
    cache: dict
    tokens: jax.Array  # [B, G] generated ids; -1 once a row has finished
    logprobs: jax.Array  # [B, G] log p(token) under the model (raw logits, before sampling cuts)
    last: jax.Array  # [B] the latest token, not yet written to the cache
    pos: jax.Array  # [B] that token's position
    step: jax.Array  # () tokens generated so far
    done: jax.Array  # [B]
    keys: jax.Array  # [B] per-row PRNG keys


@dataclasses.dataclass(frozen=True)
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str  # "eos" | "stop" | "length"
    logprobs: list[float] | None = None


def bucket(n: int, minimum: int = 16) -> int:
    """Round up to 16, 32, 48, 64, 96, 128, 192, 256, 384, ... (powers of two and 1.5x them).

    At most 1.5x padding, and about two compiled shapes per doubling of prompt length.
    """
    size = minimum
    while size < n:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else (size // 3) * 4
    return size


def _cache_constraint(spec: ForwardSpec, cache: dict) -> dict:
    if spec.mesh is None:
        return cache
    return {
        "k": tuple(spec.constrain(k, "batch", "act_kv_heads", "head_dim", "seq") for k in cache["k"]),
        "v": tuple(spec.constrain(v, "batch", "act_kv_heads", "seq", "head_dim") for v in cache["v"]),
        "pos": spec.constrain(cache["pos"], "batch", "seq"),
        "valid": spec.constrain(cache["valid"], "batch", "seq"),
    }


@functools.partial(jax.jit, static_argnames=("spec",))
def prefill_prefix(params, spec: ForwardSpec, ids, mask) -> dict:
    """The KV cache [1, ..., P_prefix] of the prompt prefix that every prompt shares (a chat
    template's system prompt and instructions), computed once for all batches."""
    TRACE_COUNTS["prefix"] += 1
    cache = init_cache(spec.cfg, 1, ids.shape[1], spec.dtype)
    _, cache = forward_cached(params, spec, ids, positions_from_mask(mask), mask.astype(bool), cache, 0)
    return cache


@functools.partial(jax.jit, static_argnames=("spec", "gen_len", "slots"))
def prefill(
    params, spec: ForwardSpec, prefix, ids, mask, active, row_ids, seed, sampling: SamplingParams, eos_ids, gen_len: int, slots: int
) -> DecodeState:
    """Prefill the prompts (after the shared `prefix`, a `prefill_prefix` cache or None) and
    sample each row's first token. The cache gets room for `slots` generated tokens."""
    TRACE_COUNTS["prefill"] += 1
    batch, suffix_len = ids.shape
    prefix_len = 0 if prefix is None else prefix["pos"].shape[1]
    # Allocated inside the jit and handed to `decode` by donation: never two copies.
    cache = init_cache(spec.cfg, batch, prefix_len + suffix_len + slots, spec.dtype)
    positions = positions_from_mask(mask)
    if prefix is not None:
        # Every row gets the prefix in slots [0, prefix_len); its own tokens follow, left-padded.
        put = lambda buf, pre: jax.lax.dynamic_update_slice(buf, jnp.broadcast_to(pre, (batch, *pre.shape[1:])).astype(buf.dtype), (0,) * buf.ndim)  # noqa: E731
        cache = jax.tree.map(put, cache, prefix)
        positions = positions + jnp.sum(prefix["valid"], dtype=jnp.int32)
    cache = _cache_constraint(spec, cache)
    hidden, cache = forward_cached(
        params, spec, ids, positions, mask.astype(bool), cache, prefix_len, attend_len=prefix_len + suffix_len
    )
    logits = logits_from_hidden(params, spec, hidden[:, -1:])[:, 0]
    keys = row_keys(seed, row_ids)
    token = next_token(logits, sampling, keys, jnp.int32(0))
    logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]
    tokens = jnp.full((batch, gen_len), -1, jnp.int32).at[:, 0].set(token)
    logprobs = jnp.zeros((batch, gen_len), jnp.float32).at[:, 0].set(logprob)
    done = ~active | jnp.isin(token, eos_ids)
    return DecodeState(_cache_constraint(spec, cache), tokens, logprobs, token, positions[:, -1] + 1, jnp.int32(1), done, keys)


@functools.partial(jax.jit, static_argnames=("spec", "prompt_len"), donate_argnames=("state",))
def decode(params, spec: ForwardSpec, state: DecodeState, sampling: SamplingParams, eos_ids, limit, prompt_len: int) -> DecodeState:
    """Decode until `limit` tokens per row exist or every row is done. The cache must have
    room for `limit` generated tokens after its `prompt_len` prompt slots."""
    TRACE_COUNTS["decode"] += 1
    batch, gen_len = state.tokens.shape
    limit = jnp.minimum(limit, min(gen_len, state.cache["pos"].shape[1] - prompt_len))

    def cond(s: DecodeState):
        return (s.step < limit) & ~jnp.all(s.done)

    def body(s: DecodeState):
        hidden, cache = forward_cached(
            params, spec, s.last[:, None], s.pos[:, None], jnp.ones((batch, 1), bool), s.cache, prompt_len + s.step - 1
        )
        logits = logits_from_hidden(params, spec, hidden)[:, 0]
        token = next_token(logits, sampling, s.keys, s.step)
        logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]
        tokens = s.tokens.at[:, s.step].set(jnp.where(s.done, -1, token))
        logprobs = s.logprobs.at[:, s.step].set(jnp.where(s.done, 0.0, logprob))
        done = s.done | jnp.isin(token, eos_ids)
        return DecodeState(_cache_constraint(spec, cache), tokens, logprobs, token, s.pos + 1, s.step + 1, done, s.keys)

    return jax.lax.while_loop(cond, body, state)


@functools.partial(jax.jit, static_argnames=("spec", "slots"))
def grow(spec: ForwardSpec, state: DecodeState, slots: int) -> DecodeState:
    """The same state with the cache extended by empty slots to `slots` slots in all."""
    TRACE_COUNTS["grow"] += 1

    def pad(x: jax.Array, axis: int) -> jax.Array:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, slots - x.shape[axis])
        return jnp.pad(x, widths)

    cache = state.cache
    cache = {
        "k": tuple(pad(k, 3) for k in cache["k"]),
        "v": tuple(pad(v, 2) for v in cache["v"]),
        "pos": pad(cache["pos"], 1),
        "valid": pad(cache["valid"], 1),
    }
    return dataclasses.replace(state, cache=_cache_constraint(spec, cache))


def _capacity(needed: int, minimum: int, gen_len: int) -> int:
    """Generation slots for `needed` tokens: `minimum`, doubled as often as needed, at most
    `gen_len`."""
    slots = max(1, min(minimum, gen_len))
    while slots < needed:
        slots = min(2 * slots, gen_len)
    return slots


@jax.jit
def compact(state: DecodeState, keep: jax.Array) -> DecodeState:
    """The rows `keep` of every batch-major field."""
    TRACE_COUNTS["compact"] += 1
    take = lambda x: x[keep]  # noqa: E731
    return DecodeState(
        jax.tree.map(take, state.cache),
        take(state.tokens),
        take(state.logprobs),
        take(state.last),
        take(state.pos),
        state.step,
        take(state.done),
        take(state.keys),
    )


def _compacted_size(rows: int, live: int, multiple: int, minimum: int) -> int | None:
    """The halved batch size to move `live` rows into, or None to keep the current batch."""
    size = rows
    while size // 2 >= max(live, minimum, multiple) and (size // 2) % multiple == 0:
        size //= 2
    return size if size < rows else None


def encode_prompts(tokenizer, prompts: Sequence[str | Sequence[int]]) -> list[list[int]]:
    """Rendered strings are tokenized as they are (no special tokens added: the chat template
    already wrote them); token-id lists pass through."""
    out = []
    for p in prompts:
        ids = tokenizer(p, add_special_tokens=False)["input_ids"] if isinstance(p, str) else [int(t) for t in p]
        if not ids:
            raise ValueError("empty prompt")
        out.append(ids)
    return out


def batch_multiple(spec: ForwardSpec) -> int:
    """Batch sizes must split evenly over the mesh axes that hold the batch."""
    if spec.mesh is None:
        return 1
    axes = spec.rules.mesh_axes("batch")
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    return math.prod(spec.mesh.shape[a] for a in axes)


def generate_batches(
    model: nnx.Module,
    tokenizer,
    prompts: Sequence[str | Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    stop: Sequence[str] = (),
    seed: int = 0,
    batch_size: int = 32,
    return_logprobs: bool = False,
    eos_ids: Sequence[int] | None = None,
    chunk: int = 32,
    min_compact: int = 4,
    seed_ids: Sequence[int] | None = None,
    fixed_batch: bool = False,
    share_prefix: int = 16,
    min_slots: int = 64,
) -> Iterator[list[tuple[int, Generation]]]:
    """Yield one list of (prompt index, Generation) per batch, longest prompts first.

    Decoding runs in chunks of `chunk` steps. Between chunks the host checks stop strings
    and, once at most half of the rows are still live, moves those into a batch half the size
    (never below `min_compact` rows), so finished rows stop costing compute.

    Prompt i samples with a key made from (seed, seed_ids[i]) (default: i), so a subset of a
    prompt list resumed later draws exactly what it would have drawn in the full run.

    When all prompts start with the same `share_prefix` or more tokens (a chat template and
    task instructions: half of a GSM8K prompt), that prefix is run through the model once and
    its KV copied into every batch, instead of being recomputed for every row. 0 turns it off.

    The cache starts with room for `min_slots` generated tokens and doubles when needed (see
    the module docstring); `min_slots >= max_new_tokens` allocates it all at once.
    """
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    sampling = SamplingParams.make(temperature, top_k, top_p)
    spec: ForwardSpec = model.spec
    params = unstack_layers(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    encoded = encode_prompts(tokenizer, prompts)
    if eos_ids is None:
        eos_ids = sorted({tokenizer.eos_token_id, *spec.cfg.eos_token_ids} - {None})
    eos = jnp.asarray(list(eos_ids) or [-1], jnp.int32)
    multiple = batch_multiple(spec)
    if not fixed_batch:
        batch_size = min(batch_size, len(encoded))
    batch_size = -(-max(1, batch_size) // multiple) * multiple
    gen_len = bucket(max_new_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    if seed_ids is None:
        seed_ids = range(len(encoded))
    elif len(seed_ids) != len(encoded):
        raise ValueError("seed_ids needs one entry per prompt")

    def batch_sharding_for(rows: int):
        return None if spec.mesh is None else spec.rules.named(spec.mesh, ("batch", "seq"), (rows, 1))

    batch_sharding = batch_sharding_for(batch_size)
    replicated = None if spec.mesh is None else jax.sharding.NamedSharding(spec.mesh, jax.sharding.PartitionSpec())

    prefix, shared = None, _shared_prefix(encoded) if share_prefix else []
    if share_prefix and len(shared) >= share_prefix:
        width = bucket(len(shared))
        ids = np.full((1, width), pad_id, np.int32)
        ids[0, width - len(shared) :] = shared
        mask = (np.arange(width) >= width - len(shared)).astype(np.int32)[None]
        prefix = prefill_prefix(params, spec, host_to_global(ids, replicated), host_to_global(mask, replicated))
        encoded = [e[len(shared) :] for e in encoded]

    for start in range(0, len(order), batch_size):
        members = order[start : start + batch_size]
        prompt_len = bucket(max(len(encoded[i]) for i in members))
        ids = np.full((batch_size, prompt_len), pad_id, np.int32)
        mask = np.zeros((batch_size, prompt_len), np.int32)
        mask[:, -1] = 1  # filler rows: one dummy token, marked inactive below
        row_ids = np.zeros((batch_size,), np.int32)
        active = np.zeros((batch_size,), bool)
        for row, i in enumerate(members):
            ids[row, prompt_len - len(encoded[i]) :] = encoded[i]
            mask[row, prompt_len - len(encoded[i]) :] = 1
            row_ids[row], active[row] = seed_ids[i], True
        put = lambda x: host_to_global(x, batch_sharding)  # noqa: E731
        prompt_slots = prompt_len + (0 if prefix is None else prefix["pos"].shape[1])
        slots = _capacity(min(chunk, max_new_tokens), min_slots, gen_len)
        state = prefill(
            params, spec, prefix, put(ids), put(mask), put(active), put(row_ids), jnp.int32(seed), sampling, eos, gen_len, slots
        )
        rows = np.asarray(members + [-1] * (batch_size - len(members)))  # state row -> prompt
        stopped = np.zeros((batch_size,), bool)
        finished: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        while True:
            limit = min(int(state.step) + chunk, max_new_tokens)
            if limit > slots:
                slots = _capacity(limit, min_slots, gen_len)
                state = grow(spec, state, prompt_slots + slots)
            state = decode(params, spec, state, sampling, eos, jnp.int32(limit), prompt_slots)
            step = int(state.step)
            done = global_to_host(state.done)
            if step >= max_new_tokens or done.all():
                break
            if stop:  # rows whose text now holds a stop string are finished
                tokens = global_to_host(state.tokens)
                for row in np.flatnonzero((rows >= 0) & ~done & ~stopped):
                    text = tokenizer.decode(_valid(tokens[row][:step]), skip_special_tokens=True)
                    stopped[row] = any(s in text for s in stop)
                if stopped.any():
                    done = done | stopped
                    state = dataclasses.replace(state, done=host_to_global(done, batch_sharding_for(len(done))))
            smaller = _compacted_size(len(done), int((~done).sum()), multiple, min_compact)
            if smaller:
                # Most rows have finished: keep decoding only the live ones in a smaller
                # batch (one more compiled shape per halving), after saving the finished.
                tokens, logprobs = global_to_host(state.tokens), global_to_host(state.logprobs)
                for row in np.flatnonzero(done & (rows >= 0)):
                    finished[int(rows[row])] = (tokens[row], logprobs[row])
                keep = np.concatenate([np.flatnonzero(~done), np.flatnonzero(done)])[:smaller]
                state = compact(state, host_to_global(keep.astype(np.int32), replicated))
                rows, stopped = rows[keep], stopped[keep]
        tokens, logprobs = global_to_host(state.tokens), global_to_host(state.logprobs)
        state = None  # free this batch's KV cache before the next prefill allocates its own
        for row in np.flatnonzero(rows >= 0):
            finished[int(rows[row])] = (tokens[row], logprobs[row])
        results = []
        for i in members:
            ids_row = _valid(finished[i][0][:step])[:max_new_tokens]
            lps = finished[i][1][: len(ids_row)].tolist() if return_logprobs else None
            results.append((i, _finish(tokenizer, ids_row, lps, set(eos_ids), stop)))
        yield results


def generate(model: nnx.Module, tokenizer, prompts: Sequence[str | Sequence[int]], **kwargs) -> list[Generation]:
    """One Generation per prompt, in input order. See `generate_batches` for the options."""
    out: list[Generation | None] = [None] * len(prompts)
    for batch in generate_batches(model, tokenizer, prompts, **kwargs):
        for i, generation in batch:
            out[i] = generation
    return out  # type: ignore[return-value]


def _shared_prefix(encoded: list[list[int]]) -> list[int]:
    """The longest token prefix common to every prompt, leaving each at least one token."""
    first, limit = encoded[0], min(len(e) for e in encoded) - 1
    n = 0
    while n < limit and all(e[n] == first[n] for e in encoded):
        n += 1
    return first[:n]


def _valid(tokens: np.ndarray) -> list[int]:
    """Tokens up to the first -1 (the row finished there)."""
    end = np.flatnonzero(tokens < 0)
    return tokens[: end[0] if len(end) else len(tokens)].tolist()


def _finish(tokenizer, ids: list[int], logprobs, eos_ids: set[int], stop: Sequence[str]) -> Generation:
    text = tokenizer.decode(ids, skip_special_tokens=True)
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if hits:
        at, _ = min(hits)
        # Keep the shortest token prefix whose text already contains the stop string.
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if any(s in tokenizer.decode(ids[:mid], skip_special_tokens=True) for _, s in hits):
                hi = mid
            else:
                lo = mid + 1
        ids = ids[:lo]
        return Generation(text[:at], ids, "stop", None if logprobs is None else logprobs[:lo])
    reason = "eos" if ids and ids[-1] in eos_ids else "length"
    return Generation(text, ids, reason, logprobs)
