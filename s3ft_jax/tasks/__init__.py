"""Tasks: datasets, prompts as data, output formats; `get_task(config)` picks one."""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError
from s3ft_jax.tasks.base import Example, Task, TaskPrompts

TASKS = ("gsm8k", "mbpp", "nq", "custom")


def get_task(config) -> Task:
    """The configured task with the config's prompt, stop and length overrides applied."""
    from s3ft_jax.tasks import custom, gsm8k, mbpp, nq

    name = config.task.name
    source = config.task.source
    if name == "gsm8k":
        task = gsm8k.task(source)
    elif name == "mbpp":
        task = mbpp.task(source)
    elif name == "nq":
        task = nq.task(source)
    elif name == "custom":
        task = custom.task(config.task.custom)
    else:
        raise ConfigError(f"task.name must be one of {', '.join(TASKS)}, got {name!r}")
    prompts = task.prompts.with_overrides(config.task.prompts.to_dict())
    if task.judge == "llm" and not prompts.judge:
        from s3ft_jax.tasks.nq import JUDGE_PROMPT

        prompts = dataclasses.replace(prompts, judge=JUDGE_PROMPT)
    return dataclasses.replace(task, prompts=prompts, stop=tuple(dict.fromkeys((*task.stop, *config.sampling.stop))))


def load_examples(config, task: Task, split: str) -> list[Example]:
    """`split` of the configured task. One rule for every command: relative files are found in
    the data directory (`data.data_dir`, else $S3FT_DATA_DIR), which a custom task whose files
    are all absolute (or hf:/tfds:) does not need."""
    from s3ft_jax.tasks.data import resolve_data_dir

    custom = config.task.custom
    needs_dir = task.name != "custom" or any(p and not p.startswith(("/", "hf:", "tfds:")) for p in (custom.train, custom.test))
    return task.load(resolve_data_dir(config.data.data_dir) if needs_dir else None, split)


__all__ = ["TASKS", "Example", "Task", "TaskPrompts", "get_task", "load_examples"]
