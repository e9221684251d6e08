"""A task from configuration alone: the user's JSONL/CSV, field names and a judge type.

    --config.task.name=custom --config.task.custom.train=my/train.jsonl
    --config.task.custom.test=my/test.jsonl --config.task.custom.judge=exact

Every string field of a row is a prompt template field; `{prompt}` is the `prompt_field`.
The gold target is `target_field` when given (a full worked answer), else the answer itself.
A row without a value in a field the task reads, or with an id an earlier row has, is an error
naming its `file:line`.
"""

from __future__ import annotations

from pathlib import Path

from s3ft_jax.errors import ConfigError, S3FTError
from s3ft_jax.tasks import mbpp
from s3ft_jax.tasks.base import JUDGES, Example, Task, TaskPrompts
from s3ft_jax.tasks.data import check_unique_ids, load_rows, require

DEFAULT_PROMPT = "{prompt}"


def examples(custom, data_dir: Path | None, split: str) -> list[Example]:
    source = {"train": custom.train, "test": custom.test}.get(split, "")
    if not source:
        raise ConfigError(f"custom task: set --config.task.custom.{split} to a JSONL/CSV file (or hf:NAME, tfds:NAME)")
    rows = load_rows(source, data_dir=data_dir, split=split)
    required = [custom.prompt_field, custom.answer_field] + ([custom.target_field] if custom.target_field else [])
    # Ids are the file's when any row has one; then every row needs its own (a row without one
    # must not quietly take a made-up id beside the others).
    has_ids = any(custom.id_field in row for _, row in rows)
    if has_ids:
        required.append(custom.id_field)
    out, ids = [], []
    for i, (where, row) in enumerate(rows):
        require(row, where, *required)
        fields = {k: v for k, v in row.items() if isinstance(v, str)}
        fields["prompt"] = str(row[custom.prompt_field])
        answer = row[custom.answer_field]
        answers = [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]
        gold = str(row[custom.target_field]) if custom.target_field else answers[0]
        if custom.judge == "code":
            tests = row.get(custom.tests_field)
            if not isinstance(tests, list) or not tests:
                raise S3FTError(f"{where}: the code judge needs a non-empty list in {custom.tests_field!r}")
            require(row, where, custom.tests_field)
            reference = {"tests": tests, "setup": str(row.get(custom.setup_field, "") or "")}
        elif custom.judge == "numeric":
            reference = answers[0]
        else:
            reference = answers
        example_id = str(row[custom.id_field]) if has_ids else f"custom-{split}-{i}"
        ids.append((example_id, where))
        out.append(Example(example_id, fields, gold, reference))
    check_unique_ids(ids)
    return out


def task(custom) -> Task:
    if custom.judge not in JUDGES:
        raise ConfigError(f"task.custom.judge must be one of {', '.join(JUDGES)}, got {custom.judge!r}")
    if custom.judge == "regex" and not custom.regex:
        raise ConfigError("task.custom.judge=regex needs --config.task.custom.regex (the answer pattern)")
    return Task(
        name="custom",
        judge=custom.judge,
        prompts=TaskPrompts(DEFAULT_PROMPT).resolved(),
        load=lambda data_dir, split: examples(custom, data_dir, split),
        splits=("train", "test"),
        max_new_tokens=256,
        stop=tuple(custom.stop),
        extract_program=mbpp.extract_program if custom.judge == "code" else None,
        options={"regex": custom.regex},
        files={"train": (custom.train,), "test": (custom.test,)},
    )
