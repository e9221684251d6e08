"""`s3ft run`: every method through the same stages, then one report.

    <workdir>/build/            Algorithm 1's shared stage files (predictions, paraphrases, verdicts)
    <workdir>/<method>/         dataset.jsonl + stats.json (D'), train/ (checkpoints, metrics),
                                eval/ (in-domain predictions and verdicts, benchmark scores)
    <workdir>/logprobs.*        Figure 2 for the s3ft D' (sdft's in <workdir>/sdft/logprobs.*);
                                D' target lengths and per-token log p also go into stats.json
    <workdir>/<method>/eval/drift.json   mean per-token KL(base || method) on held-out text,
                                and each text's KL sum (the report pairs methods on them)
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

from s3ft_jax import distributed
from s3ft_jax.io import file_digest
from s3ft_jax.loader import LazyModel, load_model_and_tokenizer, load_trained_model, make_settings_mesh, model_identity
from s3ft_jax.s3ft.build import Builder, build
from s3ft_jax.s3ft.stages import Stage, atomic_write_text
from s3ft_jax.settings import TRAINED, RunSettings

log = logging.getLogger("s3ft_jax")
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


def run_pipeline(settings: RunSettings, *, progress: bool = True) -> Path:
    from s3ft_jax.tasks import get_task

    if settings.eval.benchmarks and settings.eval.benchmark_source == "hf":
        # Fetched first, not at the first evaluation: an unreachable hub is said before the
        # model is built and hours of training (on every process: every host reads the files).
        from s3ft_jax.evaluation.benchmark_source import ensure_cached

        ensure_cached(settings.eval.benchmarks)
    workdir = Path(settings.workdir)
    if distributed.is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
    methods = list(settings.methods)
    task = get_task(settings.build.task)
    base_id = model_identity(settings.model)
    base = LazyModel(lambda: load_model_and_tokenizer(settings.model))
    judge_model = settings.judge_model()
    timings = Timings()

    builder = Builder(settings.build, task, workdir / "build", model=base, model_id=base_id, judge_model=judge_model,
                      progress=progress)
    for method in sorted((m for m in methods if m in TRAINED), key=TRAINED.index):
        with timings.timed(f"build {method}"):
            build(method, workdir / method, builder)

    for method in (m for m in ("sdft", "s3ft") if m in methods):
        with timings.timed(f"logprobs {method}"):
            # s3ft's at the top of the run directory, where `s3ft logprobs` puts Figure 2.
            _logprobs(settings, workdir / method, workdir if method == "s3ft" else workdir / method, base, base_id)

    trained = [unit for m in methods if m in TRAINED for unit in training_units(settings, m)]
    for unit in trained:
        with timings.timed(f"train {unit.name}"):
            _train(settings, unit, trained_id(settings, unit, base_id))

    if "base" in methods:
        with timings.timed("eval base"):
            _evaluate(settings, task, "base", workdir / "base" / "eval", base, base_id,
                      *evaluation_judge(judge_model, base, base_id), progress)
    for unit in trained:
        model = LazyModel(lambda u=unit: load_trained_model(settings.model, u.train, settings.lora, u.dir))
        model_id = trained_id(settings, unit, base_id)
        with timings.timed(f"eval {unit.name}"):
            _evaluate(settings, task, unit.name, unit.dir / "eval", model, model_id,
                      *evaluation_judge(judge_model, base, base_id), progress)
        if settings.eval.drift:
            with timings.timed(f"drift {unit.name}"):
                _drift(settings, task, workdir, unit, base, base_id, model, model_id, judge_model, progress)
        del model  # one fine-tuned model in memory at a time

    atomic_write_text(workdir / "timings.json", json.dumps(_merge_timings(workdir, timings.stages), indent=1) + "\n")
    from s3ft_jax.report import write_report

    return write_report(workdir, methods, headline=settings.eval.headline)


def _merge_timings(workdir: Path, new: dict) -> dict:
    """Wall time per stage, summed over the runs of this workdir (a resumed run adds to it)."""
    try:
        old = json.loads((workdir / "timings.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        old = {}
    return {k: round(old.get(k, 0.0) + new.get(k, 0.0), 1) for k in dict.fromkeys([*old, *new])}


def _logprobs(settings: RunSettings, method_dir: Path, out_dir: Path, base: LazyModel, base_id: dict) -> None:
    """log p(target | prompt) of a D' under the base model; the D' targets' mean length and
    per-token log p then also go into the method's stats.json (rewritten by every build)."""
    from s3ft_jax.s3ft.logprobs import target_logprobs

    dataset = method_dir / "dataset.jsonl"
    stage = Stage(out_dir, "logprobs", {"dataset": file_digest(dataset), "model": base_id})
    if stage.open() != "done":
        model, tokenizer = base.get()
        summary = target_logprobs(model, tokenizer, dataset, out_dir, batch_size=settings.logprobs_batch_size)
        stage.complete(**{k: v["mean"] for k, v in summary["sources"].items()})
    summary = json.loads((out_dir / "logprobs.json").read_text())
    stats = json.loads((method_dir / "stats.json").read_text())
    stats["targets"] = summary.get("targets")
    atomic_write_text(method_dir / "stats.json", json.dumps(stats, indent=1) + "\n")


