"""What each `s3ft` command does, given its parsed configuration: thin functions over the
library. The CLI (`cli.py`) parses arguments, checks them (`preflight.py`) and calls one of
these; problems with the user's input are raised as `S3FTError`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from s3ft_jax.errors import ConfigError
from s3ft_jax.loader import LazyModel, load_model_and_tokenizer, model_identity


def config(config) -> None:
    from s3ft_jax.configfile import config_file_text

    print(config_file_text(config), end="")


def save_config(config, what: str) -> None:
    """<workdir>/config.py: the resolved config as a file `--config=` reruns (process 0 writes)."""
    from s3ft_jax import distributed
    from s3ft_jax.configfile import config_file_text
    from s3ft_jax.io import atomic_write_text

    if distributed.is_writer():
        workdir = Path(config.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(workdir / "config.py", config_file_text(config, f" of `s3ft {what}` in {workdir}"))


def generate(config) -> None:
    from s3ft_jax.config import model_settings, sampling_options
    from s3ft_jax.sampling.queue import read_prompts, run_queue

    if not config.generate.input:
        raise ConfigError("set --config.generate.input to a JSONL of prompts")
    output = Path(config.generate.output or Path(config.workdir) / "generations.jsonl")
    options = sampling_options(config)
    model, tokenizer = load_model_and_tokenizer(model_settings(config))
    read_prompts(config.generate.input, tokenizer)  # fail on a bad file before any compile
    report = run_queue(model, tokenizer, config.generate.input, output, options)
    print(
        f"{report.total} prompts: {report.already_done} already done, {report.generated} generated, "
        f"{report.tokens} tokens in {report.seconds:.1f}s ({report.tokens_per_second:.1f} tok/s) -> {output}"
    )


def answer(config) -> None:
    import jax

    from s3ft_jax.config import judge_settings, model_settings, sampling_options, task_settings
    from s3ft_jax.judges.verdict import Judge
    from s3ft_jax.sampling import generate, render_chat
    from s3ft_jax.tasks import get_task, load_examples

    settings = task_settings(config)
    task = get_task(settings)
    examples = load_examples(settings, task, settings.split)
    if not settings.index < len(examples):
        raise ConfigError(f"task.index {settings.index} is outside {task.name} {settings.split} (0..{len(examples) - 1})")
    example = examples[settings.index]
    judging = judge_settings(config)
    if task.judge == "llm":  # one answer: judged by the heuristics, without a second model
        judging = dataclasses.replace(judging, mode="heuristic")

    start = time.perf_counter()
    model_choice = model_settings(config)
    model, tokenizer = load_model_and_tokenizer(model_choice)
    loaded = time.perf_counter()

    prompt = render_chat(tokenizer, [{"role": "user", "content": task.prediction_prompt(example)}])
    (result,) = generate(model, tokenizer, [prompt], sampling_options(config, task))
    done = time.perf_counter()
    (verdict,) = Judge(task, judging, model=model, tokenizer=tokenizer)([example], [result.text], [result.finish_reason])
    print(f"model:    {model_choice.name} ({model.cfg.architecture}, {model_choice.dtype}, {jax.device_count()} {jax.default_backend()} device(s))")
    print(f"question: {next(iter(example.fields.values()))}")
    print(f"answer:   {result.text.strip()}")
    print(f"gold:     {example.reference if task.judge != 'code' else example.gold}")
    print(f"judged:   {'correct' if verdict.correct else 'incorrect'} ({verdict.how}: {verdict.detail})")
    print(f"timing:   load {loaded - start:.1f}s, generate {len(result.token_ids)} tokens ({result.finish_reason}) in {done - loaded:.1f}s (compile included)")


def build(config) -> None:
    import s3ft_jax.s3ft.build as build_lib
    from s3ft_jax.config import run_settings
    from s3ft_jax.tasks import get_task

    settings = run_settings(config)
    task = get_task(settings.build.task)
    save_config(config, "build")
    model = LazyModel(lambda: load_model_and_tokenizer(settings.model))
    builder = build_lib.Builder(settings.build, task, settings.workdir / "build", model=model,
                                model_id=model_identity(settings.model), judge_model=settings.judge_model())
    result = build_lib.build(settings.build.method, Path(settings.build.output or settings.workdir), builder)
    print(build_lib.format_summary([result], result.stages))


def judge_audit(config) -> None:
    """The judge audit alone (judges/audit.py) on task.train_split (its first task.limit, then
    judge.audit_limit examples): the table, and <workdir>/judge_audit.json with the verdicts
    (judge_audit.jsonl) and, for the LLM judge, its disagreements with EM / containment."""
    import json

    from s3ft_jax.config import judge_settings, model_settings, task_settings
    from s3ft_jax.io import atomic_write_jsonl, atomic_write_text
    from s3ft_jax.judges.audit import audit
    from s3ft_jax.judges.verdict import Judge
    from s3ft_jax.report import judge_audit_tables, text_table
    from s3ft_jax.s3ft.judge_audit import JUDGED
    from s3ft_jax.sampling.queue import read_done
    from s3ft_jax.tasks import get_task, load_examples

    settings, judging = task_settings(config), judge_settings(config)
    save_config(config, "judge-audit")
    task = get_task(settings)
    examples = load_examples(settings, task, settings.train_split)[: settings.limit or None]
    model = tokenizer = None
    if judging.uses_model(task.judge):  # judge.model, else model.name, as `s3ft build` judges
        choice = model_settings(config)
        model, tokenizer = load_model_and_tokenizer(choice.named(judging.model) if judging.model else choice)
    judge = Judge(task, judging, model=model, tokenizer=tokenizer, llm_batch_size=config.sampling.batch_size)
    workdir = Path(config.workdir)
    # A build in this workdir: how its predictions and paraphrases of these examples were judged.
    build_rows = {key: list(read_done(workdir / "build" / f"{name}.jsonl").values()) for key, name in JUDGED.items()
                  if (workdir / "build" / f"{name}.jsonl").is_file()}
    summary, rows, disagreements = audit(task, examples, judge, limit=judging.audit_limit, build_rows=build_rows,
                                         mode=judging.mode)
    summary["split"] = settings.train_split
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(workdir / "judge_audit.jsonl", rows)
    if task.judge == "llm":
        atomic_write_jsonl(workdir / "judge_audit.disagreements.jsonl", disagreements)
        summary["llm_agreement"]["file"] = "judge_audit.disagreements.jsonl"
    atomic_write_text(workdir / "judge_audit.json", json.dumps(summary, indent=1) + "\n")
    for title, table in judge_audit_tables(summary).items():
        print(f"{title}\n{text_table(table)}")
    for what, items in (("golds rejected", summary["gold"]["rejected"]), ("perturbed golds accepted", summary["perturbed"]["accepted"])):
        if items:
            print(f"{what} ({len(items)}): {', '.join(r['id'] for r in items[:20])}{' ...' if len(items) > 20 else ''}")
    print(f"judged {summary['gold']['n'] + summary['perturbed']['n']} responses in {summary['seconds']:.1f}s "
          f"-> {workdir / 'judge_audit.json'}")


def logprobs(config) -> None:
    from s3ft_jax.config import model_settings
    from s3ft_jax.s3ft.logprobs import target_logprobs

    dataset = Path(config.logprobs.dataset or Path(config.workdir) / "dataset.jsonl")
    out_dir = Path(config.logprobs.output or config.workdir)
    model, tokenizer = load_model_and_tokenizer(model_settings(config))
    summary = target_logprobs(model, tokenizer, dataset, out_dir, batch_size=config.logprobs.batch_size)
    means = ", ".join(f"{k} {v['mean']:.2f} (n={v['count']})" for k, v in summary["sources"].items() if v["count"])
    print(f"mean log p(target | prompt): {means} -> {out_dir / 'logprobs.json'}, {out_dir / 'logprobs.png'}")


def run(config) -> None:
    from s3ft_jax.pipeline import run_pipeline
    from s3ft_jax.report import print_tables

    from s3ft_jax.config import run_settings

    start = time.perf_counter()
    settings = run_settings(config)
    save_config(config, "run")
    report = run_pipeline(settings)
    print(print_tables(report.parent, list(config.run.methods)))
    print(f"\nreport: {report} and {report.with_suffix('.html')} ({time.perf_counter() - start:.0f}s)")


def report(config) -> None:
    from s3ft_jax.report import print_tables, write_report

    report = write_report(Path(config.workdir), list(config.run.methods))
    print(print_tables(report.parent, list(config.run.methods)))
    print(f"\nreport: {report}")


def train(config) -> None:
    from s3ft_jax.config import lora_settings, model_settings, train_settings
    from s3ft_jax.loader import make_settings_mesh
    from s3ft_jax.training import train

    save_config(config, "train")
    result = train(train_settings(config), lora_settings(config), config.workdir, mesh=make_settings_mesh(model_settings(config)))
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4g}"
    saved = result.adapter_path or result.checkpoint_dir
    print(f"{result.method} fine-tuning: {result.steps} steps, final loss {loss}; metrics {result.metrics_path}; weights {saved}")


def export(config) -> None:
    from s3ft_jax.config import lora_settings, model_settings, train_settings
    from s3ft_jax.loader import make_settings_mesh
    from s3ft_jax.training import export_hf

    out = export_hf(train_settings(config), lora_settings(config), config.workdir, config.export.output or None,
                    dtype=config.export.dtype, mesh=make_settings_mesh(model_settings(config)))  # fmt: skip
    print(f"exported to {out}")


def plan(config) -> None:
    import sys

    from s3ft_jax.plan import format_table, plan as make_plan

    from s3ft_jax.plan.cost import print_cost, workload_from_config

    if config.plan.cost_only:  # no compiling, no libtpu: analytic step times
        print_cost(config)
        return
    workload = workload_from_config(config)  # its errors before minutes of compiling
    target, cfg, rows = make_plan(config, log=lambda line: print(line, file=sys.stderr))
    print(format_table(config, target, cfg, rows))
    print()
    print_cost(config, rows, workload=workload)
