"""Checks a command makes before any real work: what would otherwise fail after hours does so
in the first second, as one line.

`check(command, config)` raises an `S3FTError` when
- the task is unknown, or a data file of a split the command will read is missing or malformed
  (the examples are read here; they are small): a row lacks a field the task reads, or repeats
  an id;
- `run`'s test split shares rows with its training split (unless `task.allow_overlap`);
- a benchmark in `eval.benchmarks` is unknown or one of its data files is missing (`run`); with
  eval.benchmark_source=hf, a file has no hub source or the hub cache cannot be written;
- an input file the command reads is missing (`train`, `generate`, `logprobs`), or a row of
  `generate`'s prompt file has no id, repeats one or has no prompt;
- a local model path does not hold a checkpoint;
- a directory the command writes to cannot be written, or a path is a URL (gs://);
- `report`'s workdir holds no run; judge.model is missing; the code sandbox does not work;
  the mesh does not split the devices; max_new_tokens plus the longest prompt overflows the
  model's context.
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
    if command not in ("config", "plan"):
        check_local_paths(config)  # before any path is looked at
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
    if command not in ("report", "config", "plan", "data check", "data fetch"):  # plan reads shapes only (a preset or config.json)
        check_model_name(config.model.name)
    check_model_setup(command, config)


def check_model_setup(command: str, config) -> None:
    """What would fail once the model is loaded or the work begins (see the section below)."""
    if command == "report":
        check_report_workdir(config)
    check_judge(command, config)
    check_mesh(command, config)
    check_context(command, config)
    check_chat_template(command, config)
    check_reporting(command, config)


def _written_dirs(command: str, config) -> list[Path]:
    workdir = Path(config.workdir)
    if command == "data fetch":
        from s3ft_jax.paths import data_dir

        return [p for p in [data_dir(config.data.data_dir or None)] if p is not None]
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
    from s3ft_jax.config import eval_settings

    # Read through the settings: a config file saved by an older run has no such key (the default).
    if eval_settings(config).benchmark_source == "hf":  # built from the hub into a cache on first use
        from s3ft_jax.evaluation.benchmark_source import cache_dir, hub_sources

        hub_sources(config.eval.benchmarks)  # a file with no hub source: said now
        check_writable(cache_dir())
        return
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


# -- the rest of what is knowable before a model loads (issue 30) ------------------------------
# Each check below is one function that `check` calls; they read small files only (a model's
# config.json and tokenizer.json, the task's examples) and write nothing.

# Commands that load the model (so read model.*, mesh.* and, with a task, sampling.*).
_MODEL_COMMANDS = ("run", "build", "answer", "generate", "logprobs", "train", "export")
# Every path key a command writes to or reads from the local filesystem.
_PATH_KEYS = ("workdir", "build.output", "generate.output", "generate.input", "logprobs.output",
              "logprobs.dataset", "export.output", "train.dataset")


def _value(config, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def check_local_paths(config) -> None:
    """Only local (or mounted) paths: every stage writes with plain file I/O, so `gs://b/run`
    would become the local folder ./gs:/b/run. Refused before anything is created."""
    import re

    for key in _PATH_KEYS:
        value = str(_value(config, key) or "")
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", value)
        if scheme:
            raise ConfigError(
                f"{key}={value!r}: {scheme.group(1)}:// paths are not supported; use a local path or a mounted "
                f"bucket (e.g. gcsfuse BUCKET /mnt/BUCKET, then --config.{key}=/mnt/BUCKET/...)")


def check_report_workdir(config) -> None:
    """`s3ft report` on a workdir without any run's files: a misspelt path, not an empty report."""
    from s3ft_jax.settings import METHODS

    workdir = Path(config.workdir)
    if not workdir.is_dir():
        raise S3FTError(f"no run directory {workdir} (workdir): nothing to report")
    names = ("build", "timings.json", *METHODS)
    if not any((workdir / name).exists() for name in names):
        raise S3FTError(f"{workdir} (workdir) holds no run files ({', '.join(names)}): nothing to report")


def check_judge(command: str, config) -> None:
    """judge.model must be loadable, and a code-judged task needs a working sandbox: both
    are found out here rather than after the predictions they would judge."""
    if command not in ("run", "build", "answer"):
        return
    from s3ft_jax.config import task_settings
    from s3ft_jax.tasks import get_task

    if config.judge.model and command != "answer":  # `answer` judges with heuristics only
        try:
            check_model_name(config.judge.model)
        except S3FTError as e:
            raise S3FTError(f"judge.model: {e}") from None
    if get_task(task_settings(config)).judge == "code":
        from s3ft_jax.judges.code import check_sandbox

        check_sandbox()


def check_mesh(command: str, config) -> None:
    """mesh.* must split this machine's devices. The default (one axis -1, the others 1) fits
    any count, so JAX is started only for a mesh that may not."""
    if command not in _MODEL_COMMANDS:
        return
    sizes = [config.mesh.data, config.mesh.fsdp, config.mesh.tensor]
    if sizes.count(-1) == 1 and all(s in (1, -1) for s in sizes):
        return
    import jax

    from s3ft_jax.sharding import mesh_sizes

    mesh_sizes(dict(zip(("data", "fsdp", "tensor"), sizes)), jax.device_count())


