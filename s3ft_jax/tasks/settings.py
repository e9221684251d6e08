"""The task settings: which task, where its rows come from, and prompt overrides.

Made once from the configuration tree (`config.task_settings`); every function of the tasks
package that needs a setting takes this, never the tree.
"""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError
from s3ft_jax.tasks.base import JUDGES, TaskPrompts

TASKS = ("gsm8k", "mbpp", "nq", "arith", "custom")
ARITH_OPERATORS = "+-*"


@dataclasses.dataclass(frozen=True)
class CustomTaskSettings:
    """task.name=custom: the user's JSONL/CSV (or hf:/tfds:) with a prompt and an answer field."""

    train: str = ""
    test: str = ""
    id_field: str = "id"
    prompt_field: str = "prompt"
    answer_field: str = "answer"  # a string or a list of acceptable answers
    target_field: str = ""  # a full gold response to train on (default: the answer)
    judge: str = "exact"
    regex: str = ""  # judge=regex: pattern whose group 1 (or match) is the answer
    tests_field: str = "tests"  # judge=code: list of assert statements
    setup_field: str = "setup"
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        if self.judge not in JUDGES:
            raise ConfigError(f"task.custom.judge must be one of {', '.join(JUDGES)}, got {self.judge!r}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(p for p in (self.train, self.test) if p)


@dataclasses.dataclass(frozen=True)
class ArithTaskSettings:
    """task.name=arith: generated word problems (tasks/arith.py); these set their difficulty."""

    seed: int = 0
    min_ops: int = 1  # steps per problem, from min_ops to max_ops
    max_ops: int = 2
    max_operand: int = 20  # operands of + and - up to this; multipliers up to min(10, this)
    operators: str = "+-*"  # which of + - * the steps use
    train_size: int = 1000
    test_size: int = 500

    def __post_init__(self):
        for key in ("seed", "min_ops", "max_ops", "max_operand", "train_size", "test_size"):
            if not isinstance(getattr(self, key), int) or isinstance(getattr(self, key), bool):
                raise ConfigError(f"task.arith.{key} must be an integer, got {getattr(self, key)!r}")
        if not 1 <= self.min_ops <= self.max_ops <= 5:
            raise ConfigError(f"task.arith needs 1 <= min_ops <= max_ops <= 5, got min_ops={self.min_ops}, max_ops={self.max_ops}")
        if not 2 <= self.max_operand <= 10_000:
            raise ConfigError(f"task.arith.max_operand must be from 2 to 10000, got {self.max_operand}")
        if not self.operators or any(op not in ARITH_OPERATORS for op in self.operators):
            raise ConfigError(f"task.arith.operators must be some of {ARITH_OPERATORS!r}, got {self.operators!r}")
        if self.train_size < 1 or self.test_size < 1:
            raise ConfigError(f"task.arith.train_size and test_size must be >= 1, got {self.train_size} and {self.test_size}")


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    name: str = "gsm8k"
    # Empty: the task's files in the data directory; else a file, hf:NAME[:CONFIG] or tfds:NAME.
    source: str = ""
    train_split: str = "train"
    test_split: str = "test"
    limit: int = 0  # the first N training examples (0: all)
    split: str = "test"  # the split `s3ft answer` reads
    index: int = 0  # the example `s3ft answer` shows
    # Replacement templates; an empty field keeps the task's own.
    prompts: TaskPrompts = TaskPrompts(prediction="")
    custom: CustomTaskSettings = CustomTaskSettings()
    arith: ArithTaskSettings = ArithTaskSettings()
    data_dir: str = ""  # empty: $S3FT_DATA_DIR
    stop: tuple[str, ...] = ()  # stop strings added to the task's own (sampling.stop)
    # Let the test split share rows (an id or a prompt) with the training split; `run` refuses
    # that otherwise, since in-domain evaluation would then score training data.
    allow_overlap: bool = False

    def __post_init__(self):
        if self.name not in TASKS:
            raise ConfigError(f"task.name must be one of {', '.join(TASKS)}, got {self.name!r}")
        if self.limit < 0:
            raise ConfigError(f"task.limit must be >= 0, got {self.limit}")
        if self.index < 0:
            raise ConfigError(f"task.index must be >= 0, got {self.index}")
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"sampling.stop must be a tuple of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def needs_data_dir(self) -> bool:
        """Only what is read from the data directory needs one: a built-in task's own files or
        a relative task.source (not hf:/tfds:/an absolute path), a custom task's relative paths;
        arith makes its problems."""
        if self.name == "arith":
            return False
        files = self.custom.files if self.name == "custom" else (self.source,)
        return any(not p.startswith(("/", "hf:", "tfds:")) for p in files)
