"""The sampler's row scheduler on its own: no model, no JAX. A fake decode loop finishes rows
as a test says, and the scheduler must place, refill and compact the way generation needs."""

import numpy as np
import pytest

from s3ft_jax.sampling.scheduler import Scheduler, batch_and_group, bucket, compacted_size, done_for_compaction, row_slots

pytestmark = pytest.mark.fast


def run(schedule: Scheduler, steps_of, live_of=None) -> dict:
    """Drive `schedule` as the engine does, with prompt i taking `steps_of[i]` decode steps.
    Returns the order prompts started and finished, the batch sizes used and every refill."""
    started, finished, sizes, refills = [], [], [], []
    left = {}  # row -> steps the prompt in it still needs
    while True:
        while (joining := schedule.next_refill()) is not None:
            refills.append(joining)
            assert len(set(joining.rows)) == len(joining.rows) and len(joining.prompts) <= schedule.group
            for prompt, row in zip(joining.prompts, joining.rows):
                assert row not in left, "a refill took a row that holds a prompt"
                left[int(row)] = steps_of[prompt]
                started.append(prompt)
        if not schedule.busy:
            break
        sizes.append(len(schedule.rows))
        target = schedule.done_target()
        # Decode: one step at a time until `target` rows are done (free rows count as done).
        while True:
            done = [row for row in range(len(schedule.rows)) if row not in left or left[row] == 0]
            if len(done) >= target or not any(v > 0 for v in left.values()):
                break
            left = {row: max(0, v - 1) for row, v in left.items()}
        rows = np.asarray(sorted(row for row, v in left.items() if v == 0), dtype=np.int64)
        if len(rows):
            finished += schedule.release(rows)
            for row in rows:
                del left[int(row)]
        keep = schedule.compaction()
        if keep is not None:
            assert len(keep) < sizes[-1]
            left = {new: left[int(old)] for new, old in enumerate(keep) if int(old) in left}
    return {"started": started, "finished": finished, "sizes": sizes, "refills": refills}


def test_every_prompt_runs_exactly_once_longest_first():
    lengths = [5, 40, 12, 40, 3, 77, 12, 1, 30, 9, 50]
    steps = [7, 3, 9, 1, 4, 6, 2, 8, 5, 3, 1]
    out = run(Scheduler(lengths, batch_size=4, group=2), steps)
    assert sorted(out["started"]) == sorted(out["finished"]) == list(range(len(lengths)))
    # Longest first, ties by index (1 and 3 both have 40 tokens; 2 and 6 have 12).
    assert out["started"] == [5, 10, 1, 3, 8, 2, 6, 9, 0, 4, 7]


def test_refill_waits_for_a_whole_group_of_free_rows():
    schedule = Scheduler([10] * 10, batch_size=4, group=2)
    first, second = schedule.next_refill(), schedule.next_refill()
    assert (first.prompts, first.rows.tolist(), second.prompts, second.rows.tolist()) == ([0, 1], [0, 1], [2, 3], [2, 3])
    assert schedule.next_refill() is None  # the batch is full
    assert schedule.done_target() == 2  # decode until a group's worth of rows is free
    assert schedule.release(np.array([3])) == [3]
    assert schedule.next_refill() is None  # one free row, and the group needs two
    assert schedule.release(np.array([0])) == [0]
    joining = schedule.next_refill()
    assert (joining.prompts, joining.rows.tolist()) == ([4, 5], [0, 3])  # the free rows, in order


def test_the_last_group_may_be_smaller_and_the_targets_follow_the_queue():
    schedule = Scheduler([10] * 5, batch_size=4, group=2)
    schedule.next_refill(), schedule.next_refill()
    schedule.release(np.array([1]))
    assert schedule.done_target() == 1  # one prompt waits: one free row is enough
    last = schedule.next_refill()
    assert (last.prompts, last.rows.tolist()) == ([4], [1])
    assert schedule.next_refill() is None and not schedule.queue
    # Queue empty: decode until half of the rows are done, so the batch can be halved; all of
    # them when halving would go below min_compact.
    assert schedule.done_target() == 4  # min_compact 4: a batch of 4 is never halved
    small = Scheduler([10] * 4, batch_size=4, group=2, min_compact=2)
    small.next_refill(), small.next_refill()
    assert small.done_target() == 2


