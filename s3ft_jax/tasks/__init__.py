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

    examples = task.load(resolve_data_dir(settings.data_dir) if settings.needs_data_dir else None, split)
    # The loaders name the lines of a repeated id; this catches a task whose loader does not
    # (stages find examples by id, so two with one id would become one).
    seen = set()
    for example in examples:
        if example.id in seen:
            raise ConfigError(f"task {task.name} split {split!r}: duplicate example id {example.id!r}")
        seen.add(example.id)
    return examples


def check_disjoint(settings: TaskSettings, task: Task, train: list[Example], test: list[Example]) -> None:
    """The test split shares no example with the training rows (the first `task.limit`), by id
    or by prompt, unless `task.allow_overlap`: else in-domain evaluation scores training data.

    The prompt is what the model reads for a custom task (its prediction prompt, whitespace
    collapsed); for a built-in task it is the example's input fields, so a prompt override
    cannot make the official splits meet (MBPP has three problem texts in both train and test,
    with different tests)."""
    if settings.allow_overlap:
        return
    if task.name == "custom":
        def key(e: Example) -> str:
            return " ".join(task.prediction_prompt(e).split())
    else:
        def key(e: Example) -> tuple:
            return tuple(sorted(e.fields.items()))
    used = train[: settings.limit] if settings.limit else train
    train_ids = {e.id for e in used}
    train_keys = {key(e): e.id for e in used}
    shared = [(e.id, e.id if e.id in train_ids else train_keys.get(key(e))) for e in test]
    shared = [(test_id, train_id) for test_id, train_id in shared if train_id is not None]
    if shared:
        test_id, train_id = shared[0]
        example = f"id {test_id!r}" if test_id == train_id else f"{settings.test_split} id {test_id!r} = {settings.train_split} id {train_id!r}"
        train_files, test_files = (", ".join(task.files.get(s, ())) or "?" for s in (settings.train_split, settings.test_split))
        raise ConfigError(
            f"task {task.name}: the {settings.train_split} split ({train_files}) and the {settings.test_split} split "
            f"({test_files}) share {len(shared)} of {len(test)} test rows (same id or prompt; e.g. {example}), so "
            "in-domain evaluation would score training data: use separate files, or set --config.task.allow_overlap=True"
        )


__all__ = ["TASKS", "ArithTaskSettings", "CustomTaskSettings", "Example", "Task", "TaskPrompts", "TaskSettings", "check_disjoint", "get_task", "load_examples"]
