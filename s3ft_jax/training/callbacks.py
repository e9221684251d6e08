"""What the training loop tells its observers: a named record per step, and each step's end.

    class PrintLoss(Callback):
        def on_record(self, record):
            print(record.step, record.loss)

    train(settings, lora, workdir, callbacks=[PrintLoss()])

Records reach callbacks when the loop reads the metrics back from the device (every
`log_every` steps, and at each checkpoint), in step order, right after metrics.jsonl got them.
`close` runs once when the loop ends,
however it ends. `after_step` runs once per step, after that step's records (if read) and its checkpoint (if
due) were issued; checkpoints may still be saving in the background (`checkpointer.wait()`
waits for them).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3ft_jax.training.checkpoint import Checkpointer


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """One optimizer step, as metrics.jsonl holds it (one JSON object per step, these keys)."""

    step: int  # 1-based: the number of optimizer steps done
    epoch: int  # 0-based epoch of the step's batch
    loss: float  # mean cross-entropy per trained token
    learning_rate: float  # the rate this step used
    grad_norm: float  # global norm before clipping
    trained_tokens: int  # tokens that carried loss
    tokens: int  # real (non-padding) tokens in the batch
    tokens_per_s: float  # real tokens per second over the steps read back together

    def as_json(self) -> dict:
        return dataclasses.asdict(self)


class Callback:
    """Hooks into `train`'s loop; override the ones you need (each default does nothing)."""

    def on_record(self, record: StepRecord) -> None:
        pass

    def after_step(self, step: int, checkpointer: Checkpointer) -> None:
        pass

    def close(self) -> None:
        """The loop ended (finished, or stopped by an error): flush, finish."""
