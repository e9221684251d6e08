"""The run report: D' mix, in-domain accuracy, generalization and its drop from base, drift
from base, plots.

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
from s3ft_jax.evaluation.intervals import Z95, mean_stderr, paired_difference, ratio_mean, wilson_interval, within_noise
from s3ft_jax.io import read_jsonl
from s3ft_jax.s3ft.stages import atomic_write_text

# The benchmark's headline metric, as papers and the Open LLM Leaderboard report them.
HEADLINE = {"hellaswag": "acc_norm", "arc_challenge": "acc_norm", "arc_easy": "acc_norm", "truthfulqa_mc2": "acc"}
SOURCES = ("own", "paraphrase", "gold")
COMPARISON = "Against sft (paired differences [95% interval]; drift in nats per token)"
SEED_CAVEAT = ("These intervals cover the questions and texts, for these trained models; they leave out "
               "the variation between training runs, which can be as large (another seed: docs/results.md).")


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def collect(workdir: Path, methods: list[str]) -> dict:
    data = {"methods": methods, "mix": {}, "indomain": {}, "generalization": {}, "loss": {}, "drift": {}, "questions": {},
            "timings": _read(workdir / "timings.json") or {}}
    for m in methods:
        if (stats := _read(workdir / m / "stats.json")) is not None:
            data["mix"][m] = stats
        if (ind := _read(workdir / m / "eval" / "indomain.json")) is not None:
            data["indomain"][m] = ind
        if (gen := _read(workdir / m / "eval" / "generalization.json")) is not None:
            data["generalization"][m] = gen
        if (drift := _read(workdir / m / "eval" / "drift.json")) is not None:
            data["drift"][m] = drift
        data["questions"][m] = _per_question(workdir / m / "eval", gen or {}, (ind or {}).get("examples"))
        metrics = workdir / m / "train" / "metrics.jsonl"
        if metrics.is_file():
            rows = _jsonl(metrics)
            data["loss"][m] = [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]
    logprobs = _read(workdir / "logprobs.json")
    data["logprobs"] = logprobs and logprobs.get("sources")
    data["judge_audit"] = _read(workdir / "build" / "judge_audit.json") or _read(workdir / "judge_audit.json")
    return data


def _jsonl(path: Path) -> list[dict]:
    """A run's file, or nothing when it is missing or unreadable: the report shows what is there."""
    try:
        return read_jsonl(path)
    except S3FTError:
        return []


def _per_question(eval_dir: Path, generalization: dict, examples: int | None) -> dict[str, dict]:
    """{"indomain" or benchmark: {question id: score}}: what paired intervals pair up. The
    verdict file lists this evaluation's questions first, then any kept from a run with a
    larger eval.limit: only the first `examples` count."""
    verdicts = _jsonl(eval_dir / "judge_predict.jsonl")[: examples or 0]
    out = {"indomain": {r["id"]: float(r["correct"]) for r in verdicts}}
    for name in generalization:
        key = HEADLINE.get(name, "acc")
        out[name] = {str(r["id"]): float(r.get(key, r.get("acc"))) for r in _jsonl(eval_dir / "records" / f"{name}.jsonl")}
    return out


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


def _score(metrics: dict, name: str) -> float | None:
    key = HEADLINE.get(name, "acc")
    value = metrics.get(key, metrics.get("acc"))
    return None if value is None else 100 * value


def _stderr(metrics: dict, name: str) -> float | None:
    key = HEADLINE.get(name, "acc")
    value = metrics.get(f"{key}_stderr", metrics.get("acc_stderr"))
    return None if value is None else 100 * value


def _drop(data: dict, method: str, name: str) -> dict | None:
    """Drop from base on one benchmark (positive = worse): paired over its questions when the
    per-question records are there, else the difference of the two scores alone."""
    paired = _paired(data, method, name, sign=-1)
    if paired is not None:
        return paired
    base, gen = data["generalization"].get("base", {}), data["generalization"].get(method, {})
    if name in base and name in gen and _score(base[name], name) is not None and _score(gen[name], name) is not None:
        return {"diff": _score(base[name], name) - _score(gen[name], name), "stderr": None, "low": None, "high": None}
    return None


