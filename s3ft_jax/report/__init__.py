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

The package: files.py reads the run directory, numbers.py computes the paired differences and
averages, cells.py formats them, tables.py (with seeds.py and audit.py) makes the tables and
their notes, plots.py the figures; this module writes report.md and report.html.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from s3ft_jax.evaluation.headline import parse_headline
from s3ft_jax.report.audit import judge_audit_tables
from s3ft_jax.report.cells import comparison_title, markdown_table, text_table
from s3ft_jax.report.files import HEADLINE_FILE, collect, recorded_headline
from s3ft_jax.report.numbers import comparisons
from s3ft_jax.report.plots import plots
from s3ft_jax.report.seeds import AGAINST_SFT_SEEDS, OVER_SEEDS
from s3ft_jax.report.tables import SEED_CAVEAT, notes, tables
from s3ft_jax.s3ft.stages import atomic_write_text

__all__ = ["AGAINST_SFT_SEEDS", "HEADLINE_FILE", "OVER_SEEDS", "SEED_CAVEAT", "collect", "comparison_title", "comparisons",
           "judge_audit_tables", "markdown_table", "notes", "plots", "print_tables", "recorded_headline", "tables",
           "text_table", "write_report"]


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
