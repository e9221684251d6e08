"""`s3ft run`: every method through the same stages, then one report.

    <workdir>/build/            Algorithm 1's shared stage files (predictions, paraphrases, verdicts)
    <workdir>/<method>/         dataset.jsonl + stats.json (D'), train/ (checkpoints, metrics),
                                eval/ (in-domain predictions and verdicts, benchmark scores)
    <workdir>/logprobs.*        Figure 2 for the s3ft D'
    <workdir>/report.{md,html}  tables and plots

`base` is the untouched model; `sft`, `sdft` and `s3ft` differ only in their D', and train and
evaluate with identical settings. Each stage is fingerprinted and resumable (s3ft/stages.py;
training resumes from its Orbax checkpoints), so rerunning after a crash, or after adding a
method, redoes only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from s3ft_jax.s3ft.build import Builder, LazyModel, build
from s3ft_jax.s3ft.stages import Stage, atomic_write_text, file_digest

log = logging.getLogger("s3ft_jax")

TRAINED = ("sft", "sdft", "s3ft")


@dataclasses.dataclass
class Timings:
    stages: dict[str, float] = dataclasses.field(default_factory=dict)

    def timed(self, name: str):
        timings = self

        class _Timer:
            def __enter__(self):
                self.start = time.perf_counter()
                log.info("stage %s ...", name)

            def __exit__(self, *exc):
                timings.stages[name] = timings.stages.get(name, 0.0) + time.perf_counter() - self.start

        return _Timer()


def run_pipeline(config, *, progress: bool = True) -> Path:
    from s3ft_jax.cli import load_model_and_tokenizer
    from s3ft_jax.models.loading import model_fingerprint
    from s3ft_jax.tasks import get_task

    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    methods = list(dict.fromkeys(config.run.methods))
    task = get_task(config)
    base_id = model_fingerprint(config.model.name)
    base = LazyModel(lambda: load_model_and_tokenizer(config))
    timings = Timings()

    builder = Builder(config, task, workdir / "build", model=base, model_id=base_id, progress=progress)
    # sdft paraphrases every example: build it before s3ft, whose failures are then all done.
    for method in sorted((m for m in methods if m in TRAINED), key=("sft", "sdft", "s3ft").index):
        with timings.timed(f"build {method}"):
            build(config, method, stage_dir=workdir / "build", out_dir=workdir / method, builder=builder)

    if "s3ft" in methods:
        with timings.timed("logprobs"):
            _logprobs(config, workdir, base, base_id)

    for method in (m for m in methods if m in TRAINED):
        with timings.timed(f"train {method}"):
            _train(config, workdir / method, _trained_id(config, workdir / method, base_id))

    for method in methods:
        if method == "base":
            model, model_id = base, base_id
        else:
            model = LazyModel(lambda m=method: _load_trained(config, workdir / m))
            model_id = _trained_id(config, workdir / method, base_id)
        with timings.timed(f"eval {method}"):
            _evaluate(config, task, method, workdir / method / "eval", model, model_id, progress)
        if method != "base":
            del model  # one fine-tuned model in memory at a time

    atomic_write_text(workdir / "timings.json", json.dumps(_merge_timings(workdir, timings.stages), indent=1) + "\n")
    from s3ft_jax.report import write_report

    return write_report(workdir, methods)


def _merge_timings(workdir: Path, new: dict) -> dict:
    """Wall time per stage, summed over the runs of this workdir (a resumed run adds to it)."""
    try:
        old = json.loads((workdir / "timings.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        old = {}
    return {k: round(old.get(k, 0.0) + new.get(k, 0.0), 1) for k in dict.fromkeys([*old, *new])}


def _logprobs(config, workdir: Path, base: LazyModel, base_id: dict) -> None:
    from s3ft_jax.s3ft.logprobs import target_logprobs

    dataset = workdir / "s3ft" / "dataset.jsonl"
    stage = Stage(workdir, "logprobs", {"dataset": file_digest(dataset), "model": base_id})
    if stage.open() == "done":
        return
    model, tokenizer = base.get()
    summary = target_logprobs(model, tokenizer, dataset, workdir, batch_size=config.logprobs.batch_size)
    stage.complete(**{k: v["mean"] for k, v in summary["sources"].items()})


def _train(config, method_dir: Path, trained_id: dict) -> None:
    """Train unless this exact model exists; an unfinished run resumes from its checkpoints."""
    from s3ft_jax.training import train

    stage = Stage(method_dir, "train", trained_id)
    status = stage.open()
    if status == "done":
        return
    if status == "fresh" and (method_dir / "train").exists():
        # Checkpoints of another D' or other settings: kept aside, never resumed from.
        stale = method_dir / "stale" / f"train-{time.strftime('%Y%m%d-%H%M%S')}"
        stale.parent.mkdir(parents=True, exist_ok=True)
        (method_dir / "train").rename(stale)
        log.warning("%s: training inputs changed; previous run moved to %s", method_dir.name, stale)
    result = train(config, method_dir / "dataset.jsonl", method_dir)
    log.info("trained %s: %d steps, final loss %s", method_dir.name, result.steps, result.final_loss)
    stage.complete(steps=result.steps, final_loss=result.final_loss)


def _load_trained(config, method_dir: Path):
    from s3ft_jax.config import mesh_shape
    from s3ft_jax.models import load_tokenizer
    from s3ft_jax.sharding import make_mesh
    from s3ft_jax.training import load_trained

    model, _ = load_trained(config, method_dir, mesh=make_mesh(mesh_shape(config)))
    return model, load_tokenizer(config.model.name)


def _trained_id(config, method_dir: Path, base_id: dict) -> dict:
    """What a fine-tuned model depends on: base, D' and every training setting."""
    return {"base": base_id, "dataset": file_digest(method_dir / "dataset.jsonl"), "seed": config.seed,
            "train": {k: v for k, v in config.train.to_dict().items() if k not in ("progress", "log_every", "dataset")},
            "lora": config.lora.to_dict()}


