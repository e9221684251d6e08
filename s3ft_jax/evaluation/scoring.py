"""Multiple-choice metrics, computed as lm-evaluation-harness (v0.4) computes them.

Per question, from each choice's summed log-likelihood `ll[i]`:

* acc: 1 if argmax(ll) is the gold index (ties go to the first choice, as `np.argmax`).
* acc_norm: the same with ll[i] / len(choice_i), the length in *characters* of the choice
  string without the leading space (`ConfigurableTask.process_results`:
  `completion_len = [float(len(i)) for i in choices]`). For Winogrande the "choices" are the
  option-filled contexts; the harness reports only acc there (and for BoolQ, MMLU, TruthfulQA).
* truthfulqa_mc1: acc (the true answer is choice 0).
* truthfulqa_mc2: acc = sum of softmax(ll) over the true answers (`process_results_mc2`).

A task's score is the mean over its questions, its stderr the harness's `mean_stderr`. The
`mmlu` group is the mean over all questions (the harness aggregates subjects and categories
weighted by size), its stderr the harness's pooled stderr over the 57 subject tasks.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from flax import nnx

from s3ft_jax.evaluation.benchmarks import HARNESS_METRICS, MMLU_SUBJECT_CATEGORY, TASKS, MCItem, load_task
from s3ft_jax.evaluation.intervals import mean_stderr
from s3ft_jax.evaluation.loglikelihood import DEFAULT_BATCH_TOKENS, loglikelihoods

log = logging.getLogger("s3ft_jax")



def score_item(item: MCItem, results: Sequence[tuple[float, bool]]) -> dict:
    """The per-question record: log-likelihoods, predictions and metrics."""
    lls = np.asarray([ll for ll, _ in results], np.float64)
    greedy = [bool(g) for _, g in results]
    record = {
        "id": item.id,
        "task": item.task,
        **({"subtask": item.subtask} if item.subtask else {}),
        "gold": item.gold,
        "loglikelihoods": lls.tolist(),
        "is_greedy": greedy,
    }
    if isinstance(item.gold, list):  # MC2
        labels = np.asarray(item.gold)
        probs = np.exp(lls)
        probs = probs / probs.sum()
        record["acc"] = float(probs[labels == 1].sum())
        return record
    lengths = np.asarray([float(len(c)) for c in item.choice_strings()])
    pred, pred_norm = int(np.argmax(lls)), int(np.argmax(lls / lengths))
    record.update(pred=pred, pred_norm=pred_norm, acc=float(pred == item.gold), acc_norm=float(pred_norm == item.gold))
    return record


def pooled_stderr(stderrs: Sequence[float | None], sizes: Sequence[int]) -> float | None:
    """lm-eval's `pooled_sample_stderr` (group stderr, subtasks weighted by size)."""
    if any(s is None for s in stderrs) or sum(sizes) <= len(sizes):
        return None
    var = sum((n - 1) * s**2 * n for n, s in zip(sizes, stderrs)) / (sum(sizes) - len(sizes))  # type: ignore[operator]
    return math.sqrt(var / sum(sizes))


def aggregate(task: str, records: Sequence[dict]) -> dict:
    """Task metrics from per-question records: mean, stderr and n (MMLU adds breakdowns)."""
    metrics: dict = {"n": len(records)}
    names = ("acc",) if task == "truthfulqa_mc2" else ("acc", "acc_norm")
    for name in names:
        values = [r[name] for r in records]
        metrics[name] = float(np.mean(values)) if values else float("nan")
        metrics[f"{name}_stderr"] = mean_stderr(values)
    if task in ("mmlu", "mmlu_5shot") and records:
        by_subject: dict[str, list[float]] = {}
        for r in records:
            by_subject.setdefault(r["subtask"].removeprefix("mmlu_"), []).append(r["acc"])
        subjects = {s: {"acc": float(np.mean(v)), "acc_stderr": mean_stderr(v), "n": len(v)} for s, v in sorted(by_subject.items())}
        categories = {}
        for cat in sorted({MMLU_SUBJECT_CATEGORY[s] for s in subjects}):
            members = [subjects[s] for s in subjects if MMLU_SUBJECT_CATEGORY[s] == cat]
            sizes = [m["n"] for m in members]
            categories[cat] = {
                "acc": sum(m["acc"] * m["n"] for m in members) / sum(sizes),
                "acc_stderr": pooled_stderr([m["acc_stderr"] for m in members], sizes),
                "n": sum(sizes),
            }
        subs = list(subjects.values())
        metrics["acc_stderr"] = pooled_stderr([m["acc_stderr"] for m in subs], [m["n"] for m in subs])
        metrics["categories"] = categories
        metrics["subjects"] = subjects
    return metrics


def evaluate_mc(
    model: nnx.Module,
    tokenizer,
    task: str,
    items: Sequence[MCItem],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    progress: bool = False,
) -> dict:
    """Score `items` of one task. Returns {"metrics": {...}, "records": [per-question dicts]}."""
    requests: list[tuple[str, str]] = []
    spans = []
    for item in items:
        reqs = item.requests()
        spans.append((len(requests), len(requests) + len(reqs)))
        requests.extend(reqs)
    start = time.perf_counter()
    results = loglikelihoods(model, tokenizer, requests, batch_size=batch_size, max_length=max_length, batch_tokens=batch_tokens,
                              progress=task if progress else None)
    records = [score_item(item, results[a:b]) for item, (a, b) in zip(items, spans)]
    metrics = aggregate(task, records)
    metrics["seconds"] = round(time.perf_counter() - start, 3)
    log.info("%s: %s over %d questions (%d requests)", task, _summary(metrics), len(items), len(requests))
    return {"metrics": metrics, "records": records}


def _summary(metrics: Mapping) -> str:
    return " ".join(f"{k}={metrics[k]:.4f}" for k in ("acc", "acc_norm") if k in metrics)


def run_generalization(
    model: nnx.Module,
    tokenizer,
    data_dir: str | Path,
    tasks: Sequence[str] = TASKS,
    limits: Mapping[str, int | None] | None = None,
    *,
    mmlu_per_subject: int | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    records_dir: str | Path | None = None,
    return_records: bool = False,
    progress: bool = False,
) -> dict[str, dict]:
    """Evaluate several benchmarks; returns {task: metrics}.

    `limits[task]` keeps a task's first N questions; `mmlu_per_subject=k` keeps the first k
    questions of every MMLU subject. With `records_dir`, process 0 writes each task's
    per-question records to `{records_dir}/{task}.jsonl`; with `return_records`, each
    task's metrics also carry them under "records".
    """
    import jax

    limits = dict(limits or {})
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(TASKS)}")
    out: dict[str, dict] = {}
    for task in tasks:
        items = load_task(data_dir, task, limit=limits.get(task), mmlu_per_subject=mmlu_per_subject)
        result = evaluate_mc(model, tokenizer, task, items, batch_size=batch_size, max_length=max_length, batch_tokens=batch_tokens,
                             progress=progress)
        out[task] = dict(result["metrics"])
        if return_records:
            out[task]["records"] = result["records"]
        if records_dir is not None and jax.process_index() == 0:
            path = Path(records_dir)
            path.mkdir(parents=True, exist_ok=True)
            with open(path / f"{task}.jsonl", "w", encoding="utf-8") as f:
                for record in result["records"]:
                    f.write(json.dumps(record) + "\n")
    return out


__all__ = ["HARNESS_METRICS", "aggregate", "evaluate_mc", "mean_stderr", "run_generalization", "score_item"]
