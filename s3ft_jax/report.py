"""The run report: D' mix, in-domain accuracy, generalization and its drop from base, drift
from base, plots.

Generalization has two averages, each with one entry per benchmark (evaluation/headline.py):
the headline set (eval.headline; by default the paper's MMLU, TruthfulQA, HellaSwag and
Winogrande with acc, as SDFT's evaluation reads them), marked partial when the run did not
evaluate all of it, and the extended set, every other benchmark evaluated.

Every accuracy carries its standard error (lm-eval's `mean_stderr`) and every change from base
a paired 95% interval over the questions both models answered (evaluation/intervals.py); the
notes under a table say in words which changes are within noise. Reads only files in the run
directory, so it can be regenerated at any time (`s3ft report --config.workdir=...`) and never
needs a model.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from s3ft_jax import distributed
from s3ft_jax.errors import S3FTError
from s3ft_jax.evaluation.headline import (GROUPS, METRICS, PAPER_HEADLINE, Sets, group_metrics, group_questions, parse_headline,
                                         split, split_entry)
from s3ft_jax.evaluation.intervals import Z95, mean_stderr, paired_difference, ratio_mean, wilson_interval, within_noise
from s3ft_jax.io import read_jsonl
from s3ft_jax.s3ft.stages import atomic_write_text

SOURCES = ("own", "paraphrase", "gold")
# The headline set the run used (eval.headline), kept in the run directory for `s3ft report`.
HEADLINE_FILE = "headline.json"
GENERALIZATION = "Generalization (%) ± stderr"
DROP = "Drop from base"
INTERVAL = "(points [paired 95% interval]; positive = worse than base)"
SEED_CAVEAT = ("These intervals cover the questions and texts, for these trained models; they leave out "
               "the variation between training runs, which can be as large (another seed: docs/results.md).")


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def collect(workdir: Path, methods: list[str], headline: tuple[str, ...] | None = None) -> dict:
    """The run's files; `headline` (eval.headline) defaults to the one the run recorded."""
    data = {"methods": methods, "mix": {}, "indomain": {}, "generalization": {}, "loss": {}, "drift": {}, "questions": {},
            "timings": _read(workdir / "timings.json") or {}}
    evaluated: list[str] = []
    data["seeds"] = {}  # method -> its training units' names, for runs with run.seeds
    units = []
    for m in methods:
        if (stats := _read(workdir / m / "stats.json")) is not None:
            data["mix"][m] = stats
        for name, unit in _units(workdir, m):
            units.append(name)
            if name != m:
                data["seeds"].setdefault(m, []).append(name)
            if (ind := _read(unit / "eval" / "indomain.json")) is not None:
                data["indomain"][name] = ind
            gen = _read(unit / "eval" / "generalization.json")
            data["questions"][name] = _per_question(unit / "eval", gen or {}, (ind or {}).get("examples"))
            if gen is not None:
                evaluated += gen
                data["generalization"][name] = _with_groups(gen, data["questions"][name])
            if (drift := _read(unit / "eval" / "drift.json")) is not None:
                data["drift"][name] = drift
            metrics = unit / "train" / "metrics.jsonl"
            if metrics.is_file():
                rows = _jsonl(metrics)
                data["loss"][name] = [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]
    data["methods"] = units  # with run.seeds, each seed's training is a row of its own
    logprobs = _read(workdir / "logprobs.json")
    data["logprobs"] = logprobs and logprobs.get("sources")
    data["sets"] = split(evaluated, headline or recorded_headline(workdir))
    data["judge_audit"] = _read(workdir / "build" / "judge_audit.json") or _read(workdir / "judge_audit.json")
    return data


def _units(workdir: Path, method: str) -> list[tuple[str, Path]]:
    """A method's trainings as (row name, directory): <method>/seed<k> for each seed a run with
    run.seeds trained ("sft seed 1"), else the method's own directory."""
    seeds = sorted((int(p.name[4:]), p) for p in (workdir / method).glob("seed*") if p.name[4:].isdigit() and p.is_dir())
    return [(f"{method} seed {k}", p) for k, p in seeds] or [(method, workdir / method)]


