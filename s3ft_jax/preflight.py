"""Checks a command makes before any real work: what would otherwise fail after hours does so
in the first second, as one line.

`check(command, config)` raises an `S3FTError` when
- the task is unknown, or a data file of a split the command will read is missing or malformed
  (the examples are read here; they are small): a row lacks a field the task reads, or repeats
  an id;
- `run`'s test split shares rows with its training split (unless `task.allow_overlap`);
- a benchmark in `eval.benchmarks` is unknown or one of its data files is missing (`run`);
- an input file the command reads is missing (`train`, `generate`, `logprobs`), or a row of
  `generate`'s prompt file has no id, repeats one or has no prompt;
- a local model path does not hold a checkpoint;
- a directory the command writes to cannot be written.
It writes nothing: on several hosts only process 0 may write, and a check must not either.
"""

from __future__ import annotations

import os
from pathlib import Path

from s3ft_jax.errors import ConfigError, S3FTError

# The splits of the task each command reads (by config key).
_TASK_SPLITS = {
    "run": ("task.train_split", "task.test_split"),
    "build": ("task.train_split",),
    "judge-audit": ("task.train_split",),
    "answer": ("task.split",),
}


def check(command: str, config) -> None:
    for path in _written_dirs(command, config):
        check_writable(path)
    splits = _TASK_SPLITS.get(command, ())
    if splits:
        _check_task(config, [config[key.split(".")[0]][key.split(".")[1]] for key in splits], disjoint=command == "run")
    if command == "run" and config.eval.benchmarks:
        check_benchmarks(config)
    for path, what in _read_files(command, config):
        if not Path(path).is_file():
            raise S3FTError(f"{what} {path} not found")
    if command == "generate":
        from s3ft_jax.sampling.prompts import prompt_rows

        prompt_rows(config.generate.input)
    if command not in ("report", "config", "plan"):  # plan reads shapes only (a preset or config.json)
        check_model_name(config.model.name)


def _written_dirs(command: str, config) -> list[Path]:
    workdir = Path(config.workdir)
    return {
        "run": [workdir],
        "report": [workdir],
        "build": [workdir, Path(config.build.output or workdir)],
        "judge-audit": [workdir],
        "train": [workdir],
        "generate": [Path(config.generate.output).parent if config.generate.output else workdir],
        "logprobs": [Path(config.logprobs.output or workdir)],
        "export": [Path(config.export.output).parent if config.export.output else workdir],
    }.get(command, [])


def _read_files(command: str, config) -> list[tuple[str, str]]:
    workdir = Path(config.workdir)
    if command == "train":
        return [(config.train.dataset or workdir / "dataset.jsonl", "training data")]
    if command == "generate":
        if not config.generate.input:
            raise ConfigError("set --config.generate.input to a JSONL of prompts")
        return [(config.generate.input, "prompt file")]
    if command == "logprobs":
        return [(config.logprobs.dataset or workdir / "dataset.jsonl", "built dataset (run `s3ft build` first)")]
    return []


def check_writable(path: Path) -> None:
    """`path` is a directory this process could create or write into (nothing is written)."""
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise S3FTError(f"cannot write to {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise S3FTError(f"cannot write to {path}: {existing} is not writable")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise S3FTError(f"cannot write to {path}: {existing} is on a read-only filesystem")


def _check_task(config, splits: list[str], disjoint: bool) -> None:
    """`disjoint`: the first split is training data, the second is evaluated (`run`)."""
    from s3ft_jax.config import task_settings
    from s3ft_jax.tasks import check_disjoint, get_task, load_examples

    settings = task_settings(config)
    task = get_task(settings)
    examples = {}
    for split in dict.fromkeys(splits):
        if split not in task.splits:
            raise ConfigError(f"{task.name} has no split {split!r}: choose from {', '.join(task.splits)}")
        examples[split] = load_examples(settings, task, split)
        if not examples[split]:
            raise S3FTError(f"task {task.name} split {split!r} has no examples")
    if disjoint:
        check_disjoint(settings, task, examples[splits[0]], examples[splits[1]])


def check_benchmarks(config) -> None:
    from s3ft_jax.evaluation.benchmarks import TASKS, missing_files
    from s3ft_jax.tasks.data import resolve_data_dir

    unknown = [b for b in config.eval.benchmarks if b not in TASKS]
    if unknown:
        raise ConfigError(f"unknown benchmark {unknown[0]!r} in eval.benchmarks: choose from {', '.join(TASKS)}")
    missing = missing_files(resolve_data_dir(config.data.data_dir), config.eval.benchmarks)
    if missing:
        raise S3FTError(f"missing benchmark data file {missing[0]} (eval.benchmarks reads it)")


def check_model_name(name: str) -> None:
    """A name that is a local path must be a checkpoint directory. Embedded names and hub ids
    are resolved (built or downloaded) by the loader itself."""
    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1
    if not looks_local:
        return  # a hub id
    from s3ft_jax.models.embedded import is_embedded

    if is_embedded(name):
        return
    if not path.is_dir():
        raise S3FTError(f"no model directory at {name!r} (and it is not an embedded model name or a hub id)")
    if not (path / "config.json").is_file():
        raise S3FTError(f"model directory {path} has no config.json")
