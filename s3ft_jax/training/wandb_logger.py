"""train.report_to=wandb: each step's metrics to Weights & Biases (the optional `wandb` extra).

wandb is imported only when asked for; without it, `import_wandb` says how to install it in one
line, and `s3ft train`/`run` check that before any model loads. The W&B run's id is the
training run's fingerprint, so a resumed run (same data and settings) continues the same W&B
run. wandb's own environment settings apply: WANDB_PROJECT (default "s3ft-jax"), WANDB_MODE
(offline: logged under <workdir>/train/wandb, `wandb sync` later), WANDB_ENTITY.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import jax

from s3ft_jax.errors import S3FTError
from s3ft_jax.training.callbacks import Callback, StepRecord

INSTALL_HINT = ("train.report_to=wandb needs the wandb package: pip install 's3ft-jax[wandb]' "
                "(or leave wandb out of train.report_to)")


def import_wandb():
    try:
        import wandb
    except ImportError:
        raise S3FTError(INSTALL_HINT) from None
    return wandb


class WandbLogger(Callback):
    """Every StepRecord as one `log` at its step, the numbers under "train/" (as in TensorBoard).
    Only process 0 logs."""

    def __init__(self, run_dir: str | Path, *, run_id: str, config: dict):
        self.run = None
        if jax.process_index() != 0:
            return
        wandb = import_wandb()
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "s3ft-jax"), id=run_id[:32], resume="allow",
                              name=run_dir.parent.name or None, dir=str(run_dir), config=config)

    def on_record(self, record: StepRecord) -> None:
        if self.run is None:
            return
        values = {f"train/{k}": v for k, v in record.as_json().items()
                  if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}
        self.run.log(values, step=record.step)

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