def recorded_headline(workdir: Path) -> tuple[str, ...]:
    """The run's eval.headline; the paper's set for runs from before it was recorded."""
    recorded = _read(workdir / HEADLINE_FILE)
    return PAPER_HEADLINE if recorded is None else parse_headline(recorded.get("headline", ()))


def _jsonl(path: Path) -> list[dict]:
    """A run's file, or nothing when it is missing or unreadable: the report shows what is there."""
    try:
        return read_jsonl(path)
    except S3FTError:
        return []


def _per_question(eval_dir: Path, generalization: dict, examples: int | None) -> dict[str, dict]:
    """{"indomain" or "benchmark:metric": {question id: score}}: what paired intervals pair
    up. The verdict file lists this evaluation's questions first, then any kept from a run
    with a larger eval.limit: only the first `examples` count."""
    verdicts = _jsonl(eval_dir / "judge_predict.jsonl")[: examples or 0]
    out = {"indomain": {r["id"]: float(r["correct"]) for r in verdicts}}
    for name in generalization:
        records = _jsonl(eval_dir / "records" / f"{name}.jsonl")
        for metric in METRICS.get(name, ("acc",)):
            if scores := {str(r["id"]): float(r[metric]) for r in records if metric in r}:
                out[f"{name}:{metric}"] = scores
    for group in GROUPS:
        if scores := group_questions(group, out):
            out[f"{group}:acc"] = scores
    return out


def _with_groups(generalization: dict, questions: dict) -> dict:
    """The run's scores plus each lm-eval group (truthfulqa) whose tasks it evaluated."""
    groups = {g: m for g in GROUPS if (m := group_metrics(g, generalization, questions.get(f"{g}:acc"))) is not None}
    return {**generalization, **groups}


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


