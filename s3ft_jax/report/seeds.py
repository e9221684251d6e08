"""Runs with run.seeds: each method's mean over its trainings with the between-seed interval, and
each method against sft on those means (evaluation/seeds.py computes them)."""

from __future__ import annotations


from s3ft_jax.evaluation.intervals import within_noise
from s3ft_jax.report.numbers import _average, _drop


OVER_SEEDS = "Over training seeds: mean [between-seed 95% interval, t]"


AGAINST_SFT_SEEDS = "Against sft over training seeds: difference of the seed means [Welch 95% interval]"


SEED_COLUMNS = ["in-domain accuracy (points)", "headline average drop (points)", "extended average drop (points)",
                "drift on base's responses", "drift on benchmark texts"]


def unit_summary(data: dict, name: str) -> dict[str, float | None]:
    """One training's numbers for the over-seeds tables (evaluation/seeds.py METRICS)."""
    sets = data["sets"]
    out: dict[str, float | None] = {"indomain": None}
    if (ind := data["indomain"].get(name)) is not None:
        out["indomain"] = 100 * ind["accuracy"]
    for key, entries, total in (("headline_drop", sets.headline, len(sets.headline) + len(sets.missing)),
                                ("extended_drop", sets.extended, len(sets.extended))):
        avg = _average([d for e in entries if (d := _drop(data, name, e)) is not None], total)
        out[key] = None if avg is None else avg["diff"]
    drift = data["drift"].get(name) or {}
    out["drift_responses"] = (drift.get("responses") or {}).get("kl")
    out["drift_benchmarks"] = (drift.get("benchmarks_all") or {}).get("kl")
    return out


def _seed_cell(d: dict | None, key: str, value: str) -> str:
    if d is None:
        return "-"
    center = d[key]
    text = format(center, value)
    return text if d["low"] is None else f"{text} [{format(d['low'], value)}, {format(d['high'], value)}]"


def _seed_tables(data: dict) -> dict[str, list[list[str]]]:
    """With run.seeds: per method the mean over its seeds with the between-seed interval, and
    each method against sft on those means."""
    from s3ft_jax.evaluation.seeds import METRICS, against, over_seeds

    if not data["seeds"]:
        return {}
    units = {m: [unit_summary(data, n) for n in names] for m, names in data["seeds"].items()}
    formats = {"indomain": ".1f", "headline_drop": "+.1f", "extended_drop": "+.1f", "drift_responses": ".3g", "drift_benchmarks": ".3g"}
    rows = [["method", "seeds", *SEED_COLUMNS]]
    for m, summary in over_seeds(units).items():
        done = sum(u["indomain"] is not None for u in units[m])  # a seed still training has no numbers yet
        rows.append([m, str(done) if done == len(units[m]) else f"{done} of {len(units[m])}",
                     *(_seed_cell(summary[k], "mean", formats[k]) for k in METRICS)])
    out = {OVER_SEEDS: rows}
    if compared := against(units, "sft"):
        rows = [["method", *SEED_COLUMNS]]
        for m, c in compared.items():
            rows.append([f"{m} - sft", *(_seed_cell(c[k], "diff", "+" + formats[k].lstrip("+")) for k in METRICS)])
        out[AGAINST_SFT_SEEDS] = rows
    return out


def _seed_notes(data: dict) -> dict[str, list[str]]:
    from s3ft_jax.evaluation.seeds import against

    if not data["seeds"]:
        return {}
    units = {m: [unit_summary(data, n) for n in names] for m, names in data["seeds"].items()}
    out = {OVER_SEEDS: ["Each seed trains the method again on the same D' (run.seeds); the interval is Student's t over "
                        "the seeds, so it covers what another training run would change, which the per-question "
                        "intervals of the tables above (one row per seed) leave out. Drift in nats per token."]}
    lines = []
    for m, c in against(units, "sft").items():
        beyond = [k for k, d in c.items() if d is not None and d["low"] is not None and not within_noise(d["low"], d["high"])]
        named = dict(zip(("indomain", "headline_drop", "extended_drop", "drift_responses", "drift_benchmarks"), SEED_COLUMNS))
        lines.append(f"{m} against sft over seeds: " + (", ".join(f"{named[k]} {c[k]['diff']:+.3g}" for k in beyond)
                                                       + " beyond the seed spread" if beyond else
                                                       "no difference beyond the seed spread") + ".")
    if lines:
        out[AGAINST_SFT_SEEDS] = lines
    return out
