"""The report's numbers: paired differences on the same questions, drops from base, each set's
average drop, drift differences on the same texts, and each method against sft."""

from __future__ import annotations


from s3ft_jax.evaluation.headline import split_entry
from s3ft_jax.evaluation.intervals import Z95, paired_difference, ratio_mean


def _between(data: dict, first: str, second: str, name: str) -> dict | None:
    """first - second in points over the questions of `name` both answered, with its interval."""
    a, b = data["questions"].get(first, {}).get(name) or {}, data["questions"].get(second, {}).get(name) or {}
    common = [q for q in a if q in b]
    if not common:
        return None
    return paired_difference([100 * a[q] for q in common], [100 * b[q] for q in common])


def _paired(data: dict, method: str, name: str, sign: int) -> dict | None:
    """sign * (method - base) in points over the questions both answered, with its interval."""
    return _between(data, method, "base", name) if sign > 0 else _between(data, "base", method, name)


def _score(gen: dict, entry: str) -> float | None:
    """A method's score in points on one "benchmark:metric" entry."""
    name, metric = split_entry(entry)
    value = (gen.get(name) or {}).get(metric)
    return None if value is None else 100 * value


def _stderr(gen: dict, entry: str) -> float | None:
    name, metric = split_entry(entry)
    value = (gen.get(name) or {}).get(f"{metric}_stderr")
    return None if value is None else 100 * value


def _drop(data: dict, method: str, entry: str) -> dict | None:
    """Drop from base on one entry (positive = worse): paired over its questions when the
    per-question records are there, else the difference of the two scores alone."""
    paired = _paired(data, method, entry, sign=-1)
    if paired is not None:
        return paired
    base, gen = (_score(data["generalization"].get(m, {}), entry) for m in ("base", method))
    if base is not None and gen is not None:
        return {"diff": base - gen, "stderr": None, "low": None, "high": None}
    return None


def _average(drops: list[dict], total: int | None = None) -> dict | None:
    """Mean drop over one set's benchmarks (one entry per benchmark: disjoint question sets,
    so the variances add). "k" of the set's `total` entries went in: fewer is a partial
    average, and its cell says so."""
    if not drops:
        return None
    mean = sum(d["diff"] for d in drops) / len(drops)
    counts = {"k": len(drops), "total": total or len(drops)}
    if any(d["stderr"] is None for d in drops):
        return {"diff": mean, "stderr": None, "low": None, "high": None, **counts}
    se = sum(d["stderr"] ** 2 for d in drops) ** 0.5 / len(drops)
    return {"diff": mean, "stderr": se, "low": mean - Z95 * se, "high": mean + Z95 * se, **counts}


def _drift_between(data: dict, method: str, reference: str, key: str) -> dict | None:
    """KL(base || method) - KL(base || reference) per token on the same texts, paired: the
    difference of the per-text KL sums over the same token counts (ratio estimator). None
    without per-text sums (drift files from before they were kept) or on different texts."""
    cells = [data["drift"].get(m, {}).get(key) or {} for m in (method, reference)]
    rows_m, rows_r = (c.get("per_text") for c in cells)
    if not rows_m or not rows_r or [n for _, n in rows_m] != [n for _, n in rows_r]:
        return None
    stats = ratio_mean([s - t for (s, _), (t, _) in zip(rows_m, rows_r)], [n for _, n in rows_m])
    if stats is None:
        return None
    se = stats["stderr"]
    low, high = (None, None) if se is None else (stats["mean"] - Z95 * se, stats["mean"] + Z95 * se)
    return {"diff": stats["mean"], "stderr": se, "low": low, "high": high, "n": stats["n"]}


def comparisons(data: dict, reference: str = "sft") -> dict[str, dict[str, dict | None]]:
    """{method: {"indomain", "headline_drop", "extended_drop", "drift_responses",
    "drift_benchmarks": paired difference against `reference`}} for every other trained
    method: the paper's question is not whether s3ft moved from base but whether it moved
    less than sft. Accuracy in points (method - reference), each set's average drop
    difference in points (positive = method drops more), drift in nats per token (positive =
    method drifted more)."""
    if reference not in data["methods"]:
        return {}
    sets = data["sets"]
    out = {}
    for m in data["methods"]:
        if m in ("base", reference):
            continue
        out[m] = {"indomain": _between(data, m, reference, "indomain")}
        for key, entries, total in (("headline_drop", sets.headline, len(sets.headline) + len(sets.missing)),
                                    ("extended_drop", sets.extended, len(sets.extended))):
            out[m][key] = _average([d for e in entries if (d := _between(data, reference, m, e)) is not None], total)
        out[m] |= {"drift_responses": _drift_between(data, m, reference, "responses"),
                   "drift_benchmarks": _drift_between(data, m, reference, "benchmarks_all")}
    return out