def _drift(settings: RunSettings, task, workdir: Path, unit: "TrainingUnit", base: LazyModel, base_id: dict, tuned: LazyModel,
           tuned_id: dict, judge_model: LazyModel | None, progress: bool) -> None:
    """Mean per-token KL(base || tuned) on (a) the base model's greedy responses to the test
    prompts (the base evaluation's predictions, generated here only if that is missing) and
    (b) each generalization benchmark's prompts with their gold continuations."""
    from s3ft_jax.evaluation.benchmark_source import benchmark_data_dir
    from s3ft_jax.evaluation.benchmarks import load_task
    from s3ft_jax.evaluation.drift import kl_per_text, summarize
    from s3ft_jax.evaluation.loglikelihood import encode_pair
    from s3ft_jax.sampling.chat import render_chat
    from s3ft_jax.sampling.queue import read_done

    ev = settings.eval
    base_eval = Builder(settings.build, task, workdir / "base" / "eval", model=base, model_id=base_id,
                        judge_model=judge_model, progress=progress, split=settings.build.task.test_split, limit=ev.limit)
    base_eval.predictions()
    responses = workdir / "base" / "eval" / "predict.jsonl"
    limit = ev.question_limit()
    method = unit.name
    eval_dir = unit.dir / "eval"
    stage = Stage(eval_dir, "drift", drift_inputs(settings, base_id, tuned_id, file_digest(responses)))
    if stage.open() == "done":
        return
    (base_model, tokenizer), (tuned_model, _) = base.get(), tuned.get()
    kwargs = dict(batch_size=ev.batch_size, logit_tokens=ev.drift_logit_tokens, pad_id=tokenizer.pad_token_id or 0)
    done = read_done(responses)
    pairs = []
    for e in base_eval.examples():
        prompt = render_chat(tokenizer, [{"role": "user", "content": task.prediction_prompt(e)}])
        generated = done[json.dumps(e.id)]["token_ids"]
        if generated:  # the same tokens the sampler read, then the ones it wrote
            pairs.append((tokenizer(prompt, add_special_tokens=False)["input_ids"], generated))
    bar = f"drift {method}" if progress else None
    result = {"responses": summarize(kl_per_text(base_model, tuned_model, pairs, progress=bar, **kwargs)), "benchmarks": {}}
    pooled = []
    if ev.benchmarks:
        data_dir = benchmark_data_dir(ev.benchmark_source, settings.build.task.data_dir, ev.benchmarks)
        for name in ev.benchmarks:
            items = load_task(data_dir, name, limit=limit, mmlu_per_subject=ev.per_subject(name))
            texts = []
            for item in items:
                gold = item.gold if isinstance(item.gold, int) else item.gold.index(1)  # MC2: the first true answer
                context, continuation = item.requests()[gold]
                texts.append(encode_pair(tokenizer, "", context + continuation))  # the whole text, after BOS
            per_text = kl_per_text(base_model, tuned_model, texts, progress=bar and f"{bar} {name}", **kwargs)
            result["benchmarks"][name] = summarize(per_text)
            pooled += per_text
        result["benchmarks_all"] = summarize(pooled)
    atomic_write_text(stage.path("json"), json.dumps(result, indent=1) + "\n")
    stage.complete(responses=result["responses"]["kl"], benchmarks=result.get("benchmarks_all", {}).get("kl"))
    log.info("drift %s: KL(base || %s) per token %.4g on base responses", method, method, result["responses"]["kl"] or 0.0)


