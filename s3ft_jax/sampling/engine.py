"""`SamplerEngine`: one model's weights in sampling form, and generation over them.

The cached forward pass reads the weights unstacked, one buffer per layer (`unstack_layers`),
in the compute dtype and a tensor-parallel layout (sampling/weights.py): a copy of every
weight. The engine makes that copy once, when it is built, so a caller that
generates many times (the LLM judge, once per batch) pays it once. The copy is a snapshot:
an engine built before the model's weights change keeps sampling the old ones, so build a new
engine after training.

`generate_batches` runs continuous batching: the `Scheduler` (scheduler.py) says which prompt
goes to which row and when to compact; the jitted programs of sampler.py do the work on the
devices; finished rows come back to the host as `Generation`s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from s3ft_jax.sampling.options import SamplingOptions
from s3ft_jax.sampling.params import SamplingParams
from s3ft_jax.sampling.sampler import DecodeState, batch_multiple, compact, decode, empty_state, insert, prefill_prefix
from s3ft_jax.sampling.scheduler import Scheduler, bucket, row_slots
from s3ft_jax.sampling.weights import sampling_params
from s3ft_jax.sharding import global_to_host, host_to_global

Prompt = str | Sequence[int]


@dataclasses.dataclass(frozen=True)
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str  # "eos" | "stop" | "length"
    logprobs: list[float] | None = None


class SamplerEngine:
    """Generation with one model: its spec, its weights unstacked (made here, once) and the
    jitted programs, which compile once per shape and are shared by every engine."""

    def __init__(self, model: nnx.Module):
        # The weights in the compute dtype and the sampling layout (sampling/weights.py).
        self.spec, self.params = sampling_params(model)
        self.multiple = batch_multiple(self.spec)  # batch sizes split evenly over these devices
        mesh = self.spec.mesh
        self._replicated = None if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def _scalar(self, x: int) -> jax.Array:
        return host_to_global(np.int32(x), self._replicated)

    def _batch_sharding(self, rows: int):
        return None if self.spec.mesh is None else self.spec.rules.named(self.spec.mesh, ("batch", "seq"), (rows, 1))

    def generate(
        self, tokenizer, prompts: Sequence[Prompt], options: SamplingOptions, *, seed_ids: Sequence[int] | None = None,
        layout_from: Sequence[Prompt] | None = None, eos_ids: Sequence[int] | None = None,
    ) -> list[Generation]:  # fmt: skip
        """One Generation per prompt, in input order. See `generate_batches`."""
        out: list[Generation | None] = [None] * len(prompts)
        for batch in self.generate_batches(tokenizer, prompts, options, seed_ids=seed_ids, layout_from=layout_from, eos_ids=eos_ids):
            for i, generation in batch:
                out[i] = generation
        return out  # type: ignore[return-value]

    def generate_batches(
        self, tokenizer, prompts: Sequence[Prompt], options: SamplingOptions, *, seed_ids: Sequence[int] | None = None,
        layout_from: Sequence[Prompt] | None = None, eos_ids: Sequence[int] | None = None,
    ) -> Iterator[list[tuple[int, Generation]]]:  # fmt: skip
        """Yield lists of (prompt index, Generation) as rows finish, longest prompts first.

        The batch keeps `options.batch_size` rows busy: whenever `options.group` rows (default:
        an eighth of the batch, at least 4) have finished, the next group of prompts is
        prefilled into them. With stop strings, decoding pauses every `options.chunk` steps so
        the host can check the texts. Once no prompt is left to start and at most half of the
        rows are live, those move into a batch half the size (never below
        `options.min_compact` rows), so finished rows stop costing compute.
        `options.fixed_batch` keeps `batch_size` even for fewer prompts (one compiled shape
        for a work queue's every resume).

        Prompt i samples with a key made from (seed, seed_ids[i]) (default: i), so a subset of
        a prompt list resumed later draws exactly what it would have drawn in the full run.

        When all prompts start with the same `options.share_prefix` or more tokens (a chat
        template and task instructions: half of a GSM8K prompt), that prefix is run through
        the model once and its KV copied into every row, instead of being recomputed for
        every row. 0 turns it off.

        `layout_from` (a superset of `prompts`: a work queue's whole input) fixes the shared
        prefix and the cache length, which otherwise follow `prompts`: float sums over a
        different cache length round differently, so a resumed subset would not reproduce the
        full run's bits without it.

        `eos_ids` end a generation (default: the tokenizer's and the model config's).
        """
        spec, params, o = self.spec, self.params, options
        sampling = SamplingParams.make(o.temperature, o.top_k, o.top_p)
        encoded = encode_prompts(tokenizer, prompts)
        if not encoded:
            return
        if eos_ids is None:
            eos_ids = sorted({tokenizer.eos_token_id, *spec.cfg.eos_token_ids} - {None})
        eos = jnp.asarray(list(eos_ids) or [-1], jnp.int32)
        eos_set = set(eos_ids)
        gen_len = bucket(o.max_new_tokens)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if seed_ids is None:
            seed_ids = range(len(encoded))
        elif len(seed_ids) != len(encoded):
            raise ValueError("seed_ids needs one entry per prompt")

        layout = encoded if layout_from is None else encode_prompts(tokenizer, layout_from)
        prefix, shared = None, _shared_prefix(layout) if o.share_prefix else []
        if any(e[: len(shared)] != shared for e in encoded):
            raise ValueError("layout_from must hold every prompt's shared prefix (use a superset of the prompts)")
        if o.share_prefix and len(shared) >= o.share_prefix:
            prefix = self._prefill_prefix(shared, pad_id)
            encoded = [e[len(shared) :] for e in encoded]
            layout = [e[len(shared) :] for e in layout]

        schedule = Scheduler(
            [len(e) for e in encoded], batch_size=o.batch_size, multiple=self.multiple, group=o.group,
            min_compact=o.min_compact, fixed_batch=o.fixed_batch,
        )  # fmt: skip
        slots = row_slots(max(len(e) for e in layout + encoded), o.max_new_tokens)
        state = empty_state(spec, prefix, schedule.batch_size, slots, gen_len)
        seed, max_new = self._scalar(o.seed), self._scalar(o.max_new_tokens)

        def refill(state: DecodeState) -> DecodeState:
            group = schedule.group
            while (joining := schedule.next_refill()) is not None:
                width = joining.width
                ids = np.full((group, width), pad_id, np.int32)
                mask = np.zeros((group, width), np.int32)
                mask[:, -1] = 1  # filler rows: one dummy token, dropped on insertion
                targets = np.full((group,), schedule.batch_size, np.int32)  # out of range: dropped
                row_ids = np.zeros((group,), np.int32)
                for j, (i, row) in enumerate(zip(joining.prompts, joining.rows)):
                    ids[j, width - len(encoded[i]) :] = encoded[i]
                    mask[j, width - len(encoded[i]) :] = 1
                    targets[j], row_ids[j] = row, seed_ids[i]
                put = lambda x: host_to_global(x, self._batch_sharding(group))  # noqa: E731
                state = insert(
                    params, spec, state, prefix, host_to_global(targets, self._replicated), put(ids), put(mask), put(row_ids),
                    seed, sampling, eos, max_new,
                )  # fmt: skip
            return state

        while True:
            state = refill(state)
            if not schedule.busy:
                break
            limit = int(state.t) + (o.chunk if o.stop else gen_len)
            state = decode(
                params, spec, state, seed, sampling, eos, max_new, self._scalar(limit), self._scalar(schedule.done_target()),
                o.return_logprobs,
            )  # fmt: skip
            done = global_to_host(state.done)
            tokens = None
            if o.stop:  # rows whose text now holds a stop string are finished
                tokens = global_to_host(state.tokens)
                hit = np.zeros_like(done)
                for row in np.flatnonzero(schedule.occupied & ~done):
                    text = tokenizer.decode(_valid(tokens[row]), skip_special_tokens=True)
                    hit[row] = any(s in text for s in o.stop)
                if hit.any():
                    done = done | hit
                    state = dataclasses.replace(state, done=host_to_global(done, self._batch_sharding(len(done))))
            finished = np.flatnonzero(done & schedule.occupied)
            if len(finished):
                tokens = global_to_host(state.tokens) if tokens is None else tokens
                logprobs = global_to_host(state.logprobs) if o.return_logprobs else None
                results = []
                for row, prompt in zip(finished, schedule.release(finished)):
                    ids_row = _valid(tokens[row])[: o.max_new_tokens]
                    lps = logprobs[row][: len(ids_row)].tolist() if o.return_logprobs else None
                    results.append((prompt, _finish(tokenizer, ids_row, lps, eos_set, o.stop)))
                yield results
            keep = schedule.compaction()
            if keep is not None:
                # Most rows have finished and no prompt is left to start: keep decoding only
                # the live ones in a smaller batch (one more compiled shape per halving).
                state = compact(state, host_to_global(keep.astype(np.int32), self._replicated))

    def _prefill_prefix(self, shared: list[int], pad_id: int) -> dict:
        """The KV cache of the prefix every prompt shares, left-padded to its bucket."""
        width = bucket(len(shared))
        ids = np.full((1, width), pad_id, np.int32)
        ids[0, width - len(shared) :] = shared
        mask = (np.arange(width) >= width - len(shared)).astype(np.int32)[None]
        return prefill_prefix(self.params, self.spec, host_to_global(ids, self._replicated), host_to_global(mask, self._replicated))


def generate_batches(model: nnx.Module, tokenizer, prompts: Sequence[Prompt], options: SamplingOptions, **call) -> Iterator[list[tuple[int, Generation]]]:
    """`SamplerEngine(model).generate_batches(...)`: for one call; build an engine to call many times."""
    return SamplerEngine(model).generate_batches(tokenizer, prompts, options, **call)


def generate(model: nnx.Module, tokenizer, prompts: Sequence[Prompt], options: SamplingOptions, **call) -> list[Generation]:
    """`SamplerEngine(model).generate(...)`: for one call; build an engine to call many times."""
    return SamplerEngine(model).generate(tokenizer, prompts, options, **call)


def encode_prompts(tokenizer, prompts: Sequence[Prompt]) -> list[list[int]]:
    """Rendered strings are tokenized as they are (no special tokens added: the chat template
    already wrote them); token-id lists pass through."""
    out = []
    for p in prompts:
        ids = tokenizer(p, add_special_tokens=False)["input_ids"] if isinstance(p, str) else [int(t) for t in p]
        if not ids:
            raise ValueError("empty prompt")
        out.append(ids)
    return out


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
