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
* A mean over training seeds (the same method trained k times) carries the between-seed 95%
  interval: Student's t with k - 1 degrees of freedom, since k is small (3 seeds: t = 4.30, not
  1.96). A difference of two methods' seed means uses Welch's interval. These cover the
  variation between training runs, which the per-question intervals leave out.
* A token-weighted mean over texts (sum of per-token values / number of tokens) carries the
  ratio estimator's stderr, treating texts, not tokens, as the independent samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


# Student's t 97.5% quantiles for 1..30 degrees of freedom (beyond: a Cornish-Fisher expansion).
_T975 = (12.7062047, 4.3026527, 3.1824463, 2.7764451, 2.5705818, 2.4469119, 2.3646243, 2.3060041, 2.2621572,
         2.2281389, 2.2009852, 2.1788128, 2.1603687, 2.1447867, 2.1314495, 2.1199053, 2.1098156, 2.1009220,
         2.0930241, 2.0859634, 2.0796138, 2.0738731, 2.0686576, 2.0638986, 2.0595386, 2.0555294, 2.0518305,
         2.0484071, 2.0452296, 2.0422725)


def t_quantile_975(df: float) -> float:
    """Student's t distribution's 97.5% quantile (a fractional df, from Welch, rounds down)."""
    if df < 1:
        raise ValueError("t needs at least one degree of freedom")
    if df <= len(_T975):
        return _T975[int(df) - 1]
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def seed_interval(values: Sequence[float]) -> dict | None:
    """The mean over seeds with its between-seed 95% interval (t, k - 1 df); one seed has no
    interval (low = high = None)."""
    k = len(values)
    if not k:
        return None
    mean = sum(values) / k
    if k < 2:
        return {"mean": mean, "sd": None, "low": None, "high": None, "n": 1}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    half = t_quantile_975(k - 1) * sd / math.sqrt(k)
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "n": k}


def seed_difference(a: Sequence[float], b: Sequence[float]) -> dict | None:
    """mean(a) - mean(b) over two sets of independent trainings, with Welch's 95% interval."""
    if not a or not b:
        return None
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return {"diff": ma - mb, "low": None, "high": None, "stderr": None}
    va = sum((v - ma) ** 2 for v in a) / (len(a) - 1) / len(a)
    vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": ma - mb, "low": ma - mb, "high": ma - mb, "stderr": 0.0}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile_975(df) * se
    return {"diff": ma - mb, "low": ma - mb - half, "high": ma - mb + half, "stderr": se}


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
