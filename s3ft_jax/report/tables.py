"""The report's tables and the sentences under them: D' mix, in-domain accuracy, generalization
(headline and extended sets), drift, methods against sft, over seeds, the judge audit, wall time."""

from __future__ import annotations


from s3ft_jax.evaluation.headline import GROUPS, Sets, split_entry
from s3ft_jax.evaluation.intervals import mean_stderr, wilson_interval, within_noise
from s3ft_jax.report.audit import judge_audit_tables
from s3ft_jax.report.cells import (_average_cell, _fmt, _interval, _label, _of, _pm, _sci, _sections, _titles,
                                   comparison_title)
from s3ft_jax.report.numbers import _average, _drop, _paired, _score, _stderr, comparisons
from s3ft_jax.report.seeds import _seed_notes, _seed_tables


SOURCES = ("own", "paraphrase", "gold")
# The headline set the run used (eval.headline), kept in the run directory for `s3ft report`.


SEED_CAVEAT = ("These intervals cover the questions and texts, for these trained models; they leave out "
               "the variation between training runs, which can be as large (another seed: docs/results.md).")


def _compare_notes(compared: dict, reference: str) -> list[str]:
    lines = []
    for m, c in compared.items():
        parts = []
        for key, what, worse in (("indomain", "in-domain accuracy", "lower"), ("headline_drop", "headline average drop", "larger"),
                                 ("extended_drop", "extended average drop", "larger"),
                                 ("drift_responses", "drift on base's responses", "larger"),
                                 ("drift_benchmarks", "drift on benchmark texts", "larger")):
            d = c.get(key)
            if d is None:
                continue
            if within_noise(d["low"], d["high"]):
                parts.append(f"{what}: no difference beyond noise")
            else:
                higher = d["diff"] > 0
                word = ("higher" if higher else "lower") if key == "indomain" else ("larger" if higher else "smaller")
                parts.append(f"{what}: {word} than {reference}'s" + (" (worse)" if word == worse else " (better)"))
        if parts:
            lines.append(f"{m} against {reference}, paired on the same questions and texts: " + "; ".join(parts) + ".")
    if lines:  # else a reader takes these intervals for the whole uncertainty (docs/results.md)
        lines.append(SEED_CAVEAT)
    return lines