def _pm(value: float | None, stderr: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + ("" if stderr is None else f" ± {stderr:.{digits}f}")


def _sci(value: float | None, stderr: float | None) -> str:
    """Three significant digits: drift after a few LoRA steps can be 1e-5 nats per token."""
    if value is None:
        return "-"
    return f"{value:.3g}" + ("" if stderr is None else f" ± {stderr:.2g}")


def _interval(d: dict | None, value: str = "+.1f", bound: str = "+.1f") -> str:
    """A difference and its 95% interval; drift uses significant digits (value "+.3g")."""
    if d is None:
        return "-"
    if d["low"] is None:
        return format(d["diff"], value)
    return f"{format(d['diff'], value)} [{format(d['low'], bound)}, {format(d['high'], bound)}]"


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


def _of(text: str, k: int, total: int) -> str:
    """An average's cell, marked partial when it covers fewer than its set's entries."""
    return text if text == "-" or k >= total else f"{text} (partial: {k} of {total})"


def _average_cell(avg: dict | None, value: str = "+.1f") -> str:
    return "-" if avg is None else _of(_interval(avg, value), avg["k"], avg["total"])


def _label(entry: str) -> str:
    name, metric = split_entry(entry)
    return f"{name} ({metric})"


def _sections(sets: Sets) -> list[tuple[str, tuple[str, ...], int, tuple[str, ...]]]:
    """(which, averaged entries, the set's size, entries shown but not averaged) per table."""
    out = []
    if sets.headline:
        out.append(("headline", sets.headline, len(sets.headline) + len(sets.missing), ()))
    if sets.extended or sets.shown:
        out.append(("extended", sets.extended, len(sets.extended), sets.shown))
    return out


def _cover(sets: Sets, which: str) -> str:
    """What a set's average covers, for the tables' titles."""
    if which == "extended":
        return "extended: average over " + (", ".join(map(_label, sets.extended)) or "no other benchmark")
    text = "headline: average over " + (", ".join(map(_label, sets.headline)) or "none")
    text += " (the paper's set)" if sets.paper else " (eval.headline)"
    if sets.missing:
        text += f", partial: {', '.join(map(_label, sets.missing))} not evaluated"
    return text


def _titles(sets: Sets, which: str) -> tuple[str, str]:
    cover = _cover(sets, which)
    return f"{GENERALIZATION}, {cover}", f"{DROP}, {cover} {INTERVAL}"


def comparison_title(sets: Sets) -> str:
    covers = "; ".join([*([] if sets.headline else ["headline: none of its benchmarks evaluated"]),
                        *(_cover(sets, w) for w, *_ in _sections(sets))])
    return f"Against sft (paired differences [95% interval]; {covers + '; ' if covers else ''}drift in nats per token)"


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


def judge_audit_tables(audit: dict | None) -> dict[str, list[list[str]]]:
    """The judge audit (judges/audit.py, judge_audit.json): golds judged against themselves,
    perturbed golds (every accept is a false accept), the build's own verdicts, and how each
    group's verdicts were reached; for the LLM judge, its agreement with EM / containment."""
    if not audit:
        return {}

    def pct(rate):
        return "-" if rate is None else f"{100 * rate:.2f}%"

    def routes(how: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in how.items()) or "-"

    gold, bad = audit["gold"], audit["perturbed"]
    rows = [["verdicts on", "n", "accepted", "accepted (%)", "how the verdicts were reached"],
            ["golds (must be accepted)", str(gold["n"]), str(gold["accepted"]), pct(gold["rate"]), routes(gold["how"])],
            [f"perturbed golds: {bad['kind']} (every accept is false)", str(bad["n"]), str(bad["false_accepts"]),
             pct(bad["rate"]), routes(bad["how"])]]
    for stage, b in (audit.get("build") or {}).items():
        rows.append([f"this build's {stage}", str(b["n"]), str(b["accepted"]), pct(b["rate"]), routes(b["how"])])
    if agreement := audit.get("llm_agreement"):
        rows.append(["LLM's verdict agrees with EM / containment", str(agreement["n"]), str(agreement["agree"]),
                     pct(agreement["rate"]), f"(agreements) {agreement['disagreements']} disagreements"
                     + (f" in {agreement['file']}" if agreement.get("file") else "")])
    mode = f", judge.mode={audit['mode']}" if audit["judge"] == "llm" and audit.get("mode") else ""
    where = f", {audit['split']} split" if audit.get("split") else ""
    return {f"Judge audit: {audit['task']} ({audit['judge']} judge{mode}{where})": rows}


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


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def plots(data: dict, workdir: Path) -> list[str]:
    import logging

    import matplotlib

    # Its first use on a machine logs "Matplotlib is building the font cache": no news to a user.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name):
        if distributed.is_writer():  # the others only need the names
            fig.tight_layout()
            tmp = workdir / f".{name}.tmp.png"
            fig.savefig(tmp)
            tmp.replace(workdir / name)
        plt.close(fig)
        made.append(name)

    if data["indomain"]:
        methods = [m for m in data["methods"] if m in data["indomain"]]
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        accs = [100 * data["indomain"][m]["accuracy"] for m in methods]
        bounds = [wilson_interval(data["indomain"][m]["accuracy"] * data["indomain"][m]["examples"], data["indomain"][m]["examples"]) for m in methods]
        yerr = [[a - 100 * lo for a, (lo, _) in zip(accs, bounds)], [100 * hi - a for a, (_, hi) in zip(accs, bounds)]]
        ax.bar(methods, accs, color="tab:blue", yerr=yerr, capsize=3)
        ax.set_ylabel("in-domain accuracy (%, 95% interval)")
        save(fig, "accuracy.png")
    base = data["generalization"].get("base")
    others = [m for m in data["methods"] if m != "base" and m in data["generalization"]]
    if base and others and (sections := [s for s in _sections(data["sets"]) if s[1]]):
        # Per set: its entries, then its average (marked partial as in the tables); the
        # extended set's not-averaged metrics stay in the tables.
        columns = [(which, [*entries, None], total) for which, entries, total, _ in sections]
        labels = [_label(e) if e else _of(f"{which} average", len(cols) - 1, total) for which, cols, total in columns for e in cols]
        fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(labels)), 3.4), dpi=120)
        width = 0.8 / len(others)
        for i, m in enumerate(others):
            drops = []
            for which, cols, total in columns:
                entries = [_drop(data, m, e) for e in cols[:-1]]
                drops += [*entries, _average([d for d in entries if d is not None], total)]
            half = [Z95 * d["stderr"] if d and d["stderr"] is not None else 0 for d in drops]
            ax.bar([x + i * width for x in range(len(labels))], [d["diff"] if d else 0 for d in drops], width, label=m, yerr=half, capsize=2)
        at = 0
        for which, cols, total in columns[:-1]:  # a line between the sets
            at += len(cols)
            ax.axvline(at - 0.5 + width * (len(others) - 1) / 2, color="grey", lw=0.6, ls="--")
        ax.set_xticks([x + width * (len(others) - 1) / 2 for x in range(len(labels))], labels, rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        if data["sets"].missing:
            ax.set_title(f"headline average partial: {', '.join(map(_label, data['sets'].missing))} not evaluated", fontsize=8)
        ax.set_ylabel("drop from base (points, 95%)")
        ax.legend(frameon=False, fontsize=8)
        save(fig, "generalization_drop.png")
    drifted = [m for m in data["methods"] if m in data["drift"]]
    if drifted:
        kinds = [("responses", "base's test responses"), ("benchmarks_all", "benchmark texts")]
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        for i, (key, label) in enumerate(kinds):
            cells = [data["drift"][m].get(key) or {} for m in drifted]
            ax.bar([x + 0.4 * i for x in range(len(drifted))], [c.get("kl") or 0 for c in cells], 0.4, label=label,
                   yerr=[Z95 * (c.get("stderr") or 0) for c in cells], capsize=3)
        ax.set_xticks([x + 0.2 for x in range(len(drifted))], drifted)
        ax.set_ylabel("KL(base || method) per token (nats)")
        ax.legend(frameon=False, fontsize=8)
        save(fig, "drift.png")
    if data["loss"]:
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        for m, points in data["loss"].items():
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=m)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(frameon=False, fontsize=8)
        save(fig, "loss.png")
    if (workdir / "logprobs.png").is_file():
        made.append("logprobs.png")
    return made


