"""Drift from the base model: mean per-token KL(base || tuned) on held-out text.

The paper's claim is mechanistic: targets close to the model's own distribution move the
model less than gold targets, so it forgets less. This measures the movement directly. At
every scored position t of a text, both models see the same prefix and

    KL_t = sum_v p_base(v | x_<t) (log p_base(v | x_<t) - log p_tuned(v | x_<t)),

the expected extra surprise of the tuned model on what the base model would say. A text
contributes sum_t KL_t over its scored tokens; the result is the token-weighted mean over all
texts, with the ratio estimator's stderr over texts (`intervals.ratio_mean`).

Texts are (context, continuation) pairs; only the continuation's positions are scored. The
pipeline uses two kinds: the base model's own greedy responses to held-out task prompts
(context = the chat prompt, continuation = the generated tokens) and the generalization
benchmarks' prompts with their gold continuations, scored whole (context = the BOS token).

Batching and sharding follow `sampling.scoring.score_tokens`: requests sorted by length,
left-padded to bucketed lengths, rows split over the mesh's batch axes, and only the last C
positions (C = the bucketed longest continuation of the batch) go through the LM head. The
[B, C, V] log-softmaxes of both models stay on the device; one float per row comes back.
`logit_tokens` caps B x C, which bounds that memory (V floats per position and model).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from s3ft_jax.evaluation.intervals import ratio_mean
from s3ft_jax.evaluation.loglikelihood import encode_pair
from s3ft_jax.sampling.scoring import DEFAULT_BATCH_TOKENS, _pow2, _rows_for
from s3ft_jax.models.llama import ForwardSpec, hidden_states, logits_from_hidden, positions_from_mask
from s3ft_jax.progress import progress_bar
from s3ft_jax.sampling.sampler import TRACE_COUNTS, batch_multiple
from s3ft_jax.sampling.scheduler import bucket
from s3ft_jax.sampling.weights import place, sampling_spec
from s3ft_jax.sharding import global_to_host, host_to_global

# Positions (rows x C) per batch whose full-vocabulary log-softmax is held for both models:
# 2048 x 49152 (SmolLM2's vocabulary) x 4 bytes = 400 MB each.
DEFAULT_LOGIT_TOKENS = 2048


@functools.partial(jax.jit, static_argnames=("spec_p", "spec_q", "width"))
def _kl_batch(params_p, params_q, spec_p: ForwardSpec, spec_q: ForwardSpec, width: int, ids, mask, valid):
    """[B]: sum over the valid positions among the last `width` slots of KL(p || q)."""
    TRACE_COUNTS["kl_drift"] += 1
    positions, keys = positions_from_mask(mask), mask.astype(bool)

    def log_softmax(params, spec):
        hidden = hidden_states(params, spec, ids, positions, keys)
        return jax.nn.log_softmax(logits_from_hidden(params, spec, hidden[:, -width:]).astype(jnp.float32), axis=-1)

    lp, lq = log_softmax(params_p, spec_p), log_softmax(params_q, spec_q)
    kl = jnp.sum(jnp.exp(lp) * (lp - lq), axis=-1)  # [B, C]
    return jnp.sum(jnp.where(valid, kl, 0.0), axis=-1)


def kl_per_text(
    base_model: nnx.Module,
    tuned_model: nnx.Module,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    logit_tokens: int = DEFAULT_LOGIT_TOKENS,
    pad_id: int = 0,
    progress: str | None = None,
) -> list[tuple[float, int]]:
    """(sum of per-token KL(base || tuned) over the continuation, its token count) per
    (context ids, continuation ids) pair. Contexts lose tokens from the left beyond
    `max_length` (default: the model's max_position_embeddings). `progress` names a progress
    bar over the texts (none when None)."""
    # Compute-dtype weights in the tensor-parallel sampling layout (sampling/weights.py).
    spec_p, spec_q = sampling_spec(base_model.spec), sampling_spec(tuned_model.spec)
    if spec_p.mesh is not spec_q.mesh and spec_p.mesh != spec_q.mesh:
        raise ValueError("the base and tuned models must be sharded over the same mesh")
    max_length = int(max_length or spec_p.cfg.max_position_embeddings)
    rows_in: list[tuple[list[int], int]] = []
    for context, continuation in pairs:
        context, continuation = [int(t) for t in context], [int(t) for t in continuation]
        if not context or not continuation:
            raise ValueError("context and continuation must each have at least one token")
        n = min(len(continuation), max_length)  # a continuation longer than the window: its tail
        seq = (context + continuation)[-(max_length + 1) :]
        rows_in.append((seq[:-1], n))
    if not rows_in:
        return []

    params_p = place(nnx.to_pure_dict(nnx.state(base_model, nnx.Param)), spec_p, unstack=False)
    params_q = place(nnx.to_pure_dict(nnx.state(tuned_model, nnx.Param)), spec_q, unstack=False)
    multiple = batch_multiple(spec_p)
    order = sorted(range(len(rows_in)), key=lambda i: -len(rows_in[i][0]))  # longest first (stable)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows_in)
    bar = progress_bar(len(order), desc=progress or "", unit="text", enabled=progress is not None)
    start = 0
    while start < len(order):
        length = bucket(len(rows_in[order[start]][0]))
        rows = min(_rows_for(length, batch_size, batch_tokens, multiple), _pow2(len(order) - start, multiple))
        width = min(bucket(max(rows_in[i][1] for i in order[start : start + rows]), minimum=4), length)
        # Fewer rows when the scored positions would exceed the logits budget (width only shrinks).
        rows = min(rows, _rows_for(width, batch_size, logit_tokens, multiple))
        members = order[start : start + rows]
        start += len(members)
        ids = np.full((rows, length), pad_id, np.int32)
        mask = np.zeros((rows, length), np.int32)
        mask[:, -1] = 1  # filler rows: one dummy token, nothing scored
        valid = np.zeros((rows, width), bool)
        for row, i in enumerate(members):
            inp, n = rows_in[i]
            ids[row, length - len(inp) :] = inp
            mask[row, length - len(inp) :] = 1
            valid[row, width - n :] = True
        sharding = None if spec_p.mesh is None else spec_p.rules.named(spec_p.mesh, ("batch", "seq"), (rows, 1))
        put = lambda x: host_to_global(x, sharding)  # noqa: E731
        sums = global_to_host(_kl_batch(params_p, params_q, spec_p, spec_q, width, put(ids), put(mask), put(valid)))
        for row, i in enumerate(members):
            out[i] = (float(sums[row]), rows_in[i][1])
        bar.update(len(members))
    bar.close()
    return out


def summarize(per_text: Sequence[tuple[float, int]]) -> dict:
    """{"kl": token-weighted mean per-token KL, "stderr", "texts", "tokens", "per_text":
    [[KL sum, tokens], ...] in the texts' order}. The per-text sums let two tuned models be
    compared on the same texts (a paired difference, much tighter than their two stderrs)."""
    rows = [[float(s), int(n)] for s, n in per_text]
    stats = ratio_mean([s for s, _ in rows], [n for _, n in rows])
    if stats is None:
        return {"kl": None, "stderr": None, "texts": 0, "tokens": 0, "per_text": []}
    return {"kl": stats["mean"], "stderr": stats["stderr"], "texts": stats["n"], "tokens": int(stats["count"]),
            "per_text": rows}


def kl_drift(
    base_model: nnx.Module,
    tuned_model: nnx.Module,
    tokenizer,
    texts: Sequence[tuple[str, str]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    logit_tokens: int = DEFAULT_LOGIT_TOKENS,
    progress: str | None = None,
) -> dict:
    """Mean per-token KL(base || tuned) over the continuations of (context, continuation)
    strings, tokenized as lm-eval does (`encode_pair`; an empty context scores the whole
    continuation after the BOS token). Returns `summarize`'s dict."""
    pairs = [encode_pair(tokenizer, context, continuation) for context, continuation in texts]
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    per_text = kl_per_text(base_model, tuned_model, pairs, batch_size=batch_size, max_length=max_length,
                           batch_tokens=batch_tokens, logit_tokens=logit_tokens, pad_id=pad, progress=progress)
    return summarize(per_text)


__all__ = ["DEFAULT_LOGIT_TOKENS", "kl_drift", "kl_per_text", "summarize"]
