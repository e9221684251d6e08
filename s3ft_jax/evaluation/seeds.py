"""Several trainings of one method (`run.seeds`): per metric, the mean over the seeds with its
between-seed 95% interval, and each method against a reference method on those means.

The per-question intervals elsewhere in the report hold one trained model fixed; these cover
what a rerun with another seed would change (the CPU study found a second sft seed moving
drift as much as the difference between methods, docs/results.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from s3ft_jax.evaluation.intervals import seed_difference, seed_interval

# What each training unit is summarised by: in-domain accuracy (points), the headline and
# extended average drop from base (points), drift on base's responses and on benchmark texts
# (nats per token).
METRICS = ("indomain", "headline_drop", "extended_drop", "drift_responses", "drift_benchmarks")

Units = Mapping[str, Sequence[Mapping[str, float | None]]]  # method -> one summary per seed


def _values(units: Sequence[Mapping[str, float | None]], metric: str) -> list[float]:
    return [u[metric] for u in units if u.get(metric) is not None]


def over_seeds(units: Units) -> dict[str, dict[str, dict | None]]:
    """{method: {metric: {"mean", "sd", "low", "high", "n"} or None}}."""
    return {m: {k: seed_interval(_values(us, k)) for k in METRICS} for m, us in units.items()}


def against(units: Units, reference: str) -> dict[str, dict[str, dict | None]]:
    """{method: {metric: mean(method) - mean(reference) with Welch's 95% interval}} for every
    method but the reference (independent trainings: nothing pairs seed k of one method with
    seed k of another)."""
    if reference not in units:
        return {}
    ref = units[reference]
    return {m: {k: seed_difference(_values(us, k), _values(ref, k)) for k in METRICS}
            for m, us in units.items() if m != reference}