def _average(drops: list[dict]) -> dict | None:
    """Mean drop over benchmarks; disjoint question sets, so the variances add."""
    if not drops:
        return None
    mean = sum(d["diff"] for d in drops) / len(drops)
    if any(d["stderr"] is None for d in drops):
        return {"diff": mean, "stderr": None, "low": None, "high": None}
    se = sum(d["stderr"] ** 2 for d in drops) ** 0.5 / len(drops)
    return {"diff": mean, "stderr": se, "low": mean - Z95 * se, "high": mean + Z95 * se}


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
    """{method: {"indomain", "drop", "drift_responses", "drift_benchmarks": paired difference
    against `reference`}} for every other trained method: the paper's question is not whether
    s3ft moved from base but whether it moved less than sft. Accuracy in points (method -
    reference), the average drop's difference in points (positive = method drops more), drift
    in nats per token (positive = method drifted more)."""
    if reference not in data["methods"]:
        return {}
    names = list(data["generalization"].get("base", {}))
    out = {}
    for m in data["methods"]:
        if m in ("base", reference):
            continue
        drops = [d for n in names if (d := _between(data, reference, m, n)) is not None]
        out[m] = {"indomain": _between(data, m, reference, "indomain"), "drop": _average(drops) if drops else None,
                  "drift_responses": _drift_between(data, m, reference, "responses"),
                  "drift_benchmarks": _drift_between(data, m, reference, "benchmarks_all")}
    return out


def _compare_notes(compared: dict, reference: str) -> list[str]:
    lines = []
    for m, c in compared.items():
        parts = []
        for key, what, worse in (("indomain", "in-domain accuracy", "lower"), ("drop", "average drop", "larger"),
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
        names = list(next(iter(data["generalization"].values())))
        base = data["generalization"].get("base")
        header = ["method", *(f"{n} ({HEADLINE.get(n, 'acc')})" for n in names), "average"]
        rows = [header]
        drops = [["method", *names, "average drop"]]
        for m in methods:
            gen = data["generalization"].get(m)
            if gen is None:
                continue
            scores = [_score(gen[n], n) if n in gen else None for n in names]
            valid = [x for x in scores if x is not None]
            rows.append([m, *(_pm(x, _stderr(gen[n], n) if n in gen else None) for x, n in zip(scores, names)),
                         _fmt(sum(valid) / len(valid) if valid else None)])
            if base is not None and m != "base":
                d = [_drop(data, m, n) for n in names]
                drops.append([m, *(_interval(x) for x in d), _interval(_average([x for x in d if x is not None]))])
        out["Generalization (%) ± stderr"] = rows
        if len(drops) > 1:
            out["Drop from base (points [paired 95% interval]; positive = worse than base)"] = drops
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
        rows = [["method", "in-domain accuracy (points)", "average drop (points)", "drift on base's responses",
                 "drift on benchmark texts"]]
        for m, c in compared.items():
            rows.append([f"{m} - sft", _interval(c["indomain"]), _interval(c["drop"]),
                         _interval(c["drift_responses"], "+.3g", "+.2g"), _interval(c["drift_benchmarks"], "+.3g", "+.2g")])
        out[COMPARISON] = rows
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
    split = f", {audit['split']} split" if audit.get("split") else ""
    return {f"Judge audit: {audit['task']} ({audit['judge']} judge{mode}{split})": rows}


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
    lines = []
    names = list(data["generalization"].get("base", {}))
    for m in methods:
        if m not in data["generalization"]:
            continue
        drops = {n: _drop(data, m, n) for n in names}
        real = [f"{n} ({d['diff']:+.1f})" for n, d in drops.items() if d is not None and not within_noise(d["low"], d["high"])]
        avg = _average([d for d in drops.values() if d is not None])
        if real:
            lines.append(f"{m}: drops outside noise on {', '.join(real)}; every other drop is within noise.")
        else:
            lines.append(f"{m}: every drop from base is within noise (each 95% interval includes 0).")
        if avg is not None and avg["low"] is not None:
            lines[-1] += f" Average drop {_interval(avg)}" + (", within noise." if within_noise(avg["low"], avg["high"]) else ".")
    if lines:
        out["Drop from base (points [paired 95% interval]; positive = worse than base)"] = lines
    if data["drift"]:
        out["Drift from base: mean per-token KL(base || method), nats ± stderr"] = [
            "KL(base || method) per token: how much more the fine-tuned model is surprised by what the base model "
            "would say. 0 means unchanged; the paper's claim is that s3ft stays closer to base than sft."]
    if lines := _compare_notes(comparisons(data), "sft"):
        out[COMPARISON] = lines
    return out


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
    import matplotlib

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
    if base and others:
        names = list(base)
        fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names)), 3.4), dpi=120)
        width = 0.8 / len(others)
        for i, m in enumerate(others):
            drops = [_drop(data, m, n) for n in names]
            half = [Z95 * d["stderr"] if d and d["stderr"] is not None else 0 for d in drops]
            ax.bar([x + i * width for x in range(len(names))], [d["diff"] if d else 0 for d in drops], width, label=m, yerr=half, capsize=2)
        ax.set_xticks([x + width * (len(others) - 1) / 2 for x in range(len(names))], names, rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
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


def write_report(workdir: Path, methods: list[str]) -> Path:
    workdir = Path(workdir)
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
