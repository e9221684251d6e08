"""`s3ft <command> --config=FILE --config.key=value ...`

Each command is a thin function over the library: parse the config, call one function.
Problems with the user's input end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from s3ft_jax import hostenv, preflight
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

`s3ft COMMAND --help` lists the config keys a command reads, with their defaults.

examples:
  s3ft answer --config=configs/demo.py
  s3ft answer --config=configs/base.py --config.model.name=/path/to/hf_dir --config.model.dtype=bfloat16
  s3ft build --config.task.name=gsm8k --config.task.limit=64 --config.workdir=runs/gsm8k
  s3ft build --config.task.name=mbpp --config.build.method=sdft --config.workdir=runs/mbpp
  s3ft generate --config.generate.input=prompts.jsonl --config.workdir=runs/x --config.sampling.temperature=0.7
  s3ft train --config.workdir=runs/x --config.train.dataset=runs/x/dataset.jsonl --config.lora.enabled=False
  s3ft export --config.workdir=runs/x --config.export.output=runs/x/hf
"""


# Per command: what it does, the config sections (or top-level keys) it reads, an example.
COMMAND_HELP = {
    "run": ("Build D' for every method in run.methods, fine-tune, evaluate in-domain and on the "
            "generalization benchmarks, and write report.md/.html. Resumable: a rerun redoes only what "
            "is missing or changed.",
            ("seed", "workdir", "model", "mesh", "data", "task", "judge", "sampling", "run", "train", "lora", "eval"),
            "s3ft run --config=configs/demo.py --config.workdir=runs/mine"),
    "report": ("Rewrite report.md/.html and the plots from the files of a finished (or partial) run.",
               ("workdir", "run"), "s3ft report --config=configs/demo.py"),
    "answer": ("The model's greedy answer to one task example (task.split, task.index), judged.",
               ("seed", "model", "mesh", "data", "task", "judge", "sampling"),
               "s3ft answer --config=configs/demo.py --config.task.index=3"),
    "build": ("Algorithm 1: predict, judge, paraphrase failures, judge the paraphrases, and write "
              "<workdir>/dataset.jsonl + stats.json. Every stage resumes after a crash.",
              ("seed", "workdir", "model", "mesh", "data", "task", "judge", "sampling", "build"),
              "s3ft build --config.task.name=gsm8k --config.task.limit=64 --config.workdir=runs/gsm8k"),
    "logprobs": ("log p(target | prompt) under the model for a built set's gold, paraphrase and own "
                 "targets: logprobs.json and a histogram.",
                 ("workdir", "model", "mesh", "logprobs"), "s3ft logprobs --config.workdir=runs/gsm8k"),
    "generate": ("Generate for a JSONL of prompts ({id, prompt} / {id, messages} / {id, prompt_ids}); "
                 "results are appended batch by batch and a rerun skips finished ids.",
                 ("seed", "workdir", "model", "mesh", "sampling", "generate"),
                 "s3ft generate --config.generate.input=prompts.jsonl --config.workdir=runs/x"),
    "train": ("Fine-tune (LoRA or full) on a JSONL of {prompt, target} rows into <workdir>/train, "
              "with Orbax checkpoints; rerunning resumes exactly.",
              ("seed", "workdir", "model", "mesh", "train", "lora"),
              "s3ft train --config.workdir=runs/x --config.train.dataset=runs/x/dataset.jsonl"),
    "export": ("Write the trained model (base + newest checkpoint, LoRA merged) as a Hugging Face directory.",
               ("workdir", "model", "mesh", "train", "lora", "export"),
               "s3ft export --config.workdir=runs/x --config.export.output=runs/x/hf"),
    "config": ("Print the resolved configuration.", (), "s3ft config --config=configs/paper.py:gsm8k"),
    "plan": ("Compile the training step, the sampler's prefill and decode step and log-likelihood scoring "
             "for a TPU slice (plan.topology) without weights or a TPU: per-chip memory against HBM, fits "
             "or not, FLOPs and time at peak, and the changes that make a program fit. TPU slices need "
             "the plan extra (libtpu).",
             ("model", "mesh", "sampling", "train", "lora", "eval", "plan"),
             "s3ft plan --config=configs/paper.py:gsm8k --config.plan.topology=v5e-8"),
}


