"""`s3ft <command> --config=FILE --config.key=value ...`

Each command is a thin function over the library: parse the config, call one function.
Problems with the user's input end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from s3ft_jax import hostenv
from s3ft_jax.errors import ConfigError, S3FTError

USAGE = """usage: s3ft COMMAND [--config=FILE[:ARG]] [--config.KEY=VALUE ...]

commands:
  run      the whole pipeline for run.methods (base, sft, sdft, s3ft) and a report
  report   rewrite report.md/.html from a run directory
  answer   greedy answer of the model to one task example, judged
  build    Algorithm 1: build the training set D' (own / paraphrase / gold), resumable
  logprobs log p(target | prompt) of a built set's targets, histogram + means
  generate generate for a JSONL of prompts (--config.generate.input), resumable
  train    fine-tune (LoRA or full) on a JSONL of prompt/target rows, resumable
  export   write the trained model (LoRA merged) as a Hugging Face directory
  config   print the resolved configuration
  plan     compile the programs for a TPU slice (--config.plan.topology=v5e-8): memory, fits, FLOPs

examples:
  s3ft answer --config=configs/demo.py
  s3ft answer --config=configs/base.py --config.model.name=/path/to/hf_dir --config.model.dtype=bfloat16
  s3ft build --config.task.name=gsm8k --config.task.limit=64 --config.workdir=runs/gsm8k
  s3ft build --config.task.name=mbpp --config.build.method=sdft --config.workdir=runs/mbpp
  s3ft generate --config.generate.input=prompts.jsonl --config.workdir=runs/x --config.sampling.temperature=0.7
  s3ft train --config.workdir=runs/x --config.train.dataset=runs/x/dataset.jsonl --config.lora.enabled=False
  s3ft export --config.workdir=runs/x --config.export.output=runs/x/hf
