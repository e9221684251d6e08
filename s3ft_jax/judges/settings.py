"""The judge settings (`judge.*` in the configuration tree), checked on construction."""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError

LLM_MODES = ("llm", "heuristic", "llm_or_heuristic")
# Bumped whenever a judge's rule changes a verdict (hashed into the judge stages' fingerprints).
RULES_VERSION = 2


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    # For tasks judged by an LLM: its yes/no, the heuristics (exact match, contains), or either.
    mode: str = "llm_or_heuristic"
    model: str = ""  # the LLM judge's model; empty: the model being judged's base
    code_timeout_s: float = 10.0
    code_workers: int = 0  # 0: one per CPU core
    # Paraphrases must keep the gold's solution, not only its final answer (judges/solution.py).
    keep_solution: bool = False
    keep_solution_fraction: float = 0.5
    # A response cut at the token limit is refused unless it stated its answer before the cut.
    accept_truncated: bool = False
    # `s3ft build` audits the judge on the training golds (judges/audit.py); 0: every example.
    audit: bool = True
    audit_limit: int = 0

    def __post_init__(self):
        if self.mode not in LLM_MODES:
            raise ConfigError(f"judge.mode must be llm, heuristic or llm_or_heuristic, got {self.mode!r}")
        if self.code_timeout_s <= 0 or self.code_workers < 0:
            raise ConfigError("judge.code_timeout_s must be positive, judge.code_workers >= 0")
        if self.audit_limit < 0:
            raise ConfigError(f"judge.audit_limit must be >= 0 (0: every example), got {self.audit_limit}")
        if not 0 < self.keep_solution_fraction <= 1:
            raise ConfigError(f"judge.keep_solution_fraction must be in (0, 1], got {self.keep_solution_fraction}")

    def uses_model(self, task_judge: str) -> bool:
        """Whether judging a task with this judge kind runs an LLM."""
        return task_judge == "llm" and self.mode != "heuristic"

    def fingerprint(self, task, model_id) -> dict:
        """Every setting that can change a verdict of `task` (a tasks.Task)."""
        # "rules": the judges' version; a change of rule redoes the verdicts of earlier runs.
        inputs = {"kind": task.judge, "options": dict(task.options), "rules": RULES_VERSION,
                  "accept_truncated": self.accept_truncated}
        if task.judge == "llm":
            inputs |= {"mode": self.mode, "prompt": task.prompts.judge,
                       "model": model_id if not self.model else self.model}
        if task.judge == "code":
            inputs |= {"timeout_s": self.code_timeout_s}
        return inputs
