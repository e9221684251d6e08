"""Stages that survive crashes: fingerprinted, incremental, atomic.

Each stage owns the files `<dir>/<name>.*`. Its meta file `<name>.meta.json` records a
fingerprint of everything the stage's output depends on (config values, model identity, data,
upstream stages). On a rerun:
- same fingerprint, marked complete: skipped;
- same fingerprint, not complete (a crash): resumed; row files are append-only with an fsync
  per batch, so at most the batch in flight is redone;
- different fingerprint: the old files move to `<dir>/stale/<name>-<time>/` (never deleted)
  and the stage starts over.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import jax

from s3ft_jax import distributed, io
from s3ft_jax.errors import S3FTError
from s3ft_jax.io import json_digest
from s3ft_jax.progress import progress_bar
from s3ft_jax.sampling.queue import read_done, rewrite_in_order

log = logging.getLogger(__name__)


def atomic_write_text(path: Path, text: str) -> None:
    """Process 0 writes (io.atomic_write_text); every process calls this and returns once the
    file is in place, so the next stage decision reads the same file everywhere."""
    io.atomic_write_text(path, text)
    distributed.sync(f"wrote {path.name}")


def atomic_write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    io.atomic_write_jsonl(path, rows)
    distributed.sync(f"wrote {path.name}")


@dataclasses.dataclass
class Stage:
    directory: Path
    name: str
    inputs: dict  # what the output depends on; hashed into the fingerprint

    @property
    def fingerprint(self) -> str:
        return json_digest(self.inputs)

    @property
    def meta_path(self) -> Path:
        return self.directory / f"{self.name}.meta.json"

    def path(self, suffix: str) -> Path:
        return self.directory / f"{self.name}.{suffix}"

    def _meta(self) -> dict | None:
        try:
            return json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError):
            return {}  # unreadable meta: treat as stale

    def open(self) -> str:
        """'done', 'resume' or 'fresh'; stale outputs are moved aside first."""
        meta = self._meta()
        owned = [p for p in self.directory.glob(f"{self.name}.*") if p.is_file()]
        distributed.sync(f"open stage {self.name}")  # all have read the state before process 0 changes it
        if meta is not None and meta.get("fingerprint") == self.fingerprint:
            return "done" if meta.get("complete") else "resume"
        if owned:
            self._move_aside(owned, "inputs changed" if meta else "no meta file")
        self._write_meta(complete=False)
        return "fresh"

    def complete(self, **summary) -> None:
        self._write_meta(complete=True, summary=summary)

    def _write_meta(self, complete: bool, summary: dict | None = None) -> None:
        meta = {"stage": self.name, "fingerprint": self.fingerprint, "complete": complete,
                "inputs": self.inputs, "summary": summary or {}, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_text(self.meta_path, json.dumps(meta, indent=1, default=str) + "\n")

    def _move_aside(self, files: Sequence[Path], why: str) -> None:
        if jax.process_index() != 0:
            return
        target = self.directory / "stale" / f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        target.mkdir(parents=True, exist_ok=True)
        for p in files:
            os.replace(p, target / p.name)
        log.warning("stage %s: %s; previous files moved to %s", self.name, why, target)


def resumable_map(
    output: Path,
    ids: Sequence[str],
    work: Callable[[list[int]], list[dict]],
    *,
    batch_size: int,
    desc: str,
    progress: bool = True,
    keep_extra: bool = False,
) -> list[dict]:
    """Rows for every id, computing only the ids missing from `output`.

    `work(indices)` returns one row (with its "id") per index. Rows are appended and fsynced
    per batch; at the end the file is rewritten in `ids` order (rows of other ids, kept with
    `keep_extra`, after them) and the rows of `ids` are returned.
    """
    done = read_done(output)
    wanted = {json.dumps(i) for i in ids}
    extra = [k for k in done if k not in wanted]
    if extra and not keep_extra:
        raise S3FTError(f"{output} holds rows for ids this stage does not have (e.g. {extra[0]}); move it away to start over")
    todo = [n for n, i in enumerate(ids) if json.dumps(i) not in done]
    writer = jax.process_index() == 0
    distributed.sync(f"read {output.name}")  # all have read it before process 0 appends
    if todo:
        bar = progress_bar(len(ids), initial=len(ids) - len(todo), desc=desc, unit="ex", enabled=progress)
        if writer:
            output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "a", encoding="utf-8") if writer else open(os.devnull, "w") as f:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                rows = work(chunk)
                for row in rows:
                    done[json.dumps(row["id"])] = row
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                f.flush()
                if writer:
                    os.fsync(f.fileno())
                bar.update(len(chunk))
        bar.close()
    rows = [done[json.dumps(i)] for i in ids]
    if writer and (todo or extra or not output.exists()):
        rewrite_in_order(output, rows + [done[k] for k in extra])
    distributed.sync(f"wrote {output.name}")
    return rows
