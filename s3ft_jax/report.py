"""The run report: D' mix, in-domain accuracy, generalization and its drop from base, plots.

Reads only files in the run directory, so it can be regenerated at any time
(`s3ft report --config.workdir=...`) and never needs a model.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from s3ft_jax import distributed
from s3ft_jax.s3ft.stages import atomic_write_text

# The benchmark's headline metric, as papers and the Open LLM Leaderboard report them.
HEADLINE = {"hellaswag": "acc_norm", "arc_challenge": "acc_norm", "arc_easy": "acc_norm", "truthfulqa_mc2": "acc"}
SOURCES = ("own", "paraphrase", "gold")


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def collect(workdir: Path, methods: list[str]) -> dict:
    data = {"methods": methods, "mix": {}, "indomain": {}, "generalization": {}, "loss": {}, "timings": _read(workdir / "timings.json") or {}}
    for m in methods:
        if (stats := _read(workdir / m / "stats.json")) is not None:
            data["mix"][m] = stats
        if (ind := _read(workdir / m / "eval" / "indomain.json")) is not None:
            data["indomain"][m] = ind
        if (gen := _read(workdir / m / "eval" / "generalization.json")) is not None:
            data["generalization"][m] = gen
        metrics = workdir / m / "train" / "metrics.jsonl"
        if metrics.is_file():
            rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            data["loss"][m] = [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]
    logprobs = _read(workdir / "logprobs.json")
    data["logprobs"] = logprobs and logprobs.get("sources")
    return data


def _score(metrics: dict, name: str) -> float | None:
    key = HEADLINE.get(name, "acc")
    value = metrics.get(key, metrics.get("acc"))
    return None if value is None else 100 * value


def tables(data: dict) -> dict[str, list[list[str]]]:
    methods = data["methods"]
    out = {}
    if data["mix"]:
        rows = [["method", "examples", "own", "paraphrase", "gold"]]
        for m, s in data["mix"].items():
            rows.append([m, str(s["examples"]), *(f"{s['counts'][k]} ({100 * s['share'][k]:.1f}%)" for k in SOURCES)])
        out["Training targets (D' mix)"] = rows
    if data["indomain"]:
        first = next(iter(data["indomain"].values()))
        extra = [k for k in ("exact_match", "f1") if k in first]
        rows = [["method", "task", "examples", "accuracy", *extra]]
        for m in methods:
            if m in data["indomain"]:
                d = data["indomain"][m]
                rows.append([m, d["task"], str(d["examples"]), f"{100 * d['accuracy']:.1f}", *(f"{100 * d[k]:.1f}" for k in extra)])
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
            valid = [s for s in scores if s is not None]
            rows.append([m, *(_fmt(s) for s in scores), _fmt(sum(valid) / len(valid) if valid else None)])
            if base is not None and m != "base":
                d = [None if s is None or n not in base else _score(base[n], n) - s for s, n in zip(scores, names)]
                dv = [x for x in d if x is not None]
                drops.append([m, *(_fmt(x) for x in d), _fmt(sum(dv) / len(dv) if dv else None)])
        out["Generalization (%)"] = rows
        if len(drops) > 1:
            out["Drop from base (points; positive = worse than base)"] = drops
    if data.get("logprobs"):
        rows = [["target", "examples", "mean log p", "median", "mean per token"]]
        for k in SOURCES:
            s = data["logprobs"].get(k) or {}
            if s.get("count"):
                rows.append([k, str(s["count"]), _fmt(s["mean"]), _fmt(s["median"]), f"{s['mean_per_token']:.3f}"])
        out["log p(target | prompt) under the base model"] = rows
    if data["timings"]:
        rows = [["stage", "seconds"]] + [[k, f"{v:.1f}"] for k, v in data["timings"].items()]
        rows.append(["total", f"{sum(data['timings'].values()):.1f}"])
        out["Wall time per stage"] = rows
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
        ax.bar(methods, [100 * data["indomain"][m]["accuracy"] for m in methods], color="tab:blue")
        ax.set_ylabel("in-domain accuracy (%)")
        save(fig, "accuracy.png")
    base = data["generalization"].get("base")
    others = [m for m in data["methods"] if m != "base" and m in data["generalization"]]
    if base and others:
        names = list(base)
        fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names)), 3.4), dpi=120)
        width = 0.8 / len(others)
        for i, m in enumerate(others):
            drops = [(_score(base[n], n) - _score(data["generalization"][m][n], n)) if n in data["generalization"][m] else 0 for n in names]
            ax.bar([x + i * width for x in range(len(names))], drops, width, label=m)
        ax.set_xticks([x + width * (len(others) - 1) / 2 for x in range(len(names))], names, rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel("drop from base (points)")
        ax.legend(frameon=False, fontsize=8)
        save(fig, "generalization_drop.png")
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
    for title, rows in named.items():
        md += [f"## {title}", "", markdown_table(rows), ""]
    for image in images:
        md += [f"![{image}]({image})", ""]
    atomic_write_text(workdir / "report.md", "\n".join(md))
    body = [f"<h1>S3FT run report</h1><p>Run directory: <code>{html.escape(str(workdir))}</code></p>"]
    for title, rows in named.items():
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        body.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{cells}</table>")
    body += [f'<p><img src="{html.escape(i)}" alt="{html.escape(i)}"></p>' for i in images]
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    atomic_write_text(workdir / "report.html", f"<!doctype html><html><head><meta charset='utf-8'><title>S3FT report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return workdir / "report.md"


def print_tables(workdir: Path, methods: list[str]) -> str:
    named = tables(collect(Path(workdir), methods))
    return "\n\n".join(f"{title}\n{text_table(rows)}" for title, rows in named.items())