def test_group_larger_than_the_queue_takes_what_is_left():
    schedule = Scheduler([3, 9, 6], batch_size=8, group=8, fixed_batch=True)
    assert (schedule.batch_size, schedule.group) == (8, 8)
    joining = schedule.next_refill()
    assert (joining.prompts, joining.rows.tolist()) == ([1, 2, 0], [0, 1, 2])
    assert joining.width == bucket(9)
    assert schedule.next_refill() is None
    out = run(Scheduler([3, 9, 6], batch_size=8, group=8), [2, 5, 1])
    assert sorted(out["finished"]) == [0, 1, 2]


def test_fewer_prompts_shrink_the_batch_unless_it_is_fixed():
    assert Scheduler([4] * 3, batch_size=32).batch_size == 3
    assert Scheduler([4] * 3, batch_size=32, fixed_batch=True).batch_size == 32
    # Rounded up to the devices holding the batch; the default group is an eighth, at least 4.
    assert (Scheduler([4] * 3, batch_size=32, multiple=8).batch_size) == 8
    assert batch_and_group(32, 1) == (32, 4)
    assert batch_and_group(128, 1) == (128, 16)
    assert batch_and_group(10, 4, group=3) == (12, 4)
    assert batch_and_group(2, 1, group=5) == (2, 2)


def test_compaction_halves_the_batch_when_few_rows_are_live():
    # 16 prompts in 16 rows, no queue: rows finish one by one; the batch halves once at most
    # half of it is live, down to min_compact, and live rows keep their prompts.
    steps = list(range(1, 17))
    out = run(Scheduler([8] * 16, batch_size=16, min_compact=2), steps)
    assert out["sizes"][0] == 16 and out["sizes"][-1] == 2
    assert all(b <= a for a, b in zip(out["sizes"], out["sizes"][1:]))
    assert set(out["sizes"]) == {16, 8, 4, 2}
    assert out["finished"] == list(range(16))  # the shortest runs finish first, nothing lost
    # min_compact as large as the batch: never compacted.
    assert set(run(Scheduler([8] * 16, batch_size=16, min_compact=16), steps)["sizes"]) == {16}


def test_compaction_waits_for_the_queue_and_keeps_live_rows_first():
    schedule = Scheduler([8] * 9, batch_size=8, group=8, min_compact=2)
    schedule.next_refill()
    schedule.release(np.arange(1, 8))
    assert schedule.compaction() is None  # prompt 8 still waits for rows
    schedule.next_refill()  # (a group of one, as the queue holds one)
    schedule.release(np.array([0]))
    keep = schedule.compaction()
    assert keep is not None and len(keep) == 2 and keep[0] == 1  # prompt 8's row first
    assert schedule.rows.tolist() == [8, -1]


def test_compaction_respects_the_device_multiple():
    assert compacted_size(16, 3, multiple=1, minimum=4) == 4
    assert compacted_size(16, 3, multiple=8, minimum=4) == 8
    assert compacted_size(16, 9, multiple=1, minimum=4) is None
    assert compacted_size(12, 1, multiple=4, minimum=1) is None  # 6 is not a multiple of 4
    assert done_for_compaction(16, multiple=1, minimum=4) == 8
    assert done_for_compaction(16, multiple=16, minimum=4) == 16  # 8 rows would not split
    assert done_for_compaction(4, multiple=1, minimum=4) == 4


def test_release_of_a_free_row_is_a_bug():
    schedule = Scheduler([4, 4], batch_size=2)
    schedule.next_refill()
    schedule.release(np.array([0]))
    with pytest.raises(ValueError, match="hold no prompt"):
        schedule.release(np.array([0]))


def test_sizes():
    assert [bucket(n) for n in (1, 16, 17, 24, 25, 100)] == [16, 16, 24, 24, 32, 128]
    assert row_slots(30, 1) == 32 and row_slots(30, 17) == 32 + 16 and row_slots(30, 18) == 32 + 32
