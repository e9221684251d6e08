"""Training data: prompt/target rows -> token rows with loss weights -> a fixed plan of batches.

One example is the chat-rendered prompt (the user turn plus the assistant header) followed by
the target and EOS; only target and EOS tokens carry loss. The model reads tokens[:-1] and
predicts tokens[1:], so an example of n tokens fills n - 1 row positions.

The whole run's batch order is a pure function of (seed, epoch, the example lengths, the
batch settings): `plan_steps` lays it out up front and step s always gets the same rows. Exact
resume therefore needs nothing beyond the step number.

A row holds one example (length bucketing: the batch is padded to the smallest bucket that
fits its longest row) or, with packing, several, each a segment with its own positions that
attends only within itself. A worked packed row, max_length 8, examples A (4 tokens, 2 of
prompt) and B (3 tokens, 1 of prompt):

    position in row:  0   1   2   3   4   5   6   7
    input tokens:     a0  a1  a2  b0  b1  pad pad pad
    labels:           a1  a2  a3  b1  b2  -   -   -
    weights:          0   1   1   1   1   0   0   0     (label is a target token or EOS)
    segment ids:      1   1   1   2   2   0   0   0     (0: padding, attends nowhere)
    positions:        0   1   2   0   1   0   0   0
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s3ft_jax.errors import S3FTError

log = logging.getLogger("s3ft_jax")


@dataclasses.dataclass(frozen=True)
class Example:
    tokens: np.ndarray  # int32 [n]: prompt + target + EOS
    n_prompt: int  # tokens[:n_prompt] carry no loss

    @property
    def row_length(self) -> int:
        return len(self.tokens) - 1


@dataclasses.dataclass(frozen=True)
class DataStats:
    rows: int
    examples: int
    truncated: int  # longer than max_length: cut from the right
    dropped: int  # no target token left after truncation: cannot train on them
    trained_tokens: int


def read_rows(path: str | Path) -> list[dict]:
    """A JSONL of {"prompt": str, "target": str, ...}; other fields are ignored."""
    from s3ft_jax.io import iter_jsonl

    path = Path(path)
    rows = []
    for lineno, row in iter_jsonl(path, missing="training data {path} not found (set --config.train.dataset)"):
        for key in ("prompt", "target"):
            if not isinstance(row.get(key), str):
                raise S3FTError(f"{path}:{lineno}: needs a string field {key!r}")
        rows.append(row)
    if not rows:
        raise S3FTError(f"training data {path} has no rows")
    return rows


def tokenize(rows: Sequence[dict], tokenizer, max_length: int) -> tuple[list[Example], DataStats]:
    """Render each prompt with the chat template, append target + EOS, truncate to max_length.

    Truncation cuts from the right (the end of the target goes first) and is counted; an
    example left with no target token is dropped, since it would train on nothing.
    """
    from s3ft_jax.sampling.chat import render_chat

    eos = tokenizer.eos_token_id
    if eos is None:
        raise S3FTError("the tokenizer has no EOS token: training needs one to end each target")
    try:
        prompts = [render_chat(tokenizer, [{"role": "user", "content": r["prompt"]}]) for r in rows]
    except ValueError as e:
        raise S3FTError(str(e)) from None
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer([r["target"] for r in rows], add_special_tokens=False)["input_ids"]
    examples, truncated, dropped, trained = [], 0, 0, 0
    for p, t in zip(prompt_ids, target_ids):
        tokens = [*p, *t, eos]
        if len(tokens) > max_length:
            truncated += 1
            tokens = tokens[:max_length]
        if len(tokens) <= len(p):
            dropped += 1
            continue
        examples.append(Example(np.asarray(tokens, np.int32), len(p)))
        trained += len(tokens) - len(p)
    if truncated:
        log.warning("%d of %d examples are longer than train.max_length=%d and were truncated", truncated, len(rows), max_length)
    if dropped:
        log.warning("%d examples have no target token within train.max_length and were dropped", dropped)
    if not examples:
        raise S3FTError(f"no example has a target token within train.max_length={max_length}")
    return examples, DataStats(len(rows), len(examples), truncated, dropped, trained)


def bucket(n: int, minimum: int = 16) -> int:
    """16, 24, 32, 48, 64, 96, ...: at most 1.5x padding, two compiled shapes per doubling."""
    size = minimum
    while size < n:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else (size // 3) * 4
    return size


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def pack(order: Sequence[int], lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Greedy packing in order: a row takes examples until the next one does not fit."""
    rows, current, used = [], [], 0
    for i in order:
        if current and used + lengths[i] > capacity:
            rows.append(current)
            current, used = [], 0
        current.append(int(i))
        used += lengths[i]
    if current:
        rows.append(current)
    return rows