def write_report(workdir: Path, methods: list[str], headline: tuple[str, ...] | None = None) -> Path:
    """report.md/.html and the plots. `headline` (eval.headline, from `s3ft run`) is kept in
    the run directory, so that `s3ft report` later averages over the same set."""
    workdir = Path(workdir)
    if headline is not None:
        atomic_write_text(workdir / HEADLINE_FILE, json.dumps({"headline": list(parse_headline(headline))}, indent=1) + "\n")
    data = collect(workdir, methods)
    named = tables(data)
    images = plots(data, workdir)
    md = ["# S3FT run report", "", f"Run directory: `{workdir}`", ""]
    remarks = notes(data)
    for title, rows in named.items():
        md += [f"## {title}", "", markdown_table(rows), ""]
        md += [f"{line}\n" for line in remarks.get(title, [])]
    for image in images:
        md += [f"![{image}]({image})", ""]
    atomic_write_text(workdir / "report.md", "\n".join(md))
    body = [f"<h1>S3FT run report</h1><p>Run directory: <code>{html.escape(str(workdir))}</code></p>"]
    for title, rows in named.items():
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        body.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{cells}</table>")
        body += [f"<p>{html.escape(line)}</p>" for line in remarks.get(title, [])]
    body += [f'<p><img src="{html.escape(i)}" alt="{html.escape(i)}"></p>' for i in images]
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    atomic_write_text(workdir / "report.html", f"<!doctype html><html><head><meta charset='utf-8'><title>S3FT report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return workdir / "report.md"


def print_tables(workdir: Path, methods: list[str]) -> str:
    data = collect(Path(workdir), methods)
    named, remarks = tables(data), notes(data)
    return "\n\n".join("\n".join([title, text_table(rows), *remarks.get(title, [])]) for title, rows in named.items())
