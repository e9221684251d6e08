"""What a task is: examples, prompts (as data), output format and which judge decides.

A task turns dataset rows into `Example`s. Every prompt is a `str.format` template over the
example's `fields`; the paraphrase prompt also gets `{reference}`, the gold target, and SDFT's
distillation prompt `{reference}` and `{instruction}` (the rendered prediction prompt). Prompts
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

# SDFT's distillation templates (Yang et al., ACL 2024, arXiv:2402.13669), worded as in
# sail-sg/sdft main.py (`alpaca_distill_using`, `alpaca_distill_refer`: the system text, then the
# user slot with {{content}} = the instruction and {{resp}} = the gold). Their system text goes
# first in the user turn, after a blank line (in their LLaMA-Factory the alpaca-style system
# text was joined to "### Instruction:" with no separator at all).
# `using`: their general instruction data (scripts/{alpaca,dolly,lima,openhermes}/sdft.sh).
SDFT_DISTILL_USING = (
    "Below are an instruction that describes a task along with a reference answer. "
    "Using the reference answer as a guide, write your own response.\n\n"
    "### Instruction:\n{instruction}\n\n### Reference Answer:\n{reference}\n\n### Response:\n"
)
# `refer`: their code and function-calling data (scripts/{magicoder,openfunction}/sdft.sh).
SDFT_DISTILL_REFER = (
    "Below are an instruction that describes a task along with a reference answer. "
    "Refer to the reference answer and write your own response.\n\n"
    "### Instruction:\n{instruction}\n\n### Reference Answer:\n{reference}\n\n### Response:\n"
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
    # Method sdft (build.sdft_template=sdft): SDFT's distillation prompt (default:
    # SDFT_DISTILL_USING) and the start of the answer written for the model, which it continues
    # (GSM8K: "Great! Let's think step by step. "); the target is the continuation alone.
    distill: str = ""
    distill_prefix: str = ""

    def resolved(self) -> "TaskPrompts":
        return TaskPrompts(
            prediction=self.prediction,
            paraphrase=self.paraphrase or self.prediction + PARAPHRASE_SUFFIX,
            training=self.training or self.prediction,
            judge=self.judge,
            distill=self.distill or SDFT_DISTILL_USING,
            distill_prefix=self.distill_prefix,
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
                f"{', '.join(sorted([*example.fields, *extra]))} "
                "(write literal braces as {{ and }})"
            ) from None

    def prediction_prompt(self, example: Example) -> str:
        return self.render(self.prompts.prediction, example)

    def paraphrase_prompt(self, example: Example) -> str:
        return self.render(self.prompts.paraphrase, example, reference=example.gold)

    def distill_prompt(self, example: Example) -> str:
        """SDFT's distillation prompt: the instruction and the gold as its reference answer."""
        return self.render(self.prompts.distill, example, reference=example.gold, instruction=self.prediction_prompt(example))

    def training_prompt(self, example: Example) -> str:
        return self.render(self.prompts.training, example)


def check_split(task: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise ConfigError(f"{task} has no split {split!r}: choose from {', '.join(splits)}")