def command_help(command: str, argv: list[str]) -> str:
    """`s3ft COMMAND --help`: what it does, the keys it reads with their values, an example.
    The values are the resolved ones when `argv` names a config file or overrides."""
    from s3ft_jax.config import describe

    summary, sections, example = COMMAND_HELP[command]
    config = parse_config(argv)
    sections = sections or tuple(config.keys())
    source = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "the base config")
    return (f"usage: s3ft {command} [--config=FILE[:ARG]] [--config.KEY=VALUE ...]\n\n{summary}\n\n"
            f"config keys it reads (values from {source}; override any as --config.KEY=VALUE):\n"
            f"{describe(config, sections)}\n\nexample:\n  {example}\n")


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
        raise ConfigError(_unknown_key(argv, e)) from None
    except flags.Error as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        message = lines[-1] if "Traceback" in str(e) else lines[0]
        raise ConfigError(f"bad configuration: {message}") from None
    except OSError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise ConfigError(f"cannot load config file: {lines[-1]}") from None


def _unknown_key(argv: list[str], error: BaseException) -> str:
    """One line for a misspelt key: the full key as typed, and ml_collections' suggestion."""
    import re

    while not isinstance(error, KeyError) and error.__context__ is not None:
        error = error.__context__
    text = str(error.args[0]) if error.args else str(error)
    bad = re.search(r"'([^'\\]+)'", text)
    key = bad.group(1) if bad else text
    suggestion = re.search(r'Did you mean "([^"]+)"', text)
    for arg in argv:
        parts = arg.split("=", 1)[0].removeprefix("--").split(".")
        if arg.startswith("--config.") and key in parts[1:]:
            at = parts.index(key, 1)
            hint = f" (did you mean {'.'.join(parts[:at] + [suggestion.group(1)] + parts[at + 1:])!r}?)" if suggestion else ""
            return f"unknown config key {'.'.join(parts)!r}{hint}"
    hint = f" (did you mean {suggestion.group(1)!r}?)" if suggestion else ""
    return f"unknown config key {key!r}{hint}"


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
    try:
        return _main(argv)
    except BrokenPipeError:
        # `s3ft config | head`: the reader left. Say nothing more; point stdout at /dev/null
        # so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        if len(argv) > 1 and argv[0] == "help":  # `s3ft help COMMAND`
            argv = [argv[1], "--help"]
        else:
            print(USAGE)
            return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"s3ft: error: unknown command {command!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    # Advice that is not ours to give: transformers' "PyTorch was not found" (we use no torch).
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.basicConfig(level=os.environ.get("S3FT_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("absl", "jax", "transformers", "datasets", "orbax", "tensorboardX"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if "-h" in rest or "--help" in rest:
            print(command_help(command, [a for a in rest if a not in ("-h", "--help")]))
            return 0
        if os.environ.get("S3FT_DISTRIBUTED") == "1":
            # Multi-host (scripts/launch_multihost.sh): join the other processes before any
            # JAX call, so the mesh spans every host's devices.
            import jax

            jax.distributed.initialize()
        config = parse_config(rest)
        preflight.check(command, config)
        COMMANDS[command](config)
    except S3FTError as e:
        print(f"s3ft: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("s3ft: interrupted", file=sys.stderr)
        return 130
    except ImportError as e:
        if os.environ.get("S3FT_DEBUG") == "1":
            raise
        # A package the install should have brought is missing or broken.
        print(f"s3ft: error: {str(e).splitlines()[0]} (reinstall: pip install -e .; S3FT_DEBUG=1 shows where)", file=sys.stderr)
        return 1
    except OSError as e:
        if isinstance(e, BrokenPipeError) or os.environ.get("S3FT_DEBUG") == "1":
            raise
        # The machine said no (disk full, permissions, a vanished directory): its words, one
        # line. S3FT_DEBUG=1 shows the traceback.
        print(f"s3ft: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
