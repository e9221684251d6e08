"""`s3ft <command> --config=FILE --config.key=value ...`

Each command is a thin function over the library: parse the config, call one function.
Problems with the user's input end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from s3ft_jax.errors import ConfigError, S3FTError

USAGE = """usage: s3ft COMMAND [--config=FILE[:ARG]] [--config.KEY=VALUE ...]

commands:
  answer   greedy answer of the model to one task example (the demo)
  generate generate for a JSONL of prompts (--config.generate.input), resumable
  train    fine-tune (LoRA or full) on a JSONL of prompt/target rows, resumable
  export   write the trained model (LoRA merged) as a Hugging Face directory
  config   print the resolved configuration

examples:
  s3ft answer --config=configs/demo.py
  s3ft answer --config=configs/base.py --config.model.name=/path/to/hf_dir --config.model.dtype=bfloat16
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


def _load_model(config):
    from s3ft_jax.config import mesh_shape
    from s3ft_jax.models import from_pretrained, load_tokenizer
    from s3ft_jax.sharding import make_mesh

    mesh = make_mesh(mesh_shape(config))
    model = from_pretrained(config.model.name, dtype=config.model.dtype, param_dtype=config.model.param_dtype, mesh=mesh)
    return model, load_tokenizer(config.model.name)


def cmd_generate(config) -> None:
    from pathlib import Path

    from s3ft_jax.config import sampling_kwargs
    from s3ft_jax.sampling.queue import read_prompts, run_queue

    if not config.generate.input:
        raise ConfigError("set --config.generate.input to a JSONL of prompts")
    output = Path(config.generate.output or Path(config.workdir) / "generations.jsonl")
    model, tokenizer = _load_model(config)
    read_prompts(config.generate.input, tokenizer)  # fail on a bad file before any compile
    report = run_queue(model, tokenizer, config.generate.input, output, **sampling_kwargs(config))
    print(
        f"{report.total} prompts: {report.already_done} already done, {report.generated} generated, "
        f"{report.tokens} tokens in {report.seconds:.1f}s ({report.tokens_per_second:.1f} tok/s) -> {output}"
    )


def cmd_answer(config) -> None:
    import jax

    from s3ft_jax.config import sampling_kwargs
    from s3ft_jax.sampling import generate, render_chat
    from s3ft_jax.tasks import gsm8k
    from s3ft_jax.tasks.data import resolve_data_dir

    if config.task.name != "gsm8k":
        raise ConfigError(f"task.name {config.task.name!r}: the answer command supports gsm8k for now")
    rows = gsm8k.load_split(resolve_data_dir(config.data.data_dir), config.task.split)
    if not 0 <= config.task.index < len(rows):
        raise ConfigError(f"task.index {config.task.index} is outside gsm8k {config.task.split} (0..{len(rows) - 1})")
    example = rows[config.task.index]

    start = time.perf_counter()
    model, tokenizer = _load_model(config)
    loaded = time.perf_counter()

    prompt = render_chat(tokenizer, [{"role": "user", "content": gsm8k.PREDICTION_PROMPT.format(question=example["question"])}])
    (result,) = generate(model, tokenizer, [prompt], **sampling_kwargs(config))
    done = time.perf_counter()
    answer = result.text.strip()
    print(f"model:    {config.model.name} ({model.cfg.architecture}, {config.model.dtype}, {jax.device_count()} {jax.default_backend()} device(s))")
    print(f"question: {example['question']}")
    print(f"answer:   {answer}")
    print(f"gold:     {gsm8k.gold_number(example['answer'])}")
    print(f"timing:   load {loaded - start:.1f}s, generate {len(result.token_ids)} tokens ({result.finish_reason}) in {done - loaded:.1f}s (compile included)")


def cmd_train(config) -> None:
    from s3ft_jax.training import train

    result = train(config)
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    saved = result.adapter_path or result.checkpoint_dir
    print(f"{result.method} fine-tuning: {result.steps} steps, final loss {loss}; metrics {result.metrics_path}; weights {saved}")


def cmd_export(config) -> None:
    from s3ft_jax.training import export_hf

    print(f"exported to {export_hf(config)}")


COMMANDS = {
    "answer": cmd_answer, "config": cmd_config, "generate": cmd_generate, "train": cmd_train, "export": cmd_export,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
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