"""


def parse_config(argv: list[str]):
    """Parse `--config` and its overrides into a locked, validated ConfigDict."""
    from absl import flags
    from ml_collections import config_flags

    from s3ft_jax.config import base_config, validate

    args = ["s3ft", *argv]
    for arg in argv:
        if not arg.startswith("--config"):
            raise ConfigError(f"unexpected argument {arg!r}: use --config=FILE and --config.KEY=VALUE")
    config_file = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if config_file is not None and not os.path.isfile(config_file.split(":")[0]):
        raise ConfigError(f"config file {config_file.split(':')[0]!r} not found")
    values = flags.FlagValues()
    try:
        if config_file is not None:
            config_flags.DEFINE_config_file("config", flag_values=values, lock_config=True, sys_argv=args)
        else:
            config_flags.DEFINE_config_dict("config", base_config(), flag_values=values, lock_config=True, sys_argv=args)
        values(args)
        return validate(values.config)
    except (AttributeError, KeyError) as e:
        key = str(e).strip("\"'")
        arg = next((a.split("=")[0] for a in argv if f".{key}" in a.split("=")[0]), key)
        raise ConfigError(f"unknown config key {arg.removeprefix('--')!r}") from None
    except flags.Error as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        message = lines[-1] if "Traceback" in str(e) else lines[0]
        raise ConfigError(f"bad configuration: {message}") from None
    except OSError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise ConfigError(f"cannot load config file: {lines[-1]}") from None


def cmd_config(config) -> None:
    print(config)


def load_model_and_tokenizer(config, name: str | None = None):
    """The configured model (or `name`) on the configured mesh, and its tokenizer."""
    from s3ft_jax.config import mesh_shape
    from s3ft_jax.models import from_pretrained, load_tokenizer
    from s3ft_jax.sharding import make_mesh

    name = name or config.model.name
    mesh = make_mesh(mesh_shape(config))
    model = from_pretrained(name, dtype=config.model.dtype, param_dtype=config.model.param_dtype, mesh=mesh)
    return model, load_tokenizer(name)


def cmd_generate(config) -> None:
    from pathlib import Path

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


def cmd_answer(config) -> None:
    import jax

    from s3ft_jax.config import sampling_kwargs
    from s3ft_jax.judges.verdict import Judge
    from s3ft_jax.sampling import generate, render_chat
    from s3ft_jax.tasks import get_task
    from s3ft_jax.tasks.data import resolve_data_dir

    task = get_task(config)
    data_dir = None if task.name == "custom" else resolve_data_dir(config.data.data_dir)
    examples = task.load(data_dir, config.task.split)
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
    from pathlib import Path

    from s3ft_jax.models.loading import model_fingerprint
    from s3ft_jax.s3ft.build import Builder, LazyModel
    from s3ft_jax.tasks import get_task

    task = get_task(config)
    model = LazyModel(lambda: load_model_and_tokenizer(config))
    return Builder(config, task, Path(config.workdir) / "build", model=model, model_id=model_fingerprint(config.model.name), progress=progress)


def cmd_build(config) -> None:
    from pathlib import Path

    from s3ft_jax.s3ft.build import build, format_summary

    builder = make_builder(config)
    out_dir = Path(config.build.output or config.workdir)
    result = build(config, config.build.method, stage_dir=Path(config.workdir) / "build", out_dir=out_dir, builder=builder)
    print(format_summary([result], result.stages))


def cmd_logprobs(config) -> None:
    from pathlib import Path

    from s3ft_jax.s3ft.logprobs import target_logprobs

    dataset = Path(config.logprobs.dataset or Path(config.workdir) / "dataset.jsonl")
    out_dir = Path(config.logprobs.output or config.workdir)
    model, tokenizer = load_model_and_tokenizer(config)
    summary = target_logprobs(model, tokenizer, dataset, out_dir, batch_size=config.logprobs.batch_size)
    means = ", ".join(f"{k} {v['mean']:.2f} (n={v['count']})" for k, v in summary["sources"].items() if v["count"])
    print(f"mean log p(target | prompt): {means} -> {out_dir / 'logprobs.json'}, {out_dir / 'logprobs.png'}")


def cmd_run(config) -> None:
    from s3ft_jax.pipeline import run_pipeline
    from s3ft_jax.report import print_tables

    start = time.perf_counter()
    report = run_pipeline(config)
    print(print_tables(report.parent, list(config.run.methods)))
    print(f"\nreport: {report} and {report.with_suffix('.html')} ({time.perf_counter() - start:.0f}s)")


def cmd_report(config) -> None:
    from pathlib import Path

    from s3ft_jax.report import print_tables, write_report

    report = write_report(Path(config.workdir), list(config.run.methods))
    print(print_tables(report.parent, list(config.run.methods)))
    print(f"\nreport: {report}")


def cmd_train(config) -> None:
    from s3ft_jax.training import train

    result = train(config)
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    saved = result.adapter_path or result.checkpoint_dir
    print(f"{result.method} fine-tuning: {result.steps} steps, final loss {loss}; metrics {result.metrics_path}; weights {saved}")


def cmd_export(config) -> None:
    from s3ft_jax.training import export_hf

    print(f"exported to {export_hf(config)}")


def cmd_plan(config) -> None:
    from s3ft_jax.plan import format_table, plan

    target, cfg, rows = plan(config, log=lambda line: print(line, file=sys.stderr))
    print(format_table(config, target, cfg, rows))


COMMANDS = {
    "answer": cmd_answer,
    "train": cmd_train,
    "export": cmd_export,
    "report": cmd_report,
    "run": cmd_run,
    "build": cmd_build,
    "config": cmd_config,
    "generate": cmd_generate,
    "logprobs": cmd_logprobs,
    "plan": cmd_plan,
}


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the `s3ft` process itself (not a call from Python): see hostenv
        hostenv.reexec_tuned()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"s3ft: error: unknown command {command!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    logging.basicConfig(level=os.environ.get("S3FT_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("absl", "jax", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if os.environ.get("S3FT_DISTRIBUTED") == "1":
            # Multi-host (scripts/launch_multihost.sh): join the other processes before any
            # JAX call, so the mesh spans every host's devices.
            import jax

            jax.distributed.initialize()
        COMMANDS[command](parse_config(rest))
    except S3FTError as e:
        print(f"s3ft: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("s3ft: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
