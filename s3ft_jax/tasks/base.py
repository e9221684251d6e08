"""What a task is: examples, prompts (as data), output format and which judge decides.

A task turns dataset rows into `Example`s. Every prompt is a `str.format` template over the
example's `fields`; the paraphrase prompt also gets `{reference}`, the gold target. Prompts
live in one `TaskPrompts` per task and can be replaced from the config
(`--config.task.prompts.prediction=...`), so the whole method runs on other wordings without
code changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from s3ft_jax.errors import ConfigError

# The paper (arXiv:2502.08130) shows the gold as a reference answer and asks for the model's own
# response in the same format as a prediction.
PARAPHRASE_SUFFIX = (
    "\n\nReference answer:\n{reference}\n\n"
    "Using the reference answer as a guide, write your own response to the task above, "
    "in the same format as the reference answer."
)

JUDGES = ("numeric", "exact", "regex", "code", "llm")


@dataclasses.dataclass(frozen=True)
class Example:
    id: str
    fields: Mapping[str, str]  # template fields: question, text, tests, ...
    gold: str  # the gold answer written in the task's output format (SFT's target)
    reference: Any  # what the judge compares with: a number, answer strings, tests

    def to_json(self) -> dict:
        return {"id": self.id, "fields": dict(self.fields), "gold": self.gold, "reference": self.reference}


@dataclasses.dataclass(frozen=True)
class TaskPrompts:
    prediction: str
    paraphrase: str = ""  # default: prediction + PARAPHRASE_SUFFIX
    training: str = ""  # default: prediction (the paper trains with the prediction prompt)
    judge: str = ""  # only for the llm judge

    def resolved(self) -> "TaskPrompts":
        return TaskPrompts(
            prediction=self.prediction,
            paraphrase=self.paraphrase or self.prediction + PARAPHRASE_SUFFIX,
            training=self.training or self.prediction,
            judge=self.judge,
        )

    def with_overrides(self, overrides: Mapping[str, str]) -> "TaskPrompts":
        changed = {k: v for k, v in overrides.items() if v}
        return dataclasses.replace(self, **changed).resolved()


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    judge: str  # one of JUDGES
    prompts: TaskPrompts
    load: Callable[[Path, str], list[Example]]  # (data_dir, split) -> examples
    splits: tuple[str, ...]
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    # For the code judge: the program inside a response (e.g. between [BEGIN] and [DONE]).
    extract_program: Callable[[str], str] | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The files (or hf:/tfds: names) each split reads, as configured: what a message names.
    files: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def render(self, template: str, example: Example, **extra: str) -> str:
        try:
            return template.format(**example.fields, **extra)
        except (KeyError, IndexError) as e:
            raise ConfigError(
                f"task {self.name}: prompt template uses {{{e.args[0]}}}, but examples only have "
                f"{', '.join(sorted(example.fields))}{' and reference' if 'reference' in extra else ''} "
                "(write literal braces as {{ and }})"
            ) from None

    def prediction_prompt(self, example: Example) -> str:
        return self.render(self.prompts.prediction, example)

    def paraphrase_prompt(self, example: Example) -> str:
        return self.render(self.prompts.paraphrase, example, reference=example.gold)

    def training_prompt(self, example: Example) -> str:
        return self.render(self.prompts.training, example)


def check_split(task: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise ConfigError(f"{task} has no split {split!r}: choose from {', '.join(splits)}")
