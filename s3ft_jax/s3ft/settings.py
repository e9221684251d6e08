"""What Algorithm 1's stages depend on besides the model (`build.*`, and the task, judge and
sampling sections it uses), made once at the top. Light: no JAX, so the CLI can check it."""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError
from s3ft_jax.judges.settings import JudgeSettings
from s3ft_jax.sampling.options import SamplingOptions
from s3ft_jax.tasks.settings import TaskSettings

METHODS = ("sft", "sdft", "s3ft")
# How method sdft writes its paraphrases: "sdft", Yang et al.'s distillation template and keep
# rule (sail-sg/sdft); "s3ft", S3FT's paraphrase prompt with the broad leak filter (this
# project's sdft before issue 28).
SDFT_TEMPLATES = ("sdft", "s3ft")


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    task: TaskSettings
    judge: JudgeSettings
    sampling: SamplingOptions  # resolved for the task (its length and stop strings filled in)
    method: str = "s3ft"
    output: str = ""  # the D' directory (default: the workdir)
    sdft_template: str = "sdft"
    # The paper describes no meta-text filter for S3FT's paraphrases; True applies the broad one.
    leak_filter_s3ft: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"build.method must be s3ft, sdft or sft, got {self.method!r}")
        if self.sdft_template not in SDFT_TEMPLATES:
            raise ConfigError(f"build.sdft_template must be sdft or s3ft, got {self.sdft_template!r}")
        if not isinstance(self.leak_filter_s3ft, bool):
            raise ConfigError(f"build.leak_filter_s3ft must be True or False, got {self.leak_filter_s3ft!r}")

    def leak_rule(self, method: str) -> str | None:
        """The meta-text rule (s3ft/leaks.py) that rejects `method`'s paraphrases, or None."""
        if method == "sdft":
            return "sdft" if self.sdft_template == "sdft" else "broad"
        return "broad" if method == "s3ft" and self.leak_filter_s3ft else None