def _evaluate(config, task, method: str, eval_dir: Path, model: LazyModel, model_id: dict, progress: bool) -> dict:
    from s3ft_jax.judges import text
    from s3ft_jax.tasks.data import resolve_data_dir

    eval_dir.mkdir(parents=True, exist_ok=True)
    # In-domain: the prediction and judge stages of Algorithm 1, on the test split.
    indomain = Builder(config, task, eval_dir, model=model, model_id=model_id, progress=progress,
                       split=config.task.test_split, limit=config.eval.limit)
    verdicts = indomain.predictions()
    examples = indomain.examples()
    metrics = {"task": task.name, "examples": len(examples),
               "accuracy": sum(verdicts[e.id]["correct"] for e in examples) / len(examples)}
    if task.judge == "llm":
        metrics["exact_match"] = sum(text.exact_match(verdicts[e.id]["text"], e.reference) for e in examples) / len(examples)
        metrics["f1"] = sum(text.f1(verdicts[e.id]["text"], e.reference) for e in examples) / len(examples)
    atomic_write_text(eval_dir / "indomain.json", json.dumps(metrics, indent=1) + "\n")

    benchmarks = {}
    if config.eval.benchmarks:
        from s3ft_jax.evaluation.scoring import run_generalization

        data_dir = resolve_data_dir(config.data.data_dir)
        for name in config.eval.benchmarks:
            limit = config.eval.benchmark_limit or None
            per_subject = config.eval.mmlu_per_subject or None if name.startswith("mmlu") else None
            stage = Stage(eval_dir, f"bench_{name}", {"model": model_id, "limit": limit, "mmlu_per_subject": per_subject})
            if stage.open() != "done":
                m, tokenizer = model.get()
                result = run_generalization(m, tokenizer, data_dir, [name], {name: limit}, mmlu_per_subject=per_subject,
                                            batch_size=config.eval.batch_size, records_dir=eval_dir / "records",
                                            progress=progress)[name]
                atomic_write_text(stage.path("json"), json.dumps(result, indent=1) + "\n")
                stage.complete(n=result.get("n"))
            benchmarks[name] = json.loads(stage.path("json").read_text())
        atomic_write_text(eval_dir / "generalization.json", json.dumps(benchmarks, indent=1) + "\n")
    log.info("eval %s: in-domain %.3f", method, metrics["accuracy"])
    return {"indomain": metrics, "generalization": benchmarks}
