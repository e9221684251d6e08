"""Tasks: datasets, prompts as data, output formats; `get_task(settings)` picks one."""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError
from s3ft_jax.tasks.base import Example, Task, TaskPrompts
from s3ft_jax.tasks.settings import TASKS, ArithTaskSettings, CustomTaskSettings, TaskSettings


def get_task(settings: TaskSettings) -> Task:
    """The configured task with the settings' prompt and stop overrides applied."""
    from s3ft_jax.tasks import arith, custom, gsm8k, mbpp, nq

    name = settings.name
    source = settings.source
    if name == "gsm8k":
        task = gsm8k.task(source)
    elif name == "mbpp":
        task = mbpp.task(source)
    elif name == "nq":
        task = nq.task(source)
    elif name == "arith":
        task = arith.task(settings.arith)
    elif name == "custom":
        task = custom.task(settings.custom)
    else:  # TaskSettings admits only TASKS
        raise ConfigError(f"task.name must be one of {', '.join(TASKS)}, got {name!r}")
    prompts = task.prompts.with_overrides(dataclasses.asdict(settings.prompts))
    if task.judge == "llm" and not prompts.judge:
        from s3ft_jax.tasks.nq import JUDGE_PROMPT

        prompts = dataclasses.replace(prompts, judge=JUDGE_PROMPT)
    return dataclasses.replace(task, prompts=prompts, stop=tuple(dict.fromkeys((*task.stop, *settings.stop))))


def load_examples(settings: TaskSettings, task: Task, split: str) -> list[Example]:
    """`split` of the configured task. One rule for every command: relative files are found in
    the data directory (`data.data_dir`, else $S3FT_DATA_DIR), which a custom task whose files
    are all absolute (or hf:/tfds:) does not need."""
    from s3ft_jax.tasks.data import resolve_data_dir

    return task.load(resolve_data_dir(settings.data_dir) if settings.needs_data_dir else None, split)


__all__ = ["TASKS", "ArithTaskSettings", "CustomTaskSettings", "Example", "Task", "TaskPrompts", "TaskSettings", "get_task", "load_examples"]
