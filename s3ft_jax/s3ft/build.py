"""Algorithm 1 as resumable stages: predict -> judge -> paraphrase failures -> judge -> D'.

    examples              the task's training split (optionally the first `task.limit`)
    predict               the base model's answers, prediction prompt                (s3ft)
    judge_predict         their verdicts                                             (s3ft)
    paraphrase            failures rewritten with the gold shown, S3FT's prompt      (s3ft)
    judge_paraphrase      the task's judge (+ the leak filter if build.leak_filter_s3ft)
    paraphrase_sdft       every example distilled with SDFT's template               (sdft)
    judge_paraphrase_sdft SDFT's meta-text rule, then the task's judge               (sdft)
    D'                    one target per example: own, paraphrase or gold
    judge_audit           the judge on the golds and perturbed golds (judge.audit; judge_audit.py)

SDFT (Yang et al., sail-sg/sdft eval/gen_distilled_data.py) keeps a distilled response when
it passes their meta-text check and the task's answer check, else the gold; here the task's
check is the task's judge, the one every method's verdicts come from. With
build.sdft_template=s3ft, sdft's stages use S3FT's paraphrase prompt and the broad leak rule.

Stage files live in one directory shared by every method of a run (`<workdir>/build`); each
method's D' goes to its own file. Every stage resumes after a crash and is redone only when
its inputs change (stages.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from s3ft_jax import distributed
from s3ft_jax.errors import ConfigError
from s3ft_jax.judges.verdict import Judge
from s3ft_jax.loader import LazyModel
from s3ft_jax.s3ft.leaks import find_leak
from s3ft_jax.s3ft.settings import METHODS, BuildSettings
from s3ft_jax.io import json_digest
from s3ft_jax.s3ft.stages import Stage, atomic_write_jsonl, atomic_write_text, resumable_map
from s3ft_jax.sampling.queue import read_done
from s3ft_jax.tasks.base import Example, Task

log = logging.getLogger(__name__)

SOURCES = ("own", "paraphrase", "gold")

# (prompts JSONL, output JSONL, keep rows of other ids) -> None. The default runs the
# resumable generation queue on the base model; tests plug in scripted generators.
Generator = Callable[[Path, Path, bool], None]


@dataclasses.dataclass
class StageLog:
    name: str
    status: str  # ran | resumed | skipped
    rows: int
    seconds: float


@dataclasses.dataclass
class BuildResult:
    method: str
    dataset: Path
    stats: dict
    stages: list[StageLog]


class Builder:
    def __init__(self, settings: BuildSettings, task: Task, stage_dir: Path, *, model: LazyModel, model_id: dict,
                 judge_model: LazyModel | None = None, judge_model_id: dict | None = None,
                 generator: Generator | None = None, progress: bool = True, split: str | None = None,
                 limit: int | None = None):
        """`judge_model`, `judge_model_id`: the LLM judge's model and identity when it is not
        `model` (judge.model, or the base model judging a fine-tuned one's answers)."""
        self.settings, self.task, self.dir = settings, task, Path(stage_dir)
        # Evaluation reuses the predict/judge stages on the test split.
        self.split = split or settings.task.train_split
        self.limit = settings.task.limit if limit is None else limit
        self.model, self.model_id, self.progress = model, model_id, progress
        self.judge_model, self.judge_model_id = judge_model, judge_model_id
        self.generator = generator or self._generate_with_model
        self.stages: list[StageLog] = []
        self._examples: list[Example] | None = None
        self._judge: Judge | None = None

    # -- inputs -------------------------------------------------------------------------

    def sampling_inputs(self) -> dict:
        """Every sampling setting that changes a generation's bits (the batch size does: see
        the sampler's README section), hashed into the generation stages' fingerprints."""
        return self.settings.sampling.fingerprint()

    def judge_inputs(self) -> dict:
        return self.settings.judge.fingerprint(self.task, self.judge_model_id or self.model_id)

    def examples(self) -> list[Example]:
        if self._examples is None:
            from s3ft_jax.tasks import load_examples

            examples = load_examples(self.settings.task, self.task, self.split)
            if self.limit:
                examples = examples[: self.limit]
            if not examples:
                raise ConfigError(f"task {self.task.name} split {self.split!r} has no examples")
            stage = Stage(self.dir, "examples", {"task": self.task.name, "content": json_digest([e.to_json() for e in examples])})
            t = time.perf_counter()
            status = stage.open()
            if status != "done":
                atomic_write_jsonl(stage.path("jsonl"), (e.to_json() for e in examples))
                stage.complete(rows=len(examples))
            self._log("examples", "skipped" if status == "done" else "ran", len(examples), t)
            self._examples, self._examples_fp = examples, stage.fingerprint
        return self._examples

    def judge(self) -> Judge:
        if self._judge is None:
            model = tokenizer = None
            if self.settings.judge.uses_model(self.task.judge):
                model, tokenizer = (self.judge_model or self.model).get()
            self._judge = Judge(self.task, self.settings.judge, model=model, tokenizer=tokenizer,
                                llm_batch_size=self.settings.sampling.batch_size)
        return self._judge

    # -- stages -------------------------------------------------------------------------

    def predictions(self) -> dict[str, dict]:
        """id -> {text, correct, detail, target} for every example."""
        examples = self.examples()
        gen = self._generation_stage("predict", self.task.prompts.prediction, [e.id for e in examples], self.task.prediction_prompt)
        return self._judged("judge_predict", gen, [e.id for e in examples])

    def paraphrases(self, ids: Sequence[str], method: str = "s3ft") -> dict[str, dict]:
        """id -> {text, correct, leak, ...}: `method`'s paraphrases (s3ft or sdft) of `ids`, in
        that method's own stages, since their prompts and rules differ."""
        ids, prompts = list(ids), self.task.prompts
        if method == "sdft" and self.settings.sdft_template == "sdft":
            template = {"template": "sdft", "distill": prompts.distill, "prefix": prompts.distill_prefix}
            gen = self._generation_stage("paraphrase_sdft", template, ids, self.task.distill_prompt, prefix=prompts.distill_prefix)
        else:
            name = "paraphrase_sdft" if method == "sdft" else "paraphrase"
            gen = self._generation_stage(name, prompts.paraphrase, ids, self.task.paraphrase_prompt)
        return self._judged(f"judge_{gen.name}", gen, ids, leak_rule=self.settings.leak_rule(method), paraphrase=True)

    def _generation_stage(self, name: str, template, ids: list[str], render, prefix: str = "") -> Stage:
        """`prefix`: the start of the answer, written for the model to continue (not part of
        the generated text)."""
        by_id = {e.id: e for e in self.examples()}
        stage = Stage(self.dir, name, {"examples": self._examples_fp, "model": self.model_id, "prompt": template,
                                       "sampling": self.sampling_inputs()})
        t = time.perf_counter()
        status = stage.open()
        output = stage.path("jsonl")
        done = read_done(output)
        todo = [i for i in ids if json.dumps(i) not in done]
        if todo:
            prompts = stage.path("prompts.jsonl")
            begun = [{"role": "assistant", "content": prefix}] if prefix else []
            atomic_write_jsonl(prompts, ({"id": i, "messages": [{"role": "user", "content": render(by_id[i])}, *begun]} for i in todo))
            self.generator(prompts, output, True)
            if distributed.is_writer():
                prompts.unlink(missing_ok=True)
            status = "resumed" if status == "resume" or done else "ran"
        else:
            status = "skipped" if status == "done" else "resumed"
        stage.complete(rows=len(read_done(output)))
        self._log(name, status, len(ids), t)
        return stage

    def _judged(self, name: str, generation: Stage, ids: list[str], leak_rule: str | None = None,
                paraphrase: bool = False) -> dict[str, dict]:
        """Verdicts on a generation stage's rows; `leak_rule` (leaks.py) rejects meta-text first."""
        by_id = {e.id: e for e in self.examples()}
        generated = read_done(generation.path("jsonl"))
        # True stands for the broad rule, as in the fingerprints written before there were two.
        leaks_input = {None: False, "broad": True}.get(leak_rule, leak_rule)
        inputs = {"generations": generation.fingerprint, "judge": self.judge_inputs(), "leaks": leaks_input}
        keep = self.settings.judge.keep_solution and paraphrase
        if keep:  # absent when off, so runs from before the option keep their fingerprints
            inputs["keep_solution"] = self.settings.judge.keep_solution_fraction
        stage = Stage(self.dir, name, inputs)
        t = time.perf_counter()
        status = stage.open()
        before = len(read_done(stage.path("jsonl")))

        def work(indices: list[int]) -> list[dict]:
            rows = [generated[json.dumps(ids[n])] for n in indices]
            texts = [self._as_target(r) for r in rows]
            leaks = [find_leak(leak_rule, text) if leak_rule else None for text in texts]
            to_judge = [n for n, leak in enumerate(leaks) if leak is None]
            verdicts = self.judge()([by_id[rows[n]["id"]] for n in to_judge], [rows[n]["text"] for n in to_judge],
                                    [rows[n]["finish_reason"] for n in to_judge]) if to_judge else []
            verdict_of = dict(zip(to_judge, verdicts))
            out = []
            for n, row in enumerate(rows):
                v = verdict_of.get(n)
                out.append({"id": row["id"], "text": row["text"], "target": texts[n], "finish_reason": row["finish_reason"],
                            "leak": leaks[n], "correct": bool(v and v.correct),
                            "detail": v.detail if v else f"meta-text leak: {leaks[n]!r}",
                            "how": v.how if v else "leak"})
                if keep and v and v.correct:
                    self._check_solution(out[-1], by_id[row["id"]])
            return out

        batch = 64 if self.task.judge in ("code", "llm") else 512
        rows = resumable_map(stage.path("jsonl"), ids, work, batch_size=batch, desc=name, progress=self.progress, keep_extra=True)
        stage.complete(rows=len(read_done(stage.path("jsonl"))))
        ran = len(read_done(stage.path("jsonl"))) - before
        self._log(name, "skipped" if status == "done" and not ran else ("resumed" if before else "ran"), len(ids), t)
        return {r["id"]: r for r in rows}

    def _check_solution(self, row: dict, example: Example) -> None:
        """judge.keep_solution: an accepted paraphrase that dropped the gold's solution is
        rejected (judges/solution.py); `kept_solution` records the check."""
        from s3ft_jax.tasks.numbers import parse_number
        from s3ft_jax.judges.solution import keeps_solution

        numeric = self.task.judge == "numeric"
        final = parse_number(str(example.reference)) if numeric else None
        kept, why = keeps_solution(row["text"], example.gold, fraction=self.settings.judge.keep_solution_fraction,
                                   final=final, numeric=numeric)
        row["kept_solution"] = kept
        if not kept:
            row["correct"], row["detail"] = False, f"dropped the solution ({why}); {row['detail']}"

    def _as_target(self, row: dict) -> str:
        """A generation as a training target that ends exactly as the gold ones do: the stop
        string (MBPP's [DONE]) closes it whether the stop cut it or the model ended with EOS."""
        text = row["text"].strip()
        if self.task.stop and not text.endswith(self.task.stop[0]):
            text = f"{text}\n{self.task.stop[0]}"
        return text

    def _generate_with_model(self, prompts: Path, output: Path, keep_extra: bool) -> None:
        from s3ft_jax.sampling.queue import run_queue

        model, tokenizer = self.model.get()
        run_queue(model, tokenizer, prompts, output, self.settings.sampling, progress=self.progress, keep_extra=keep_extra)

    def _log(self, name, status, rows, start) -> None:
        self.stages.append(StageLog(name, status, rows, time.perf_counter() - start))

    # -- Algorithm 1 ----------------------------------------------------------------------

    def dataset(self, method: str) -> list[dict]:
        if method not in METHODS:
            raise ConfigError(f"build.method must be one of {', '.join(METHODS)}, got {method!r}")
        examples = self.examples()
        predictions = self.predictions() if method == "s3ft" else {}
        if method == "s3ft":
            need = [e.id for e in examples if not predictions[e.id]["correct"]]
        elif method == "sdft":
            need = [e.id for e in examples]
        else:
            need = []
        paraphrases = self.paraphrases(need, method) if need else {}
        rows = []
        for e in examples:
            pred, para = predictions.get(e.id), paraphrases.get(e.id)
            if pred and pred["correct"]:
                source, target = "own", pred["target"]
            elif para and para["correct"]:
                source, target = "paraphrase", para["target"]
            else:
                source, target = "gold", e.gold
            rows.append({
                "id": e.id, "prompt": self.task.training_prompt(e), "target": target, "source": source, "gold": e.gold,
                "prediction": pred and pred["text"], "prediction_correct": pred and pred["correct"],
                "prediction_detail": pred and pred["detail"],
                "paraphrase": para and para["text"], "paraphrase_correct": para and para["correct"],
                "paraphrase_leak": para and para["leak"], "paraphrase_detail": para and para["detail"],
                "prediction_how": pred and pred.get("how"), "paraphrase_how": para and para.get("how"),
            })
            if para and "kept_solution" in para:  # only with judge.keep_solution
                rows[-1]["paraphrase_kept_solution"] = para["kept_solution"]
        return rows


def dataset_stats(method: str, rows: list[dict]) -> dict:
    counts = Counter(r["source"] for r in rows)
    total = len(rows)
    judged_pred = [r for r in rows if r["prediction_correct"] is not None]
    judged_para = [r for r in rows if r["paraphrase_correct"] is not None]
    return {
        "method": method,
        "examples": total,
        "counts": {s: counts.get(s, 0) for s in SOURCES},
        "share": {s: round(counts.get(s, 0) / total, 4) for s in SOURCES},
        "prediction_accuracy": round(sum(r["prediction_correct"] for r in judged_pred) / len(judged_pred), 4) if judged_pred else None,
        "paraphrases": len(judged_para),
        "paraphrase_pass_rate": round(sum(r["paraphrase_correct"] for r in judged_para) / len(judged_para), 4) if judged_para else None,
        "paraphrase_leaks": sum(1 for r in judged_para if r["paraphrase_leak"]),
        # Cut at the token limit with no answer stated before the cut (judge.accept_truncated).
        "refused_truncated": {"prediction": sum(1 for r in judged_pred if r.get("prediction_how") == "truncated"),
                              "paraphrase": sum(1 for r in judged_para if r.get("paraphrase_how") == "truncated")},
        # judge.keep_solution: right final answer, but the gold's solution dropped.
        "paraphrase_dropped_solution": sum(1 for r in judged_para if r.get("paraphrase_kept_solution") is False),
    }


def write_dataset(method: str, rows: list[dict], out_dir: Path) -> tuple[Path, dict]:
    """D' and its stats, each written atomically (a crash leaves the old file or the new)."""
    out_dir = Path(out_dir)
    stats = dataset_stats(method, rows)
    atomic_write_jsonl(out_dir / "dataset.jsonl", rows)
    atomic_write_text(out_dir / "stats.json", json.dumps(stats, indent=1) + "\n")
    return out_dir / "dataset.jsonl", stats


def build(method: str, out_dir: Path, builder: Builder) -> BuildResult:
    """D' of `method` into `out_dir`, from the builder's (resumable) stages."""
    rows = builder.dataset(method)
    path, stats = write_dataset(method, rows, out_dir)
    if builder.settings.judge.audit:  # <workdir>/build/judge_audit.json (s3ft/judge_audit.py)
        from s3ft_jax.s3ft.judge_audit import run_judge_audit

        run_judge_audit(builder)
    return BuildResult(method, path, stats, list(builder.stages))


def format_summary(results: Sequence[BuildResult], stages: Sequence[StageLog]) -> str:
    lines = ["stage                  status     rows   seconds"]
    for s in stages:
        lines.append(f"{s.name:<22} {s.status:<8} {s.rows:>6} {s.seconds:>9.1f}")
    lines.append("")
    lines.append("method  examples   own          paraphrase   gold         D'")
    for r in results:
        c, sh = r.stats["counts"], r.stats["share"]
        cells = "  ".join(f"{c[s]:>5} ({100 * sh[s]:4.1f}%)" for s in SOURCES)
        lines.append(f"{r.method:<7} {r.stats['examples']:>8}   {cells}  {r.dataset}")
    return "\n".join(lines)