def check_context(command: str, config) -> None:
    """sampling.max_new_tokens (or the task's default) plus the longest prompt must fit the
    model's context (max_position_embeddings in its config.json). The prompt is counted with
    the model's tokenizer.json when it is on disk, else by its words (each at least one token
    in a subword vocabulary): a lower bound, so the check never refuses what would fit."""
    if command not in ("run", "build", "answer", "generate"):
        return
    from s3ft_jax.models.metadata import checkpoint_info

    info = checkpoint_info(str(config.model.name))
    if info.context is None:
        return
    prompts = _longest_prompts(command, config)
    max_new = _max_new_tokens(command, config)
    if max_new >= info.context:
        raise ConfigError(f"sampling.max_new_tokens {max_new} does not fit {config.model.name}'s context of "
                          f"{info.context} tokens (max_position_embeddings)")
    if not prompts:
        return
    counted, how = _count_tokens(prompts, info.tokenizer_file)
    if counted + max_new > info.context:
        raise ConfigError(
            f"the longest prompt ({counted} tokens{how}) plus sampling.max_new_tokens {max_new} exceeds "
            f"{config.model.name}'s context of {info.context} tokens (max_position_embeddings): lower "
            f"sampling.max_new_tokens or shorten the prompts")


def check_reporting(command: str, config) -> None:
    """train.report_to=wandb needs wandb installed: said now, not after the base model loads."""
    if command not in ("run", "train"):
        return
    from s3ft_jax.config import train_settings

    if "wandb" in train_settings(config).reporters:
        from s3ft_jax.training.wandb_logger import import_wandb

        import_wandb()


# Commands whose prompts go through the chat template (generate: only rows given as messages).
_CHAT_COMMANDS = ("run", "build", "answer", "train", "logprobs")


def check_chat_template(command: str, config) -> None:
    """model.chat_template names a template or a Jinja file that parses; without it, a model
    whose tokenizer has no template (a base model) cannot render the prompts: said here."""
    from s3ft_jax.models.chat_templates import SETTING_HINT, chat_template_text

    if config.model.chat_template:
        chat_template_text(config.model.chat_template)
        return
    if command not in _CHAT_COMMANDS and not (command == "generate" and _has_messages(config.generate.input)):
        return
    from s3ft_jax.models.metadata import checkpoint_info

    if checkpoint_info(str(config.model.name)).has_chat_template is False:
        raise ConfigError(f"{config.model.name} has no chat template (a base model?): {SETTING_HINT}")


def _has_messages(path: str) -> bool:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    if isinstance(json.loads(line).get("messages"), list):
                        return True
                except (ValueError, AttributeError):
                    continue
    except OSError:
        pass
    return False


def _max_new_tokens(command: str, config) -> int:
    if config.sampling.max_new_tokens:
        return config.sampling.max_new_tokens
    if command == "generate":
        from s3ft_jax.config import DEFAULT_MAX_NEW_TOKENS

        return DEFAULT_MAX_NEW_TOKENS
    from s3ft_jax.config import task_settings
    from s3ft_jax.tasks import get_task

    return get_task(task_settings(config)).max_new_tokens


def _longest_prompts(command: str, config, keep: int = 8) -> list[str]:
    """The `keep` longest (in characters) prompts the command will generate from."""
    if command == "generate":
        return _longest(_input_prompts(config.generate.input), keep)
    from s3ft_jax.config import task_settings
    from s3ft_jax.tasks import get_task, load_examples

    settings = task_settings(config)
    task = get_task(settings)
    prompts: list[str] = []
    if command == "answer":
        examples = load_examples(settings, task, settings.split)
        if settings.index < len(examples):
            prompts.append(task.prediction_prompt(examples[settings.index]))
        return prompts
    methods = set(config.run.methods) if command == "run" else {config.build.method}
    if methods & {"sdft", "s3ft"}:  # sft trains on the gold: nothing generated from the train split
        train = load_examples(settings, task, settings.train_split)[: settings.limit or None]
        prompts += [task.prediction_prompt(e) for e in train]
        prompts += [task.paraphrase_prompt(e) for e in train]
    if command == "run":
        test = load_examples(settings, task, settings.test_split)[: config.eval.limit or None]
        prompts += [task.prediction_prompt(e) for e in test]
    return _longest(prompts, keep)


def _input_prompts(path: str) -> list:
    import json

    prompts = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # read_prompts reports it, with its line number
                if not isinstance(row, dict):
                    continue
                if isinstance(row.get("prompt"), str):
                    prompts.append(row["prompt"])
                elif isinstance(row.get("messages"), list):
                    prompts.append("\n".join(str(m.get("content", "")) for m in row["messages"] if isinstance(m, dict)))
                elif isinstance(row.get("prompt_ids"), list):
                    prompts.append(row["prompt_ids"])
    except OSError:
        return []
    return prompts


def _longest(prompts: list, keep: int) -> list:
    return sorted(prompts, key=len, reverse=True)[:keep]


def _count_tokens(prompts: list, tokenizer_file: Path | None) -> tuple[int, str]:
    ids = [len(p) for p in prompts if isinstance(p, list)]
    texts = [p for p in prompts if isinstance(p, str)]
    if tokenizer_file is not None and texts:
        try:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            return max(ids + [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]), ""
        except Exception:  # an unreadable tokenizer file: the loader says so later; count words
            pass
    return max(ids + [len(t.split()) for t in texts]), ", at least: counted by words"


def summary(command: str, config) -> str:
    """What `--dry-run` checked, in a few words."""
    parts = [f"model {config.model.name}"] if command not in ("report", "config") else []
    if command in _TASK_SPLITS:
        parts.append(f"task {config.task.name}")
    if command != "config":
        parts.append(f"workdir {config.workdir}")
    return ", ".join(parts) or "configuration"
