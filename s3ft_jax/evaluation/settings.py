"""The evaluation settings (`eval.*` in the configuration tree), checked on construction."""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError
from s3ft_jax.evaluation.benchmark_source import DEFAULT_SOURCE, check_source
from s3ft_jax.evaluation.benchmarks import TASKS as BENCHMARKS
from s3ft_jax.evaluation.headline import PAPER_HEADLINE, parse_headline

DEFAULT_BENCHMARKS = ("mmlu", "truthfulqa_mc1", "truthfulqa_mc2", "hellaswag", "arc_easy", "arc_challenge", "winogrande", "piqa", "boolq")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    limit: int = 0  # the first N test examples in-domain (0: all)
    benchmarks: tuple[str, ...] = DEFAULT_BENCHMARKS
    # The report's headline average drop: "benchmark:metric" entries, one per benchmark
    # (evaluation/headline.py); those not in `benchmarks` make it partial, never an error.
    headline: tuple[str, ...] = PAPER_HEADLINE
    benchmark_limit: int = 0  # the first N questions of each benchmark (0: all)
    mmlu_per_subject: int = 0  # > 0: a stratified MMLU subset, the first k questions per subject
    batch_size: int = 16
    drift: bool = True  # KL(base || tuned) per token on held-out text
    drift_logit_tokens: int = 2048  # positions per batch whose full log-softmax is kept (memory)
    # Where the benchmark files come from: "data_dir", or "hf" (built from the hub into a cache;
    # evaluation/benchmark_source.py).
    benchmark_source: str = DEFAULT_SOURCE

    def __post_init__(self):
        object.__setattr__(self, "benchmarks", tuple(self.benchmarks))
        object.__setattr__(self, "headline", parse_headline(self.headline))
        if self.limit < 0 or self.benchmark_limit < 0 or self.mmlu_per_subject < 0 or self.batch_size <= 0:
            raise ConfigError("eval.limit, eval.benchmark_limit and eval.mmlu_per_subject must be >= 0, eval.batch_size > 0")
        if self.drift_logit_tokens <= 0:
            raise ConfigError(f"eval.drift_logit_tokens must be positive, got {self.drift_logit_tokens}")
        check_source(self.benchmark_source)
        unknown = [b for b in self.benchmarks if b not in BENCHMARKS]
        if unknown:
            raise ConfigError(f"unknown benchmark {unknown[0]!r} in eval.benchmarks: choose from {', '.join(BENCHMARKS)}")

    def question_limit(self) -> int | None:
        return self.benchmark_limit or None

    def per_subject(self, benchmark: str) -> int | None:
        """The MMLU stratification for `benchmark` (None: no stratification)."""
        return (self.mmlu_per_subject or None) if benchmark.startswith("mmlu") else None