def drift_inputs(settings: RunSettings, base_id: dict, tuned_id: dict, responses_digest: str) -> dict:
    """The drift stage's fingerprint inputs."""
    from s3ft_jax.evaluation.benchmark_source import stage_identity

    ev = settings.eval
    return {"base": base_id, "tuned": tuned_id, "responses": responses_digest, "benchmarks": list(ev.benchmarks),
            "limit": ev.question_limit(), "mmlu_per_subject": ev.mmlu_per_subject or None, "logit_tokens": ev.drift_logit_tokens,
            **stage_identity(ev.benchmark_source, ev.benchmarks)}


def bench_inputs(settings: RunSettings, name: str, model_id: dict) -> dict:
    """Benchmark `name`'s stage fingerprint inputs. The benchmark source adds a key only when
    it is not the default, so the stages of runs made before it existed stay done."""
    from s3ft_jax.evaluation.benchmark_source import stage_identity

    ev = settings.eval
    return {"model": model_id, "limit": ev.question_limit(), "mmlu_per_subject": ev.per_subject(name),
            **stage_identity(ev.benchmark_source, [name])}


@dataclasses.dataclass(frozen=True)
class TrainingUnit:
    """One fine-tuning of one method: its D' (shared by every seed of the method), its
    training settings (the seed) and its run directory (train/, eval/)."""

    method: str
    seed: int | None  # None: the run has no run.seeds, and one training per method
    dataset: Path
    dir: Path
    train: "object"  # training.TrainSettings

    @property
    def name(self) -> str:
        return self.method if self.seed is None else f"{self.method} seed {self.seed}"


def training_units(settings: RunSettings, method: str) -> list[TrainingUnit]:
    """A method's trainings: one in <workdir>/<method> (train.seed), or with run.seeds one per
    seed in <workdir>/<method>/seed<k>, all on the same D' (<workdir>/<method>/dataset.jsonl)."""
    method_dir = settings.workdir / method
    dataset = method_dir / "dataset.jsonl"
    if not settings.seeds:
        return [TrainingUnit(method, None, dataset, method_dir, settings.train)]
    return [TrainingUnit(method, k, dataset, method_dir / f"seed{k}", dataclasses.replace(settings.train, seed=k))
            for k in settings.seeds]


def _train(settings: RunSettings, unit: TrainingUnit, trained_id: dict) -> None:
    """Train unless this exact model exists; an unfinished run resumes from its checkpoints."""
    from s3ft_jax.training import train

    method_dir = unit.dir
    stage = Stage(method_dir, "train", trained_id)
    status = stage.open()
    if status == "done":
        return
    if status == "fresh" and _exists_everywhere(method_dir / "train"):
        # Checkpoints of another D' or other settings: kept aside, never resumed from.
        stale = method_dir / "stale" / f"train-{time.strftime('%Y%m%d-%H%M%S')}"
        if distributed.is_writer():
            stale.parent.mkdir(parents=True, exist_ok=True)
            (method_dir / "train").rename(stale)
            log.warning("%s: training inputs changed; previous run moved to %s", unit.name, stale)
        distributed.sync("moved the old training run aside")
    result = train(unit.train, settings.lora, method_dir, dataset_path=unit.dataset, mesh=make_settings_mesh(settings.model))
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4g}"
    log.info("trained %s: %d steps, final loss %s", unit.name, result.steps, loss)
    stage.complete(steps=result.steps, final_loss=result.final_loss)