def plan_steps(
    examples: Sequence[Example], *, seed: int, batch_size: int, num_epochs: int, max_steps: int, packing: bool, max_length: int
) -> list[tuple[int, list[list[int]]]]:
    """The run's batches: (epoch, rows), each row a list of example indices.

    An epoch's last batch may be short; its missing rows are fully masked padding. With
    max_steps > 0 the plan runs over as many epochs as it needs and stops there.
    """
    lengths = [e.row_length for e in examples]
    plan: list[tuple[int, list[list[int]]]] = []
    epoch = 0
    while (max_steps > 0 and len(plan) < max_steps) or (max_steps <= 0 and epoch < num_epochs):
        order = epoch_order(seed, epoch, len(examples))
        rows = pack(order, lengths, max_length) if packing else [[int(i)] for i in order]
        for start in range(0, len(rows), batch_size):
            plan.append((epoch, rows[start : start + batch_size]))
        epoch += 1
    return plan[:max_steps] if max_steps > 0 else plan


def make_batch(
    examples: Sequence[Example], rows: Sequence[Sequence[int]], *, num_rows: int, grad_accum: int, row_multiple: int, max_length: int
) -> dict[str, np.ndarray]:
    """Host arrays [grad_accum, rows per micro-batch, T] for one optimizer step.

    `num_rows` rows are split into `grad_accum` micro-batches; each micro-batch is padded with
    fully masked rows to a multiple of `row_multiple` (the devices holding the batch axis).
    T is the bucket of the longest row, at most max_length.

    Besides the full [.., T] labels and weights, the positions that carry loss are listed per
    batch shard (the rows one data-parallel device holds): `loss_index` [grad_accum,
    row_multiple, K] holds flat positions within the shard's rows, with their `loss_labels`
    and `loss_weights` (0 for the filler entries). The LM head then runs on those K positions
    only, not on prompt and padding tokens. K is a bucket too, so shapes stay few.
    """
    per_micro = num_rows // grad_accum
    per_micro_padded = -(-per_micro // row_multiple) * row_multiple
    longest = max((sum(examples[i].row_length for i in row) for row in rows), default=1)
    T = min(bucket(longest), max_length)
    shape = (grad_accum, per_micro_padded, T)
    out = {
        "input_ids": np.zeros(shape, np.int32),
        "labels": np.zeros(shape, np.int32),
        "weights": np.zeros(shape, np.float32),
        "segment_ids": np.zeros(shape, np.int32),
        "positions": np.zeros(shape, np.int32),
    }
    for r, row in enumerate(rows):
        a, b = divmod(r, per_micro)
        at = 0
        for seg, i in enumerate(row, 1):
            ex = examples[i]
            n = ex.row_length
            sl = (a, b, slice(at, at + n))
            out["input_ids"][sl] = ex.tokens[:-1]
            out["labels"][sl] = ex.tokens[1:]
            out["weights"][sl] = np.arange(1, n + 1) >= ex.n_prompt
            out["segment_ids"][sl] = seg
            out["positions"][sl] = np.arange(n)
            at += n
    _gather_targets(out, row_multiple)
    return out


def _gather_targets(out: dict[str, np.ndarray], shards: int) -> None:
    A, R, T = out["weights"].shape
    per_shard = out["weights"].reshape(A, shards, (R // shards) * T)
    positions = [[np.flatnonzero(per_shard[a, s]) for s in range(shards)] for a in range(A)]
    K = bucket(max(1, max(len(p) for row in positions for p in row)))
    labels = out["labels"].reshape(A, shards, -1)
    out["loss_index"] = np.zeros((A, shards, K), np.int32)
    out["loss_labels"] = np.zeros((A, shards, K), np.int32)
    out["loss_weights"] = np.zeros((A, shards, K), np.float32)
    for a in range(A):
        for s in range(shards):
            idx = positions[a][s]
            out["loss_index"][a, s, : len(idx)] = idx
            out["loss_labels"][a, s, : len(idx)] = labels[a, s, idx]
            out["loss_weights"][a, s, : len(idx)] = per_shard[a, s, idx]
