"""Where the benchmark files are read from: `eval.benchmark_source`.

- "data_dir" (the default): the data directory (data.data_dir, else $S3FT_DATA_DIR), as the
  tasks' relative files are.
- "hf": the same files, built from the hub by the converters `s3ft data fetch` uses
  (tasks/sources.py: SOURCES, fetch) into a cache, `$S3FT_HOME/hub_data/`, laid out as the data
  directory is. The readers of evaluation/benchmarks.py then read that directory: one reader
  and one converter, so a prompt from the hub is byte-identical to the one from a local copy
  of the same rows. For a TPU VM with a reachable hub and no data directory.

The cache is filled once: a file is fetched only when it is missing, or when the hub source
it was built from (its `.source` note: HubSource.describe(), revision included) is not the
one SOURCES names now. A fetch loads every dataset first and writes into a private staging
folder; only when all files are converted do they move into place (os.replace, atomic), so
an unreachable hub or a bad row leaves nothing half-written, and processes sharing the cache
(several hosts, one S3FT_HOME) never see a partial file.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from s3ft_jax.errors import ConfigError, S3FTError
from s3ft_jax.evaluation.benchmarks import benchmark_files
from s3ft_jax.io import atomic_write_text

log = logging.getLogger("s3ft_jax")

BENCHMARK_SOURCES = ("data_dir", "hf")
DEFAULT_SOURCE = "data_dir"


def check_source(value: str) -> None:
    if value not in BENCHMARK_SOURCES:
        raise ConfigError(f"eval.benchmark_source must be one of {', '.join(map(repr, BENCHMARK_SOURCES))}, got {value!r}")


def hub_sources(benchmarks: Sequence[str]) -> dict:
    """file -> the HubSource it is built from. A file with no hub source is one line, up front."""
    from s3ft_jax.tasks.sources import SOURCES

    out = {}
    for name in benchmarks:
        for file in benchmark_files(name):
            source = SOURCES.get(file)
            if source is None:
                raise S3FTError(f"benchmark {name} reads {file}, which has no hub source: "
                                "eval.benchmark_source=hf cannot build it (use eval.benchmark_source=data_dir)")
            out[file] = source
    return out


def cache_dir() -> Path:
    from s3ft_jax.paths import s3ft_home

    return s3ft_home() / "hub_data"


def _note(path: Path) -> Path:
    return path.with_name(path.name + ".source")


def is_cached(root: Path, file: str, source) -> bool:
    """`file` is in the cache, built from `source` (not from another revision or dataset)."""
    path = root / file
    try:
        return path.is_file() and _note(path).read_text(encoding="utf-8").strip() == source.describe()
    except OSError:
        return False


def ensure_cached(benchmarks: Sequence[str], root: Path | None = None) -> Path:
    """The cache directory, holding every file `benchmarks` read (fetched if missing)."""
    from s3ft_jax.tasks.sources import fetch

    root = Path(root) if root is not None else cache_dir()
    sources = hub_sources(benchmarks)
    # A benchmark's files are fetched together (piqa's questions and labels from one load).
    todo = list(dict.fromkeys(file for name in benchmarks if not all(is_cached(root, f, sources[f]) for f in benchmark_files(name))
                              for file in benchmark_files(name)))
    if not todo:
        return root
    # Beside the cache, not in it, and created only once every dataset has loaded: offline,
    # nothing at all is created.
    staging = root.with_name(f".{root.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    try:
        fetch(staging, todo, log=log.info)
        for file in todo:
            atomic_write_text(_note(staging / file), sources[file].describe() + "\n")
        for file in todo:
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / file, root / file)
            os.replace(_note(staging / file), _note(root / file))  # after the file: a note means it is whole
            log.info("benchmark file %s from %s", root / file, sources[file].describe())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def benchmark_data_dir(source: str, data_dir: str | None, benchmarks: Sequence[str]) -> Path:
    """The directory the benchmark readers read `benchmarks` from, under `source`."""
    check_source(source)
    if source == "hf":
        return ensure_cached(benchmarks)
    from s3ft_jax.tasks.data import resolve_data_dir

    return resolve_data_dir(data_dir)


def stage_identity(source: str, benchmarks: Sequence[str]) -> dict:
    """What a benchmark stage's fingerprint adds for `source`: nothing for the default (so the
    stages of existing runs stay done), the hub sources read otherwise (a hub copy may differ
    from a local one, and a pinned revision from the default branch)."""
    if source == DEFAULT_SOURCE or not benchmarks:
        return {}
    return {"benchmark_source": source, "benchmark_hub": sorted({s.describe() for s in hub_sources(benchmarks).values()})}


__all__ = ["BENCHMARK_SOURCES", "DEFAULT_SOURCE", "benchmark_data_dir", "cache_dir", "check_source",
           "ensure_cached", "hub_sources", "is_cached", "stage_identity"]
