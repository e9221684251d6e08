"""What each `s3ft` command does, given its parsed configuration: thin functions over the
library. The CLI (`cli.py`) parses arguments, checks them (`preflight.py`) and calls one of
these; problems with the user's input are raised as `S3FTError`.
"""

from __future__ import annotations

import time
from pathlib import Path

from s3ft_jax.errors import ConfigError
from s3ft_jax.loader import LazyModel, load_model_and_tokenizer


def config(config) -> None:
    print(config)


def generate(config) -> None:
    from s3ft_jax.config import sampling_kwargs
    from s3ft_jax.sampling.queue import read_prompts, run_queue

    if not config.generate.input:
        raise ConfigError("set --config.generate.input to a JSONL of prompts")
    output = Path(config.generate.output or Path(config.workdir) / "generations.jsonl")
    model, tokenizer = load_model_and_tokenizer(config)
    read_prompts(config.generate.input, tokenizer)  # fail on a bad file before any compile
    report = run_queue(model, tokenizer, config.generate.input, output, **sampling_kwargs(config))
    print(
        f"{report.total} prompts: {report.already_done} already done, {report.generated} generated, "
        f"{report.tokens} tokens in {report.seconds:.1f}s ({report.tokens_per_second:.1f} tok/s) -> {output}"
    )


def answer(config) -> None:
    import jax

    from s3ft_jax.config import sampling_kwargs
    from s3ft_jax.judges.verdict import Judge
    from s3ft_jax.sampling import generate, render_chat
    from s3ft_jax.tasks import get_task, load_examples

    task = get_task(config)
    examples = load_examples(config, task, config.task.split)
    if not 0 <= config.task.index < len(examples):
        raise ConfigError(f"task.index {config.task.index} is outside {task.name} {config.task.split} (0..{len(examples) - 1})")
    example = examples[config.task.index]

    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(config)
    loaded = time.perf_counter()

    prompt = render_chat(tokenizer, [{"role": "user", "content": task.prediction_prompt(example)}])
    (result,) = generate(model, tokenizer, [prompt], **sampling_kwargs(config, task))
    done = time.perf_counter()
    judge = Judge(task, mode="heuristic" if task.judge == "llm" else config.judge.mode, code_timeout_s=config.judge.code_timeout_s)
    (verdict,) = judge([example], [result.text])
    print(f"model:    {config.model.name} ({model.cfg.architecture}, {config.model.dtype}, {jax.device_count()} {jax.default_backend()} device(s))")
    print(f"question: {next(iter(example.fields.values()))}")
    print(f"answer:   {result.text.strip()}")
    print(f"gold:     {example.reference if task.judge != 'code' else example.gold}")
    print(f"judged:   {'correct' if verdict.correct else 'incorrect'} ({verdict.detail})")
    print(f"timing:   load {loaded - start:.1f}s, generate {len(result.token_ids)} tokens ({result.finish_reason}) in {done - loaded:.1f}s (compile included)")


def make_builder(config, progress: bool = True):
    from s3ft_jax.models.loading import model_fingerprint
    from s3ft_jax.s3ft.build import Builder
    from s3ft_jax.tasks import get_task

    task = get_task(config)
    model = LazyModel(lambda: load_model_and_tokenizer(config))
    return Builder(config, task, Path(config.workdir) / "build", model=model, model_id=model_fingerprint(config.model.name), progress=progress)


def build(config) -> None:
    import s3ft_jax.s3ft.build as build_lib

    builder = make_builder(config)
    out_dir = Path(config.build.output or config.workdir)
    result = build_lib.build(config, config.build.method, stage_dir=Path(config.workdir) / "build", out_dir=out_dir, builder=builder)
    print(build_lib.format_summary([result], result.stages))


def logprobs(config) -> None:
    from s3ft_jax.s3ft.logprobs import target_logprobs

    dataset = Path(config.logprobs.dataset or Path(config.workdir) / "dataset.jsonl")
    out_dir = Path(config.logprobs.output or config.workdir)
    model, tokenizer = load_model_and_tokenizer(config)
    summary = target_logprobs(model, tokenizer, dataset, out_dir, batch_size=config.logprobs.batch_size)
    means = ", ".join(f"{k} {v['mean']:.2f} (n={v['count']})" for k, v in summary["sources"].items() if v["count"])
    print(f"mean log p(target | prompt): {means} -> {out_dir / 'logprobs.json'}, {out_dir / 'logprobs.png'}")


def run(config) -> None:
    from s3ft_jax.pipeline import run_pipeline
    from s3ft_jax.report import print_tables

    start = time.perf_counter()
    report = run_pipeline(config)
    print(print_tables(report.parent, list(config.run.methods)))
    print(f"\nreport: {report} and {report.with_suffix('.html')} ({time.perf_counter() - start:.0f}s)")


def report(config) -> None:
    from s3ft_jax.report import print_tables, write_report

    report = write_report(Path(config.workdir), list(config.run.methods))
    print(print_tables(report.parent, list(config.run.methods)))
    print(f"\nreport: {report}")


def train(config) -> None:
    from s3ft_jax.config import lora_settings, train_settings
    from s3ft_jax.loader import make_config_mesh
    from s3ft_jax.training import train

    result = train(train_settings(config), lora_settings(config), config.workdir, mesh=make_config_mesh(config))
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    saved = result.adapter_path or result.checkpoint_dir
    print(f"{result.method} fine-tuning: {result.steps} steps, final loss {loss}; metrics {result.metrics_path}; weights {saved}")


def export(config) -> None:
    from s3ft_jax.config import lora_settings, train_settings
    from s3ft_jax.loader import make_config_mesh
    from s3ft_jax.training import export_hf

    out = export_hf(train_settings(config), lora_settings(config), config.workdir, config.export.output or None,
                    dtype=config.export.dtype, mesh=make_config_mesh(config))  # fmt: skip
    print(f"exported to {out}")


def plan(config) -> None:
    import sys

    from s3ft_jax.plan import format_table, plan as make_plan

    target, cfg, rows = make_plan(config, log=lambda line: print(line, file=sys.stderr))
    print(format_table(config, target, cfg, rows))
