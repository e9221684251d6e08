"""Log-probabilities of given continuations under a model: one forward pass per batch, no
sampling. The pure core of lm-eval-style scoring (evaluation/loglikelihood.py) and of the LLM
judge's yes/no verdict (judges/verdict.py), which is why it sits in the sampling layer.

Batches. Requests are sorted by length (longest first), cut into batches and left-padded to a
bucketed length (`scheduler.bucket`: 16, 24, 32, 48, ...), so a benchmark compiles a handful of
shapes. Each batch is split over the mesh axes that hold "batch". Only the last C positions
(C = the bucketed longest continuation of the batch) go through the LM head, in float32, and
only target log-probabilities and argmax flags leave the device: no [B, T, V] log-softmax.
Requests that differ only in their final token (MMLU's " A" ... " D" after one prompt) share a
row, as HFLM's one-token-continuation cache does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from s3ft_jax.models.llama import ForwardSpec, hidden_states, logits_from_hidden, positions_from_mask
from s3ft_jax.progress import progress_bar
from s3ft_jax.sampling.params import greedy_token
from s3ft_jax.sampling.weights import place, sampling_spec
from s3ft_jax.sampling.sampler import TRACE_COUNTS, batch_multiple
from s3ft_jax.sampling.scheduler import bucket
from s3ft_jax.sharding import global_to_host, host_to_global

# Tokens per batch (rows x padded length): long prompts (5-shot MMLU) get fewer rows.
DEFAULT_BATCH_TOKENS = 16384


@functools.partial(jax.jit, static_argnames=("spec",))
def _score_batch(params, spec: ForwardSpec, ids, mask, targets, valid, last, last_valid):
    """Per row and last-token choice: (sum of target log-probs, all targets greedy).

    targets/valid [B, C]: the continuation's targets except the last, right-aligned in the
    last C slots (the final slot is never valid here). last/last_valid [B, K]: the candidate
    final tokens of the row, all scored at the final slot.
    """
    TRACE_COUNTS["loglikelihood"] += 1
    hidden = hidden_states(params, spec, ids, positions_from_mask(mask), mask.astype(bool))
    logits = logits_from_hidden(params, spec, hidden[:, -targets.shape[1] :]).astype(jnp.float32)  # [B, C, V]
    logz = jax.nn.logsumexp(logits, axis=-1)  # [B, C]
    best = greedy_token(logits.reshape(-1, logits.shape[-1])).reshape(logits.shape[:2])  # [B, C], argmax
    body = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0] - logz
    body_sum = jnp.sum(jnp.where(valid, body, 0.0), axis=-1)  # [B]
    body_greedy = jnp.all((best == targets) | ~valid, axis=-1)  # [B]
    final = jnp.take_along_axis(logits[:, -1], last, axis=-1) - logz[:, -1:]  # [B, K]
    total = body_sum[:, None] + jnp.where(last_valid, final, 0.0)
    greedy = body_greedy[:, None] & (best[:, -1:] == last)
    return total, greedy


def _rows_for(length: int, batch_size: int, batch_tokens: int, multiple: int) -> int:
    """Rows per batch at a padded length: a power of two times the mesh's batch multiple."""
    rows = max(1, min(batch_size, batch_tokens // length) // multiple)
    return (1 << (rows.bit_length() - 1)) * multiple


def _pow2(n: int, start: int = 1) -> int:
    """The smallest start * 2**k >= n."""
    size = start
    while size < n:
        size *= 2
    return size


def score_tokens(
    model: nnx.Module,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    pad_id: int = 0,
    progress: str | None = None,
    weights: tuple[ForwardSpec, dict] | None = None,
) -> list[tuple[float, bool]]:
    """(log p(continuation | context), is_greedy) for (context ids, continuation ids) pairs.

    `progress` names a progress bar over the scored sequences (none when None). `weights`:
    `weights.sampling_params(model, unstack=False)` made once by a caller that scores many
    times (the LLM judge), so each call does not cast and reshard the whole model again.

    Requests whose model input is the same (same tokens but the very last one, same
    continuation length: the choices " A" / " B" / " C" / " D" after one MMLU prompt) share one
    row: the final slot's logits score every candidate last token. Identical requests are
    scored once.
    """
    # compute-dtype weights, tensor-parallel (weights.py)
    spec: ForwardSpec = sampling_spec(model.spec) if weights is None else weights[0]
    max_length = int(max_length or spec.cfg.max_position_embeddings)
    # (input tokens, continuation length) -> {candidate last token: column}
    groups: dict[tuple[tuple[int, ...], int], dict[int, int]] = {}
    where: list[tuple[tuple[tuple[int, ...], int], int]] = []
    for context, continuation in pairs:
        context, continuation = [int(t) for t in context], [int(t) for t in continuation]
        if not context or not continuation:
            raise ValueError("context and continuation must each have at least one token")
        if len(continuation) > max_length:
            raise ValueError(f"continuation of {len(continuation)} tokens exceeds max_length {max_length}")
        seq = (context + continuation)[-(max_length + 1) :]
        key = (tuple(seq[:-1]), len(continuation))
        columns = groups.setdefault(key, {})
        where.append((key, columns.setdefault(seq[-1], len(columns))))
    if not where:
        return []

    params = place(nnx.to_pure_dict(nnx.state(model, nnx.Param)), spec, unstack=False) if weights is None else weights[1]
    multiple = batch_multiple(spec)
    keys = sorted(groups, key=lambda k: -len(k[0]))  # longest first (a stable sort)
    results: dict[tuple[tuple[int, ...], int], tuple[np.ndarray, np.ndarray]] = {}
    bar = progress_bar(len(keys), desc=progress or "", unit="seq", enabled=progress is not None)
    start = 0
    while start < len(keys):
        length = bucket(len(keys[start][0]))
        rows = min(_rows_for(length, batch_size, batch_tokens, multiple), _pow2(len(keys) - start, multiple))
        members = keys[start : start + rows]
        start += len(members)
        width = min(bucket(max(n for _, n in members), minimum=4), length)
        choices = _pow2(max(len(groups[k]) for k in members))
        ids = np.full((rows, length), pad_id, np.int32)
        mask = np.zeros((rows, length), np.int32)
        mask[:, -1] = 1  # filler rows: one dummy token, nothing scored
        targets = np.zeros((rows, width), np.int32)
        valid = np.zeros((rows, width), bool)
        last = np.zeros((rows, choices), np.int32)
        last_valid = np.zeros((rows, choices), bool)
        for row, key in enumerate(members):
            inp, n = key
            ids[row, length - len(inp) :] = inp
            mask[row, length - len(inp) :] = 1
            if n > 1:  # targets of all but the final slot: the input shifted by one
                targets[row, width - n : width - 1] = inp[len(inp) - n + 1 :]
                valid[row, width - n : width - 1] = True
            for token, column in groups[key].items():
                last[row, column], last_valid[row, column] = token, True
        sharding = None if spec.mesh is None else spec.rules.named(spec.mesh, ("batch", "seq"), (rows, 1))
        put = lambda x: host_to_global(x, sharding)  # noqa: E731
        total, greedy = _score_batch(params, spec, put(ids), put(mask), put(targets), put(valid), put(last), put(last_valid))
        total, greedy = global_to_host(total), global_to_host(greedy)
        for row, key in enumerate(members):
            results[key] = (total[row], greedy[row])
        bar.update(len(members))
    bar.close()
    return [(float(results[key][0][column]), bool(results[key][1][column])) for key, column in where]


__all__ = ["DEFAULT_BATCH_TOKENS", "score_tokens"]
