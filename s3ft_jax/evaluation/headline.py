"""Which benchmarks the report's average drops cover: the headline set (`eval.headline`, by
default the paper's) and the extended set (the other benchmarks evaluated).

The paper's average drop from base (SFT up to 4.4 points, S3FT 2.5; S3FT, arXiv
2502.08130) is over MMLU, TruthfulQA, HellaSwag and Winogrande. Its numbers come from
SDFT's evaluation (sail-sg/sdft, scripts/*/sft.sh: `lm_eval --tasks
mmlu,truthfulqa,ai2_arc,hellaswag,winogrande`), and eval/eval_general_knowledge.py reads
`results[task]["acc,none"]`: `acc` for every benchmark, never acc_norm. For TruthfulQA that
is the `truthfulqa` group of lm-eval 0.4.1-0.4.2 (current when SDFT was published, Feb 2024):
lm_eval/evaluator.py (v0.4.1) averages the group's tasks that have `acc`, truthfulqa_mc1 and truthfulqa_mc2,
weighted by their question counts (both 817: the plain mean). Here that is the entry
`truthfulqa:acc`, made from the two tasks' per-question scores.

An entry is "benchmark:metric": benchmark an `eval.benchmarks` name or `truthfulqa` (the
group: needs truthfulqa_mc1 and truthfulqa_mc2), metric one lm-eval reports for it. Rules:

* One entry per benchmark in each average. mmlu and mmlu_5shot are one benchmark (MMLU, the
  same questions), truthfulqa, truthfulqa_mc1 and truthfulqa_mc2 one (TruthfulQA); arc_easy
  and arc_challenge are two (different questions). So acc and acc_norm of one benchmark
  never both count, and eval.headline naming one benchmark twice is an error.
* A headline entry the run did not evaluate is missing: the headline average is then partial
  and the report says so (the demo and smoke configs evaluate only some benchmarks).
* The extended set: one entry per other benchmark evaluated, with `acc` (what SDFT's code
  reads): MMLU 0-shot if evaluated, else 5-shot; TruthfulQA the group if both tasks were
  evaluated, else the one that was.
* Everything else evaluated (acc_norm, mc1 and mc2 on their own, MMLU 5-shot beside 0-shot)
  is shown beside the extended set, not averaged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from s3ft_jax.errors import ConfigError
from s3ft_jax.evaluation.benchmarks import HARNESS_METRICS, TASKS
from s3ft_jax.evaluation.intervals import mean_stderr

PAPER_HEADLINE = ("mmlu:acc", "truthfulqa:acc", "hellaswag:acc", "winogrande:acc")
# lm-eval groups the report builds from their tasks' per-question scores.
GROUPS = {"truthfulqa": ("truthfulqa_mc1", "truthfulqa_mc2")}
# The benchmark (question set) each name scores; a name not here is its own.
FAMILY = {"mmlu_5shot": "mmlu", "truthfulqa_mc1": "truthfulqa", "truthfulqa_mc2": "truthfulqa"}
NAMES = (*TASKS, *GROUPS)
METRICS = {**HARNESS_METRICS, **{g: ("acc",) for g in GROUPS}}


def family(name: str) -> str:
    return FAMILY.get(name, name)


def split_entry(entry: str) -> tuple[str, str]:
    name, _, metric = entry.partition(":")
    return name, metric


def parse_headline(entries: Iterable[str]) -> tuple[str, ...]:
    """eval.headline checked: known benchmarks and metrics, one entry per benchmark."""
    if isinstance(entries, str):
        raise ConfigError(f"eval.headline must be a tuple of 'benchmark:metric' strings, got {entries!r}")
    entries = tuple(entries)
    if not entries:
        raise ConfigError("eval.headline is empty: name at least one 'benchmark:metric' (default: " + ",".join(PAPER_HEADLINE) + ")")
    seen: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, str) or entry.count(":") != 1:
            raise ConfigError(f"eval.headline entry {entry!r} is not 'benchmark:metric' (e.g. 'hellaswag:acc')")
        name, metric = split_entry(entry)
        if name not in METRICS:
            raise ConfigError(f"unknown benchmark {name!r} in eval.headline: choose from {', '.join(NAMES)}")
        if metric not in METRICS[name]:
            raise ConfigError(f"eval.headline: {name} has no metric {metric!r} (it has {', '.join(METRICS[name])})")
        if family(name) in seen:
            raise ConfigError(f"eval.headline names {family(name)} twice ({seen[family(name)]}, {entry}): one entry per benchmark")
        seen[family(name)] = entry
    return entries


@dataclasses.dataclass(frozen=True)
class Sets:
    """The entries of a run's report, each "benchmark:metric"."""

    headline: tuple[str, ...]  # evaluated, in eval.headline's order: the headline average
    missing: tuple[str, ...]  # in eval.headline but not evaluated: the average is partial
    extended: tuple[str, ...]  # one per other benchmark evaluated: the extended average
    shown: tuple[str, ...]  # every other metric evaluated: shown, never averaged
    paper: bool  # eval.headline is the paper's set


