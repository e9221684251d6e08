"""Standard errors and 95% intervals for the report: how far a number can move by chance.

Plain Python (no numpy, no scipy), so the report can compute them from the run's files.

* An accuracy over n questions carries lm-eval's `mean_stderr`: the sample standard deviation
  (n - 1) over sqrt(n); for 0/1 scores that is sqrt(p (1 - p) / (n - 1)). Its 95% interval is
  Wilson's score interval, which stays inside [0, 1] and is not empty at p = 0 or 1, where the
  stderr is 0 (0 of 16 right does not mean the accuracy is exactly 0).
* A change between two models on the same questions is paired: the mean of the per-question
  differences, its stderr `mean_stderr(differences)` and the normal 95% interval. Questions
  both models get right (or wrong) add no noise, so it is much tighter than combining the two
  accuracies' stderrs, and it is the right test for "did fine-tuning change this score?".
* A token-weighted mean over texts (sum of per-token values / number of tokens) carries the
  ratio estimator's stderr, treating texts, not tokens, as the independent samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def mean_stderr(values: Sequence[float]) -> float | None:
    """lm-eval's `mean_stderr`: sample standard deviation (n - 1) over sqrt(n)."""
    n = len(values)
    if n < 2:
        return None
    mu = sum(values) / n
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson's score interval for a proportion successes / n."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(a: Sequence[float], b: Sequence[float], z: float = Z95) -> dict | None:
    """mean(a - b) over paired observations, with its stderr and normal interval."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in size: {len(a)} vs {len(b)}")
    if not a:
        return None
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / len(diffs)
    se = mean_stderr(diffs)
    low, high = (mean - z * se, mean + z * se) if se is not None else (None, None)
    return {"diff": mean, "stderr": se, "low": low, "high": high, "n": len(diffs)}


def ratio_mean(sums: Sequence[float], counts: Sequence[float]) -> dict | None:
    """sum(sums) / sum(counts) and its ratio-estimator stderr over the n items:
    sqrt(sum_i (s_i - r c_i)^2 / (n (n - 1))) / mean(c)."""
    n = len(sums)
    total = sum(counts)
    if n == 0 or total <= 0:
        return None
    r = sum(sums) / total
    se = None
    if n >= 2:
        se = math.sqrt(sum((s - r * c) ** 2 for s, c in zip(sums, counts)) / (n * (n - 1))) / (total / n)
    return {"mean": r, "stderr": se, "n": n, "count": total}


def within_noise(low: float | None, high: float | None) -> bool:
    """Whether an interval includes 0: no evidence of a difference. An interval that cannot
    be computed (one question) counts as noise."""
    return low is None or high is None or low <= 0 <= high


__all__ = ["Z95", "mean_stderr", "paired_difference", "ratio_mean", "wilson_interval", "within_noise"]
