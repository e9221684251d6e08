"""Per-step metrics to a JSONL file and TensorBoard event files, plus a progress bar.

Only process 0 writes. On resume the JSONL is cut back to the restored step, so after any
number of restarts it holds exactly one record per step, as an uninterrupted run's does.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import jax

from s3ft_jax.io import read_jsonl

log = logging.getLogger("s3ft_jax")


class MetricsWriter:
    def __init__(self, run_dir: Path, *, total_steps: int, start_step: int, progress: bool = True, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        self._bar = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_after(self.path, start_step)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:  # train.report_to names it
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step + 1 if start_step else None)
            except ImportError:
                log.warning("tensorboardX is not installed: metrics go to %s only", self.path)
        if progress:
            from s3ft_jax.progress import progress_bar

            self._bar = progress_bar(total_steps, initial=start_step, desc="train", unit="step")

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        step = record["step"]
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"train/{key}", value, step)
        if self._bar is not None:
            # The figures first: a log line is written by the update.
            self._bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record['learning_rate']:.2e}", refresh=False)
            self._bar.update(step - self._bar.n)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._bar is not None:
            self._bar.close()


def _truncate_after(path: Path, step: int) -> None:
    """Drop records of steps beyond `step` (written by a run killed after its last checkpoint)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by the kill
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(path: str | Path) -> list[dict]:
    return read_jsonl(path, missing="no training metrics at {path}")
