"""What Algorithm 1's stages depend on besides the model (`build.*`, and the task, judge and
sampling sections it uses), made once at the top. Light: no JAX, so the CLI can check it."""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError
from s3ft_jax.judges.settings import JudgeSettings
from s3ft_jax.sampling.options import SamplingOptions
from s3ft_jax.tasks.settings import TaskSettings

METHODS = ("sft", "sdft", "s3ft")


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    task: TaskSettings
    judge: JudgeSettings
    sampling: SamplingOptions  # resolved for the task (its length and stop strings filled in)
    method: str = "s3ft"
    output: str = ""  # the D' directory (default: the workdir)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"build.method must be s3ft, sdft or sft, got {self.method!r}")
