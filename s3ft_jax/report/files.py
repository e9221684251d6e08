"""What a run directory holds, read for the report: D' stats, evaluations (one row per
training: with run.seeds, one per seed), per-question scores, drift, losses, timings, the judge
audit and the headline set the run recorded."""

from __future__ import annotations

import json
from pathlib import Path

from s3ft_jax.errors import S3FTError
from s3ft_jax.evaluation.headline import (GROUPS, METRICS, PAPER_HEADLINE, group_metrics, group_questions, parse_headline,
                                         split)
from s3ft_jax.io import read_jsonl


HEADLINE_FILE = "headline.json"


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
