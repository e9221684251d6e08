"""`s3ft data check` and `s3ft data fetch`: the data files a configuration reads.

A configuration reads its task's files for task.train_split and task.test_split (tasks/*.py:
`Task.files`) and, for `run`, the files of every benchmark in eval.benchmarks
(evaluation/benchmarks.py: `benchmark_files`). A relative file lives in the data directory
(data.data_dir, else $S3FT_DATA_DIR); an absolute one where it says; an hf:/tfds: source is
read from the hub or TFDS and needs no file; so is a benchmark's file with
eval.benchmark_source=hf (built from the hub into $S3FT_HOME/hub_data/ on first use:
evaluation/benchmark_source.py). `check` lists each, one line, and exits 2 when one is missing;
`fetch` writes the missing relative ones into the data directory from the hub (tasks/sources.py).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from s3ft_jax.errors import S3FTError


@dataclasses.dataclass(frozen=True)
class Need:
    file: str  # as the task or benchmark names it: relative, absolute, hf:/tfds:
    why: str  # "gsm8k train", "benchmark mmlu"
    hub: str = ""  # eval.benchmark_source=hf: the HubSource.describe() the file is built from

    @property
    def remote(self) -> bool:
        return self.file.startswith(("hf:", "tfds:")) or bool(self.hub)

    @property
    def relative(self) -> bool:
        return not self.remote and not Path(self.file).is_absolute()


def needed(config) -> list[Need]:
    """Every file the configuration reads (task splits, then eval.benchmarks), once each."""
    from s3ft_jax.config import eval_settings, task_settings
    from s3ft_jax.errors import ConfigError
    from s3ft_jax.evaluation.benchmarks import TASKS, benchmark_files
    from s3ft_jax.tasks import get_task

    settings = task_settings(config)
    task = get_task(settings)
    whys: dict[str, list[str]] = {}
    for split in dict.fromkeys((settings.train_split, settings.test_split)):
        if split not in task.splits:
            raise ConfigError(f"{task.name} has no split {split!r}: choose from {', '.join(task.splits)}")
        for file in task.files.get(split, ()):
            whys.setdefault(file, []).append(f"{task.name} {split}")
    task_files = set(whys)
    for benchmark in config.eval.benchmarks:
        if benchmark not in TASKS:
            raise ConfigError(f"unknown benchmark {benchmark!r} in eval.benchmarks: choose from {', '.join(TASKS)}")
        for file in benchmark_files(benchmark):
            whys.setdefault(file, []).append(f"benchmark {benchmark}")
    hub = {}
    # Read through the settings: a config file saved by an older run has no such key (the default).
    if eval_settings(config).benchmark_source == "hf":  # benchmark files built from the hub, not the directory
        from s3ft_jax.evaluation.benchmark_source import hub_sources

        hub = {file: source.describe() for file, source in hub_sources(config.eval.benchmarks).items()}
    # A file the task reads too (none today) still needs the directory: only benchmarks read the cache.
    return [Need(file, ", ".join(dict.fromkeys(why)), "" if file in task_files else hub.get(file, ""))
            for file, why in whys.items()]


def _data_dir(config) -> Path | None:
    from s3ft_jax.paths import data_dir

    return data_dir(config.data.data_dir or None)


def status(config) -> list[tuple[Need, Path | None, bool]]:
    """(need, where it is looked for (None: hub/TFDS or no data directory), present)."""
    root = _data_dir(config)
    rows = []
    for need in needed(config):
        if need.remote:
            rows.append((need, None, True))
        elif need.relative:
            path = root / need.file if root is not None else None
            rows.append((need, path, path is not None and path.is_file()))
        else:
            rows.append((need, Path(need.file), Path(need.file).is_file()))
    return rows


def check(config) -> int:
    root = _data_dir(config)
    rows = status(config)
    print(f"data directory: {root if root is not None else '(none: set S3FT_DATA_DIR or --config.data.data_dir)'}")
    for need, path, present in rows:
        if need.remote:
            print(f"hub      {need.file}  ({need.why}; {_hub_note(need)})")
        else:
            print(f"{'present' if present else 'MISSING':8} {path if path is not None else need.file}  ({need.why})")
    missing = [need for need, _, present in rows if not present]
    if missing:
        from s3ft_jax.tasks.sources import SOURCES

        fetchable = [n for n in missing if n.relative and SOURCES.get(n.file) is not None]
        hint = f": `s3ft data fetch` with the same config writes {len(fetchable)} of them from the hub" if fetchable else ""
        print(f"{len(missing)} of {len(rows)} missing{hint}", file=sys.stderr)
        return 2
    remote = sum(need.remote for need, _, _ in rows)
    hub = f" ({remote} read from the hub)" if remote else ""
    print(f"all {len(rows)} present{hub}" if rows else "no data files: the task generates its examples and no benchmark is set")
    return 0


def _hub_note(need: Need) -> str:
    if not need.hub:
        return "read from the hub, no file needed"
    from s3ft_jax.evaluation.benchmark_source import cache_dir, is_cached
    from s3ft_jax.tasks.sources import SOURCES

    where = "cached" if is_cached(cache_dir(), need.file, SOURCES[need.file]) else "fetched on first use"
    return f"read from the hub: {need.hub}, {where} in {cache_dir()}"


def fetch(config) -> int:
    """Write the missing relative files into the data directory (created if need be)."""
    from s3ft_jax.tasks.sources import fetch as fetch_files

    root = _data_dir(config)
    if root is None:
        raise S3FTError("no data directory to fetch into: set S3FT_DATA_DIR or --config.data.data_dir")
    rows = status(config)
    absolute = [need.file for need, _, present in rows if not present and not need.relative]
    if absolute:
        raise S3FTError(f"{absolute[0]} is missing and is not a data-directory file: nothing to fetch it into")
    todo = [need.file for need, _, present in rows if not present]
    if not todo:
        print(f"all {len(rows)} files present in {root}: nothing to fetch")
        return 0
    # preflight has checked that `root` can be written (`_written_dirs`)
    for path in fetch_files(root, todo, log=lambda line: print(line, file=sys.stderr)):
        print(f"wrote {path}")
    return 0