def _exists_everywhere(path: Path) -> bool:
    """`path.exists()`, seen the same by every process: none looks after process 0 acted on it."""
    exists = path.exists()
    distributed.sync(f"checked {path.name}")
    return exists


def trained_id(settings: RunSettings, unit: TrainingUnit, base_id: dict) -> dict:
    """What a fine-tuned model depends on: the base, its D' and every training setting that
    changes the trained bits (`training.settings.settings_fingerprint`, the seed included)."""
    from s3ft_jax.training.settings import settings_fingerprint

    return {"base": base_id, "dataset": file_digest(unit.dataset), **settings_fingerprint(unit.train, settings.lora)}


def evaluation_judge(judge_model: LazyModel | None, base: LazyModel, base_id: dict) -> tuple[LazyModel, dict | None]:
    """The LLM judge of every method's in-domain answers, and its identity for the stage
    fingerprints: judge.model when set (identified by its name), else the base model."""
    return (judge_model, None) if judge_model is not None else (base, base_id)


def _evaluate(settings: RunSettings, task, method: str, eval_dir: Path, model: LazyModel, model_id: dict,
              judge_model: LazyModel, judge_id: dict | None, progress: bool) -> dict:
    """In-domain accuracy and the generalization benchmarks of one method. An LLM judge is the
    same model for every method (judge.model, else the base model), so that the methods'
    accuracies are comparable: a fine-tuned model judging its own answers would not be."""
    from s3ft_jax.evaluation.benchmark_source import benchmark_data_dir
    from s3ft_jax.judges import text

    if distributed.is_writer():
        eval_dir.mkdir(parents=True, exist_ok=True)
    # In-domain: the prediction and judge stages of Algorithm 1, on the test split.
    ev = settings.eval
    indomain = Builder(settings.build, task, eval_dir, model=model, model_id=model_id, judge_model=judge_model,
                       judge_model_id=judge_id, progress=progress, split=settings.build.task.test_split, limit=ev.limit)
    verdicts = indomain.predictions()
    examples = indomain.examples()
    metrics = {"task": task.name, "examples": len(examples),
               "accuracy": sum(verdicts[e.id]["correct"] for e in examples) / len(examples)}
    if task.judge == "llm":
        metrics["exact_match"] = sum(text.exact_match(verdicts[e.id]["text"], e.reference) for e in examples) / len(examples)
        metrics["f1"] = sum(text.f1(verdicts[e.id]["text"], e.reference) for e in examples) / len(examples)
    atomic_write_text(eval_dir / "indomain.json", json.dumps(metrics, indent=1) + "\n")

    benchmarks = {}
    if ev.benchmarks:
        from s3ft_jax.evaluation.scoring import run_generalization

        data_dir = benchmark_data_dir(ev.benchmark_source, settings.build.task.data_dir, ev.benchmarks)
        for name in ev.benchmarks:
            limit, per_subject = ev.question_limit(), ev.per_subject(name)
            stage = Stage(eval_dir, f"bench_{name}", bench_inputs(settings, name, model_id))
            if stage.open() != "done":
                m, tokenizer = model.get()
                result = run_generalization(m, tokenizer, data_dir, [name], {name: limit}, mmlu_per_subject=per_subject,
                                            batch_size=ev.batch_size, records_dir=eval_dir / "records",
                                            progress=progress)[name]
                atomic_write_text(stage.path("json"), json.dumps(result, indent=1) + "\n")
                stage.complete(n=result.get("n"))
            benchmarks[name] = json.loads(stage.path("json").read_text())
        atomic_write_text(eval_dir / "generalization.json", json.dumps(benchmarks, indent=1) + "\n")
    log.info("eval %s: in-domain %.3f", method, metrics["accuracy"])
    return {"indomain": metrics, "generalization": benchmarks}