def tables(data: dict) -> dict[str, list[list[str]]]:
    methods = data["methods"]
    out = {}
    if data["mix"]:
        rows = [["method", "examples", "own", "paraphrase", "gold", "paraphrases dropping the solution"]]
        for m, s in data["mix"].items():
            rows.append([m, str(s["examples"]), *(f"{s['counts'][k]} ({100 * s['share'][k]:.1f}%)" for k in SOURCES),
                         str(s.get("paraphrase_dropped_solution", "-"))])
        out["Training targets (D' mix)"] = rows
        quality = [["method", "target", "examples", "mean tokens", "mean log p", "mean log p per token"]]
        for m, s in data["mix"].items():
            for k in SOURCES:
                t = (s.get("targets") or {}).get(k) or {}
                if t.get("count"):
                    quality.append([m, k, str(t["count"]), f"{t['mean_tokens']:.1f}", _fmt(t["mean"]), f"{t['mean_per_token']:.3f}"])
        if len(quality) > 1:
            out["Training targets: length and log p under the base model"] = quality
    if data["indomain"]:
        first = next(iter(data["indomain"].values()))
        extra = [k for k in ("exact_match", "f1") if k in first]
        rows = [["method", "task", "examples", "accuracy ± stderr", "95% interval", "change from base [95%]", *extra]]
        for m in methods:
            if m in data["indomain"]:
                d = data["indomain"][m]
                n, acc = d["examples"], d["accuracy"]
                lo, hi = wilson_interval(acc * n, n) or (None, None)
                se = mean_stderr([1.0] * round(acc * n) + [0.0] * (n - round(acc * n)))
                change = _interval(_paired(data, m, "indomain", sign=1)) if m != "base" else ""
                rows.append([m, d["task"], str(n), _pm(100 * acc, None if se is None else 100 * se),
                             f"{100 * lo:.1f}-{100 * hi:.1f}" if lo is not None else "-", change,
                             *(f"{100 * d[k]:.1f}" for k in extra)])
        out["In-domain accuracy (%)"] = rows
    if data["generalization"]:
        out |= _generalization_tables(data)
    if data["drift"]:
        names = list(next(iter(data["drift"].values())).get("benchmarks", {}))
        rows = [["method", "base's test responses", *names, "all benchmarks"]]
        for m in methods:
            if m in data["drift"]:
                d = data["drift"][m]
                cells = [d.get("responses"), *(d["benchmarks"].get(n) for n in names), d.get("benchmarks_all")]
                rows.append([m, *(_sci(c and c["kl"], c and c["stderr"]) for c in cells)])
        out["Drift from base: mean per-token KL(base || method), nats ± stderr"] = rows
    if compared := comparisons(data):
        rows = [["method", "in-domain accuracy (points)", "headline average drop (points)", "extended average drop (points)",
                 "drift on base's responses", "drift on benchmark texts"]]
        for m, c in compared.items():
            rows.append([f"{m} - sft", _interval(c["indomain"]), _average_cell(c["headline_drop"]), _average_cell(c["extended_drop"]),
                         _interval(c["drift_responses"], "+.3g", "+.2g"), _interval(c["drift_benchmarks"], "+.3g", "+.2g")])
        out[comparison_title(data["sets"])] = rows
    out |= _seed_tables(data)
    if data.get("logprobs"):
        rows = [["target", "examples", "mean log p", "median", "mean per token", "mean tokens"]]
        for k in SOURCES:
            s = data["logprobs"].get(k) or {}
            if s.get("count"):
                tokens = s.get("mean_tokens")
                rows.append([k, str(s["count"]), _fmt(s["mean"]), _fmt(s["median"]), f"{s['mean_per_token']:.3f}",
                             "-" if tokens is None else f"{tokens:.1f}"])
        out["log p(target | prompt) under the base model"] = rows
    out.update(judge_audit_tables(data.get("judge_audit")))
    if data["timings"]:
        rows = [["stage", "seconds"]] + [[k, f"{v:.1f}"] for k, v in data["timings"].items()]
        rows.append(["total", f"{sum(data['timings'].values()):.1f}"])
        out["Wall time per stage"] = rows
    return out


def _generalization_tables(data: dict) -> dict[str, list[list[str]]]:
    """Scores and drops from base, one pair of tables per set (headline, extended): the
    set's entries, their average, then (extended) the metrics shown but not averaged."""
    out = {}
    base = data["generalization"].get("base")
    for which, entries, total, shown in _sections(data["sets"]):
        labels = [*map(_label, entries), *(f"{_label(e)}, not averaged" for e in shown)]
        scores = [["method", *labels[: len(entries)], "average", *labels[len(entries):]]]
        drops = [["method", *labels[: len(entries)], "average drop", *labels[len(entries):]]]
        for m in data["methods"]:
            if (gen := data["generalization"].get(m)) is None:
                continue
            valid = [x for e in entries if (x := _score(gen, e)) is not None]
            cells = {e: _pm(_score(gen, e), _stderr(gen, e)) for e in (*entries, *shown)}
            scores.append([m, *(cells[e] for e in entries), _of(_fmt(sum(valid) / len(valid) if valid else None), len(valid), total),
                           *(cells[e] for e in shown)])
            if base is not None and m != "base":
                d = {e: _drop(data, m, e) for e in (*entries, *shown)}
                drops.append([m, *(_interval(d[e]) for e in entries),
                              _average_cell(_average([d[e] for e in entries if d[e] is not None], total)),
                              *(_interval(d[e]) for e in shown)])
        gen_title, drop_title = _titles(data["sets"], which)
        out[gen_title] = scores
        if len(drops) > 1:
            out[drop_title] = drops
    return out


