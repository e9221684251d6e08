"""Which prompt decodes in which batch row, and when: the host-side plan of continuous batching.

Pure Python and NumPy; `SamplerEngine` asks it what to do and runs the device programs.

Order. Prompts start longest first (ties by index), in refill groups of `group` prompts, so
a group's prompts have similar lengths and pad to one small bucket, and the long prompts do
not all wait for the end.

Why refill. A fixed batch runs until its longest row ends: on GSM8K (answers of 80 to 256
tokens) a quarter of the row-steps went to rows that had already finished. Here decoding
hands control back as soon as a group's worth of rows has finished; the next group of
prompts is prefilled into those rows while the others keep their state.

Why compact. Once no prompt is left to start, finished rows would keep costing compute until
the last row ends. When at most half of the rows are live, they move into a batch half the
size (never below `min_compact` rows, and a multiple of the devices holding the batch).

Every size here is one compiled shape, so sizes are few: prompt widths are bucketed, the
batch only ever halves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


def bucket(n: int, minimum: int = 16) -> int:
    """Round up to 16, 32, 48, 64, 96, 128, 192, 256, 384, ... (powers of two and 1.5x them).

    At most 1.5x padding, and about two compiled shapes per doubling of prompt length.
    """
    size = minimum
    while size < n:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else (size // 3) * 4
    return size


def row_slots(max_prompt: int, max_new_tokens: int) -> int:
    """Cache slots after the prefix for prompts of up to `max_prompt` tokens (padded to their
    bucket) generating up to `max_new_tokens` (the last one is sampled, never written)."""
    return bucket(max_prompt) + -(-(max_new_tokens - 1) // 16) * 16


def batch_and_group(batch_size: int, multiple: int, group: int | None = None) -> tuple[int, int]:
    """The batch rounded up to a multiple of the devices holding it, and the refill group
    (default: an eighth of the batch, at least 4), a multiple too."""
    batch_size = -(-max(1, batch_size) // multiple) * multiple
    if group is None:
        group = max(4, batch_size // 8)
    return batch_size, min(batch_size, -(-max(1, group) // multiple) * multiple)


def compacted_size(rows: int, live: int, multiple: int, minimum: int) -> int | None:
    """The halved batch size to move `live` rows into, or None to keep the current batch."""
    size = rows
    while size // 2 >= max(live, minimum, multiple) and (size // 2) % multiple == 0:
        size //= 2
    return size if size < rows else None


def done_for_compaction(rows: int, multiple: int, minimum: int) -> int:
    """How many of `rows` must be done before the batch can be halved (all, if it cannot)."""
    half = rows // 2
    if half >= max(minimum, multiple) and half % multiple == 0:
        return rows - half
    return rows


@dataclasses.dataclass(frozen=True)
class Refill:
    """A group of prompts to prefill together."""

    prompts: list[int]  # prompt indices, longest first
    rows: np.ndarray  # the batch row each of them goes to
    width: int  # the group's prompt length: its longest prompt's, bucketed


class Scheduler:
    """The row of every prompt, from its start until its result is taken (`release`).

    `lengths` are the prompts' token counts (after any shared prefix). The batch holds
    `batch_size` rows (fewer prompts shrink it unless `fixed_batch`), rounded up to a multiple
    of `multiple`, the devices the batch is split over; so is the refill group.
    """

    def __init__(
        self, lengths: Sequence[int], *, batch_size: int, multiple: int = 1, group: int | None = None,
        min_compact: int = 4, fixed_batch: bool = False,
    ):  # fmt: skip
        self.lengths = list(lengths)
        if not fixed_batch:
            batch_size = min(batch_size, len(self.lengths))
        self.batch_size, self.group = batch_and_group(batch_size, multiple, group)
        self.multiple, self.min_compact = multiple, min_compact
        self.queue = sorted(range(len(self.lengths)), key=lambda i: (-self.lengths[i], i))
        self.rows = np.full((self.batch_size,), -1)  # batch row -> prompt index, -1 when free

    @property
    def occupied(self) -> np.ndarray:
        """[rows] whether the row holds a prompt (decoding, or finished and not yet released)."""
        return self.rows >= 0

    @property
    def busy(self) -> bool:
        return bool(self.occupied.any())

    def next_refill(self) -> Refill | None:
        """The next group of prompts and the free rows they take, or None when the queue is
        empty or fewer rows are free than the group needs (the last group may be smaller)."""
        free = np.flatnonzero(self.rows < 0)
        if not self.queue or len(free) < min(self.group, len(self.queue)):
            return None
        members, self.queue = self.queue[: self.group], self.queue[self.group :]
        rows = free[: len(members)]
        self.rows[rows] = members
        return Refill(members, rows, bucket(max(self.lengths[i] for i in members)))

    def done_target(self) -> int:
        """How many rows must be done (free rows count) before decoding hands control back:
        enough for the next group, or, with the queue empty, enough to halve the batch."""
        if self.queue:
            return min(self.group, len(self.queue))
        return done_for_compaction(len(self.rows), self.multiple, self.min_compact)

    def release(self, rows: np.ndarray) -> list[int]:
        """The prompts in the finished `rows`, whose rows become free."""
        prompts = [int(i) for i in self.rows[rows]]
        if min(prompts, default=0) < 0:
            raise ValueError(f"rows {rows[self.rows[rows] < 0].tolist()} hold no prompt")
        self.rows[rows] = -1
        return prompts

    def compaction(self) -> np.ndarray | None:
        """With no prompt left to start and few rows live: the rows to keep (live rows first,
        in order, then free ones) in a batch of half the size or less; None to keep the batch.
        The rows are renumbered by their position in it."""
        if self.queue:
            return None
        smaller = compacted_size(len(self.rows), int(self.occupied.sum()), self.multiple, self.min_compact)
        if smaller is None:
            return None
        keep = np.concatenate([np.flatnonzero(self.rows >= 0), np.flatnonzero(self.rows < 0)])[:smaller]
        self.rows = self.rows[keep]
        return keep
