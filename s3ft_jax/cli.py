"""`s3ft <command> --config=FILE --config.key=value ...`

Parse the config, check it (preflight), call the command (commands.py).
Problems with the user's input end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys

from s3ft_jax import commands, datafiles, hostenv, preflight
from s3ft_jax.errors import ConfigError, S3FTError

USAGE = """usage: s3ft COMMAND [--config=FILE[:ARG]] [--config.KEY=VALUE ...] [--dry-run]

commands:
  run      the whole pipeline for run.methods (base, sft, sdft, s3ft) and a report
  report   rewrite report.md/.html from a run directory
  answer   greedy answer of the model to one task example, judged
  build    Algorithm 1: build the training set D' (own / paraphrase / gold), resumable
  judge-audit  the task's judge on its golds (must pass) and perturbed golds (must fail)
  logprobs log p(target | prompt) of a built set's targets, histogram + means
  generate generate for a JSONL of prompts (--config.generate.input), resumable
  train    fine-tune (LoRA or full) on a JSONL of prompt/target rows, resumable
  export   write the trained model (LoRA merged) as a Hugging Face directory
  config   print the resolved configuration as a config file (s3ft config ... > mine.py; --config=mine.py)
  data check   the data files the config reads: present or missing (exit 2 when one is missing)
  data fetch   write the missing ones into the data directory from the Hugging Face hub
  plan     compile the programs for a TPU slice (--config.plan.topology=v5e-8): memory, fits, FLOPs

`s3ft COMMAND --help` lists the config keys a command reads, with their defaults.
`--dry-run` runs only the checks every command makes first (config, paths, data, model files,
mesh, context length, chat template, sandbox) and exits 0 when they pass.

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
    "judge-audit": ("Audit the task's judge on task.train_split (the first task.limit, then judge.audit_limit "
                    "examples): the share of golds it accepts (must be all), of perturbed golds it accepts (must be "
                    "none), and how each verdict was reached; writes <workdir>/judge_audit.json. The numeric and "
                    "code judges need no model; the LLM judge loads judge.model, else model.name.",
                    ("workdir", "model", "mesh", "data", "task", "judge", "sampling"),
                    "s3ft judge-audit --config.task.name=gsm8k --config.workdir=runs/audit"),
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
    "config": ("Print the resolved configuration as a loadable config file (its get_config() returns this tree).",
               (), "s3ft config --config=configs/paper.py:gsm8k --config.task.limit=64 > mine.py"),
    "data check": ("List every data file the config reads (task.train_split, task.test_split, eval.benchmarks), "
                   "one line each: present, MISSING, or read from the hub (hf:/tfds: sources). Exit 2 when one is missing.",
                   ("data", "task", "eval"), "s3ft data check --config=configs/paper.py:gsm8k"),
    "data fetch": ("Write the missing data-directory files the config reads from the Hugging Face hub (through "
                   "`datasets`; the dataset ids are in s3ft_jax/tasks/sources.py) into data.data_dir (else "
                   "$S3FT_DATA_DIR), in the layout the tasks and benchmarks read.",
                   ("data", "task", "eval"), "s3ft data fetch --config=configs/paper.py:gsm8k --config.data.data_dir=data"),
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
    return (f"usage: s3ft {command} [--config=FILE[:ARG]] [--config.KEY=VALUE ...] [--dry-run]\n\n{summary}\n\n"
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
    if config_file is not None:
        check_config_file(config_file.split(":")[0])
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


def check_config_file(path: str) -> None:
    """The config file exists, compiles and defines get_config: else one line, not the
    traceback (or the "unknown config key 'config_config'") ml_collections would give."""
    import ast

    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: {e.msg} (config file)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    defined |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    imports_all = any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in tree.body)
    if "get_config" not in defined and not imports_all and not any(
            isinstance(n, ast.ImportFrom) and any((a.asname or a.name) == "get_config" for a in n.names) for n in tree.body):
        raise ConfigError(f"config file {path} defines no get_config() (it must return the config, e.g. from s3ft_jax.config.base_config())")


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


COMMANDS = {
    "answer": commands.answer,
    "train": commands.train,
    "export": commands.export,
    "report": commands.report,
    "run": commands.run,
    "build": commands.build,
    "judge-audit": commands.judge_audit,
    "config": commands.config,
    "generate": commands.generate,
    "logprobs": commands.logprobs,
    "plan": commands.plan,
    "data check": datafiles.check,
    "data fetch": datafiles.fetch,
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
            argv = [*argv[1:], "--help"]
        else:
            print(USAGE)
            return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "data" and rest and not rest[0].startswith("-"):  # `s3ft data check|fetch`
        command, rest = f"data {rest[0]}", rest[1:]
    dry_run = "--dry-run" in rest  # only the checks: nothing loaded, nothing written
    rest = [a for a in rest if a != "--dry-run"]
    if command not in COMMANDS:
        print(f"s3ft: error: unknown command {command!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    # Advice that is not ours to give: transformers' "PyTorch was not found" (we use no torch).
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.basicConfig(level=os.environ.get("S3FT_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("absl", "jax", "transformers", "datasets", "orbax", "tensorboardX"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from s3ft_jax import distributed

    try:
        if "-h" in rest or "--help" in rest:
            print(command_help(command, [a for a in rest if a not in ("-h", "--help")]))
            return 0
        if distributed.requested():
            # Multi-host (s3ft_jax.launch, scripts/launch_multihost.sh): join the other
            # processes before any JAX call, so the mesh spans every host's devices.
            distributed.initialize_from_env()
        config = parse_config(rest)
        distributed.check_same("command and configuration", {"command": command, "config": config.to_dict()})
        preflight.check(command, config)  # a file missing on one host: that host says so
        if dry_run:
            print(f"s3ft {command}: checks passed ({preflight.summary(command, config)}); --dry-run: nothing run, nothing written")
            distributed.finish()
            return 0
        status = COMMANDS[command](config)  # `data check`: 2 when a file is missing
        distributed.finish()
        return status or 0
    except S3FTError as e:
        where = f"{distributed.process_label()}: " if distributed.active() else ""
        print(f"s3ft: error: {where}{e}", file=sys.stderr)
        distributed.fail(str(e), 2)  # multi-process only: tells the others, never returns
        return 2
    except KeyboardInterrupt:
        print("s3ft: interrupted", file=sys.stderr)
        distributed.fail("interrupted", 130)
        return 130
    except ImportError as e:
        if os.environ.get("S3FT_DEBUG") == "1":
            raise
        # A package the install should have brought is missing or broken.
        print(f"s3ft: error: {str(e).splitlines()[0]} (reinstall: pip install -e .; S3FT_DEBUG=1 shows where)", file=sys.stderr)
        distributed.fail(str(e), 1)
        return 1
    except OSError as e:
        if isinstance(e, BrokenPipeError) or os.environ.get("S3FT_DEBUG") == "1":
            raise
        # The machine said no (disk full, permissions, a vanished directory): its words, one
        # line. S3FT_DEBUG=1 shows the traceback.
        where = f"{distributed.process_label()}: " if distributed.active() else ""
        print(f"s3ft: error: {where}{e}", file=sys.stderr)
        distributed.fail(str(e), 1)
        return 1
    except BaseException as e:
        if not distributed.active():
            raise
        import traceback

        # A collective whose partner was killed fails here first: if so, the line naming the
        # dead process (which ends this one) is the message, not this error's traceback.
        distributed.await_peers()
        traceback.print_exc()  # a bug, not bad input: the traceback is for us
        distributed.fail(f"crashed with {type(e).__name__}: {e}".splitlines()[0], 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
