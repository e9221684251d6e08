"""Batched generation with continuous batching: a finished row takes the next prompt at once.

Compile budget. Every jitted function is keyed by shapes only: the batch, the cache length
(fixed for a whole `generate` call), the refill group and its prompt bucket. Sampling
parameters, the seed and the step limits are traced values. Prompts are sorted by length and
enter the batch in groups of similar length, so thousands of prompts compile one decode loop
(plus one per halving at the end) and one prefill per prompt bucket, and changing
temperature/top-p between calls compiles nothing.

Why refill. A fixed batch runs until its longest row ends: on GSM8K (answers of 80 to 256
tokens) a quarter of the row-steps went to rows that had already finished. Here the decode
loop hands control back as soon as a group of rows has finished; their results are yielded,
and the next prompts are prefilled into those rows while the others keep their state.

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
    tokens: jax.Array  # [B, G] the row's generated ids, -1 past its end
    logprobs: jax.Array  # [B, G] log p(token) under the model (raw logits, before sampling cuts)
    last: jax.Array  # [B] the latest token, not yet written to the cache
    pos: jax.Array  # [B] that token's position
    count: jax.Array  # [B] tokens the row has generated
    done: jax.Array  # [B] finished, or holding no prompt
    write: jax.Array  # [B] the slot `last` goes to
    row_ids: jax.Array  # [B] the row's prompt id, which with the seed makes its PRNG key
    t: jax.Array  # () decode steps taken


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


def _compacted_size(rows: int, live: int, multiple: int, minimum: int) -> int | None:
    """The halved batch size to move `live` rows into, or None to keep the current batch."""
    size = rows
    while size // 2 >= max(live, minimum, multiple) and (size // 2) % multiple == 0:
        size //= 2
    return size if size < rows else None


def _done_for_compaction(rows: int, multiple: int, minimum: int) -> int:
    """How many of `rows` must be done before the batch can be halved (all, if it cannot)."""
    half = rows // 2
    if half >= max(minimum, multiple) and half % multiple == 0:
        return rows - half
    return rows


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


def batch_and_group(batch_size: int, multiple: int, group: int | None = None) -> tuple[int, int]:
    """The batch rounded up to a multiple of the devices holding it, and the refill group
    (default: an eighth of the batch, at least 4), a multiple too."""
    batch_size = -(-max(1, batch_size) // multiple) * multiple
    if group is None:
        group = max(4, batch_size // 8)
    return batch_size, min(batch_size, -(-max(1, group) // multiple) * multiple)


def row_slots(max_prompt: int, max_new_tokens: int) -> int:
    """Cache slots after the prefix for prompts of up to `max_prompt` tokens (padded to their
    bucket) generating up to `max_new_tokens` (the last one is sampled, never written)."""
    return bucket(max_prompt) + -(-(max_new_tokens - 1) // 16) * 16


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
    group: int | None = None,
    layout_from: Sequence[str | Sequence[int]] | None = None,
) -> Iterator[list[tuple[int, Generation]]]:
    """Yield lists of (prompt index, Generation) as rows finish, longest prompts first.

    The batch keeps `batch_size` rows busy: whenever `group` rows (default: an eighth of the
    batch, at least 4) have finished, the next `group` prompts are prefilled into them.
    With stop strings, decoding pauses every `chunk` steps so the host can check the texts.
    Once no prompt is left to start and at most half of the rows are live, those move into a
    batch half the size (never below `min_compact` rows), so finished rows stop costing
    compute. `fixed_batch` keeps `batch_size` even for fewer prompts (one compiled shape for
    a work queue's every resume).

    Prompt i samples with a key made from (seed, seed_ids[i]) (default: i), so a subset of a
    prompt list resumed later draws exactly what it would have drawn in the full run.

    When all prompts start with the same `share_prefix` or more tokens (a chat template and
    task instructions: half of a GSM8K prompt), that prefix is run through the model once and
    its KV copied into every row, instead of being recomputed for every row. 0 turns it off.

    `layout_from` (a superset of `prompts`: a work queue's whole input) fixes the shared
    prefix and the cache length, which otherwise follow `prompts`: float sums over a
    different cache length round differently, so a resumed subset would not reproduce the
    full run's bits without it.
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
    batch_size, group = batch_and_group(batch_size, multiple, group)
    gen_len = bucket(max_new_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if seed_ids is None:
        seed_ids = range(len(encoded))
    elif len(seed_ids) != len(encoded):
        raise ValueError("seed_ids needs one entry per prompt")

    def batch_sharding_for(rows: int):
        return None if spec.mesh is None else spec.rules.named(spec.mesh, ("batch", "seq"), (rows, 1))

    replicated = None if spec.mesh is None else jax.sharding.NamedSharding(spec.mesh, jax.sharding.PartitionSpec())
    scalar = lambda x: host_to_global(np.int32(x), replicated)  # noqa: E731

    layout = encoded if layout_from is None else encode_prompts(tokenizer, layout_from)
    prefix, prefix_len, shared = None, 0, _shared_prefix(layout) if share_prefix else []
    if any(e[: len(shared)] != shared for e in encoded):
        raise ValueError("layout_from must hold every prompt's shared prefix (use a superset of the prompts)")
    if share_prefix and len(shared) >= share_prefix:
        prefix_len = bucket(len(shared))
        ids = np.full((1, prefix_len), pad_id, np.int32)
        ids[0, prefix_len - len(shared) :] = shared
        mask = (np.arange(prefix_len) >= prefix_len - len(shared)).astype(np.int32)[None]
        prefix = prefill_prefix(params, spec, host_to_global(ids, replicated), host_to_global(mask, replicated))
        encoded = [e[len(shared) :] for e in encoded]
        layout = [e[len(shared) :] for e in layout]

    queue = sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))
    state = empty_state(spec, prefix, batch_size, row_slots(max(len(e) for e in layout + encoded), max_new_tokens), gen_len)
    rows = np.full((batch_size,), -1)  # state row -> prompt index, -1 when free
    eos_set = set(eos_ids)

    def refill(state: DecodeState) -> DecodeState:
        nonlocal queue
        free = np.flatnonzero(rows < 0)
        while queue and len(free) >= min(group, len(queue)):
            members, queue = queue[:group], queue[group:]
            prompt_len = bucket(max(len(encoded[i]) for i in members))
            ids = np.full((group, prompt_len), pad_id, np.int32)
            mask = np.zeros((group, prompt_len), np.int32)
            mask[:, -1] = 1  # filler rows: one dummy token, dropped on insertion
            targets = np.full((group,), batch_size, np.int32)
            row_ids = np.zeros((group,), np.int32)
            for j, i in enumerate(members):
                ids[j, prompt_len - len(encoded[i]) :] = encoded[i]
                mask[j, prompt_len - len(encoded[i]) :] = 1
                targets[j], row_ids[j] = free[j], seed_ids[i]
            rows[free[: len(members)]] = members
            free = free[len(members) :]
            put = lambda x: host_to_global(x, batch_sharding_for(group))  # noqa: E731
            state = insert(
                params, spec, state, prefix, host_to_global(targets, replicated), put(ids), put(mask), put(row_ids),
                scalar(seed), sampling, eos, scalar(max_new_tokens),
            )  # fmt: skip
        return state

    while True:
        state = refill(state)
        if not (rows >= 0).any():
            break
        t = int(state.t)
        target = min(group, len(queue)) if queue else _done_for_compaction(len(rows), multiple, min_compact)
        limit = t + (chunk if stop else gen_len)
        state = decode(
            params, spec, state, scalar(seed), sampling, eos, scalar(max_new_tokens), scalar(limit), scalar(target),
            return_logprobs,
        )  # fmt: skip
        done = global_to_host(state.done)
        tokens = None
        if stop:  # rows whose text now holds a stop string are finished
            tokens = global_to_host(state.tokens)
            hit = np.zeros_like(done)
            for row in np.flatnonzero((rows >= 0) & ~done):
                text = tokenizer.decode(_valid(tokens[row]), skip_special_tokens=True)
                hit[row] = any(s in text for s in stop)
            if hit.any():
                done = done | hit
                state = dataclasses.replace(state, done=host_to_global(done, batch_sharding_for(len(done))))
        finished = np.flatnonzero(done & (rows >= 0))
        if len(finished):
            tokens = global_to_host(state.tokens) if tokens is None else tokens
            logprobs = global_to_host(state.logprobs) if return_logprobs else None
            results = []
            for row in finished:
                ids_row = _valid(tokens[row])[:max_new_tokens]
                lps = logprobs[row][: len(ids_row)].tolist() if return_logprobs else None
                results.append((int(rows[row]), _finish(tokenizer, ids_row, lps, eos_set, stop)))
            rows[finished] = -1
            yield results
        if not queue:
            smaller = _compacted_size(len(rows), int((rows >= 0).sum()), multiple, min_compact)
            if smaller:
                # Most rows have finished and no prompt is left to start: keep decoding only
                # the live ones in a smaller batch (one more compiled shape per halving).
                keep = np.concatenate([np.flatnonzero(rows >= 0), np.flatnonzero(rows < 0)])[:smaller]
                state = compact(state, host_to_global(keep.astype(np.int32), replicated))
                rows = rows[keep]


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