def _set_notes(sets: Sets, which: str) -> list[str]:
    """What a set's average is, under its scores table."""
    if which == "extended":
        lines = ["One entry per benchmark in each average, with acc: MMLU 0- and 5-shot are one benchmark, "
                 "TruthfulQA mc1 and mc2 one, ARC easy and challenge two. Columns marked \"not averaged\" are the "
                 "other metrics (acc_norm) and variants of a benchmark already counted."]
        if not sets.headline:
            lines.append(f"No benchmark of the headline set ({', '.join(map(_label, sets.missing))}) was evaluated "
                         "(eval.benchmarks): there is no headline average.")
        return lines
    lines = ["The paper's average drop (SFT up to 4.4 points, S3FT 2.5) is over MMLU, TruthfulQA, HellaSwag and "
             "Winogrande with acc, the metric SDFT's evaluation reads (S3FT, arXiv 2502.08130; sail-sg/sdft "
             "eval/eval_general_knowledge.py); eval.headline sets this table's benchmarks."]
    if any(split_entry(e)[0] in GROUPS for e in sets.headline):
        lines.append("truthfulqa (acc): the mean of truthfulqa_mc1's and truthfulqa_mc2's acc per question, "
                     "as lm-eval's truthfulqa group that SDFT's code reads.")
    if sets.missing:
        lines.append(f"Partial: {', '.join(map(_label, sets.missing))} not evaluated (eval.benchmarks), so the "
                     f"headline average covers {len(sets.headline)} of its {len(sets.headline) + len(sets.missing)} benchmarks.")
    return lines


def _drop_notes(data: dict, entries: tuple[str, ...], total: int, shown: tuple[str, ...]) -> list[str]:
    """Per method: which drops are beyond noise, and the set's average drop."""
    lines = []
    for m in data["methods"]:
        if m == "base" or m not in data["generalization"]:
            continue
        drops = {e: _drop(data, m, e) for e in (*entries, *shown)}
        real = [f"{_label(e)} ({d['diff']:+.1f})" for e, d in drops.items() if d is not None and not within_noise(d["low"], d["high"])]
        avg = _average([drops[e] for e in entries if drops[e] is not None], total)
        if real:
            lines.append(f"{m}: drops outside noise on {', '.join(real)}; every other drop is within noise.")
        else:
            lines.append(f"{m}: every drop from base is within noise (each 95% interval includes 0).")
        if avg is not None and avg["low"] is not None:
            lines[-1] += f" Average drop {_average_cell(avg)}" + (", within noise." if within_noise(avg["low"], avg["high"]) else ".")
    return lines


def notes(data: dict) -> dict[str, list[str]]:
    """Sentences under the tables: which changes from base are within noise."""
    out: dict[str, list[str]] = {}
    methods = [m for m in data["methods"] if m != "base"]
    lines = []
    for m in methods:
        d = _paired(data, m, "indomain", sign=1)
        if d is not None:
            verdict = "within noise (the 95% interval includes 0)" if within_noise(d["low"], d["high"]) else (
                "a real gain" if d["diff"] > 0 else "a real loss") + " (the 95% interval excludes 0)"
            lines.append(f"{m}: {d['diff']:+.1f} points against base on the same {d['n']} questions, {verdict}.")
    if lines:
        out["In-domain accuracy (%)"] = lines
    if data["generalization"]:
        for which, entries, total, shown in _sections(data["sets"]):
            gen_title, drop_title = _titles(data["sets"], which)
            out[gen_title] = _set_notes(data["sets"], which)
            if lines := _drop_notes(data, entries, total, shown):
                out[drop_title] = lines
    if data["drift"]:
        out["Drift from base: mean per-token KL(base || method), nats ± stderr"] = [
            "KL(base || method) per token: how much more the fine-tuned model is surprised by what the base model "
            "would say. 0 means unchanged; the paper's claim is that s3ft stays closer to base than sft."]
    if lines := _compare_notes(comparisons(data), "sft"):
        out[comparison_title(data["sets"])] = lines
    return out | _seed_notes(data)
