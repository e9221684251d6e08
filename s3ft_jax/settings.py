"""The settings of a whole run (`s3ft run`, `s3ft build`), each section typed by the module
that uses it. The command line makes one from the configuration tree (`config.run_settings`);
the pipeline and everything under it read only these. Light: importing it loads no JAX.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from s3ft_jax.errors import ConfigError
from s3ft_jax.evaluation.settings import EvalSettings
from s3ft_jax.loader import LazyModel, load_model_and_tokenizer
from s3ft_jax.models.settings import ModelSettings
from s3ft_jax.s3ft.settings import BuildSettings
from s3ft_jax.training.settings import LoraSettings, TrainSettings

TRAINED = ("sft", "sdft", "s3ft")
METHODS = ("base", *TRAINED)


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything `s3ft run` reads, each section typed by the module that uses it."""

    workdir: Path
    methods: tuple[str, ...]
    model: ModelSettings
    build: BuildSettings
    train: TrainSettings
    lora: LoraSettings | None  # None: full fine-tuning
    eval: EvalSettings
    logprobs_batch_size: int = 8
    # run.seeds: train and evaluate each method once per training seed (same D'); () = one
    # training per method with train's seed, in <workdir>/<method> as before.
    seeds: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "workdir", Path(self.workdir))
        object.__setattr__(self, "methods", tuple(dict.fromkeys(self.methods)))
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods:
            raise ConfigError(f"run.methods takes base, sft, sdft, s3ft; got {self.methods!r}")
        object.__setattr__(self, "seeds", tuple(int(k) for k in self.seeds))
        if len(set(self.seeds)) != len(self.seeds) or any(k < 0 for k in self.seeds):
            raise ConfigError(f"run.seeds must be distinct non-negative integers, got {self.seeds!r}")
        if self.logprobs_batch_size <= 0:
            raise ConfigError(f"logprobs.batch_size must be positive, got {self.logprobs_batch_size}")

    def judge_model(self) -> LazyModel | None:
        """The LLM judge's own model (judge.model), placed like the base model."""
        name = self.build.judge.model
        return LazyModel(lambda: load_model_and_tokenizer(self.model.named(name))) if name else None