def available(name: str, evaluated: Iterable[str]) -> bool:
    evaluated = set(evaluated)
    return all(t in evaluated for t in GROUPS[name]) if name in GROUPS else name in evaluated


def split(evaluated: Iterable[str], headline: Iterable[str] = PAPER_HEADLINE) -> Sets:
    """The report's sets for a run that evaluated the tasks `evaluated` (names in TASKS)."""
    evaluated = [t for t in dict.fromkeys(evaluated) if t in HARNESS_METRICS]
    headline = parse_headline(headline)
    present = tuple(e for e in headline if available(split_entry(e)[0], evaluated))
    missing = tuple(e for e in headline if e not in present)
    taken = {family(split_entry(e)[0]) for e in headline}
    extended: dict[str, str] = {}
    for task in evaluated:
        fam = family(task)
        if fam in taken or fam in extended:
            continue
        if fam in GROUPS and available(fam, evaluated):
            extended[fam] = f"{fam}:acc"
        elif fam == "mmlu" and "mmlu" in evaluated:
            extended[fam] = "mmlu:acc"
        else:
            extended[fam] = f"{task}:acc"
    averaged = {*present, *extended.values()}
    shown = tuple(f"{t}:{m}" for t in evaluated for m in HARNESS_METRICS[t] if f"{t}:{m}" not in averaged)
    return Sets(present, missing, tuple(extended.values()), shown, headline == PAPER_HEADLINE)


def group_questions(name: str, questions: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{question: the group's score} from its tasks' per-question scores ({"task:acc": {id:
    score}}), on the questions every task answered: TruthfulQA's ids are "task/index"."""
    parts = [{str(q).rsplit("/", 1)[-1]: v for q, v in questions.get(f"{t}:acc", {}).items()} for t in GROUPS[name]]
    if not all(parts):
        return {}
    return {q: sum(p[q] for p in parts) / len(parts) for q in parts[0] if all(q in p for p in parts)}


def group_metrics(name: str, metrics: Mapping[str, Mapping], per_question: Mapping[str, float] | None = None) -> dict | None:
    """The group's acc as lm-eval 0.4.1 aggregates it: its tasks' acc weighted by their
    question counts. The stderr comes from the per-question means when they are there
    (mc1 and mc2 score the same questions, so their errors are not independent)."""
    parts = [metrics.get(t) for t in GROUPS[name]]
    if not all(p and p.get("acc") is not None for p in parts):
        return None
    sizes = [p.get("n") or 1 for p in parts]
    acc = sum(p["acc"] * n for p, n in zip(parts, sizes)) / sum(sizes)
    stderr = mean_stderr(list(per_question.values())) if per_question else None
    return {"n": min(sizes), "acc": acc, "acc_stderr": stderr}


__all__ = ["FAMILY", "GROUPS", "METRICS", "NAMES", "PAPER_HEADLINE", "Sets", "family", "group_metrics", "group_questions",
           "parse_headline", "split", "split_entry"]
