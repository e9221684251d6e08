"""The configuration tree every command reads, and how it is parsed and checked.

Config files in `configs/` are ordinary ml_collections files: `get_config()` starts from
`base_config()` and overrides a few fields. Every field can then be overridden on the command
line (`--config.model.dtype=bfloat16`). The tree is locked, so a misspelt key is an error,
not a silently ignored setting.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from s3ft_jax.errors import ConfigError


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Where every stage writes its files; rerunning with the same workdir resumes.
    c.workdir = "runs/default"

    c.model = ml_collections.ConfigDict()
    # An embedded model name, a local HF directory, or a hub id (when a hub is reachable).
    c.model.name = "smollm2-135m-instruct"
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 | float16
    c.model.param_dtype = config_dict.placeholder(str)  # storage dtype; defaults to dtype

    # Device mesh: data x fsdp x tensor; one size may be -1 ("all remaining devices").
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1

    c.data = ml_collections.ConfigDict()
    # Local dataset copies; empty means $S3FT_DATA_DIR (then the HF hub, when reachable).
    c.data.data_dir = ""

    c.task = ml_collections.ConfigDict()
    c.task.name = "gsm8k"  # gsm8k | mbpp | nq | custom
    # Where the task's rows come from: empty = the task's files in the data directory;
    # or a file path, `hf:NAME[:CONFIG]` (hub) or `tfds:NAME[:CONFIG]` (TFDS).
    c.task.source = ""
    c.task.train_split = "train"
    c.task.test_split = "test"
    c.task.limit = 0  # use the first N training examples (0: all)
    c.task.split = "test"
    c.task.index = 0  # which example the `answer` command shows
    # Prompt templates (str.format over the example's fields); empty = the task's default.
    c.task.prompts = ml_collections.ConfigDict()
    c.task.prompts.prediction = ""
    c.task.prompts.paraphrase = ""  # also gets {reference}, the gold answer
    c.task.prompts.training = ""
    c.task.prompts.judge = ""  # llm judge: {question} {golds} {response} and the example's fields
    # task.name=custom: your own JSONL/CSV (or hf:/tfds:) with a prompt and an answer field.
    c.task.custom = ml_collections.ConfigDict()
    c.task.custom.train = ""
    c.task.custom.test = ""
    c.task.custom.id_field = "id"
    c.task.custom.prompt_field = "prompt"
    c.task.custom.answer_field = "answer"  # a string or a list of acceptable answers
    c.task.custom.target_field = ""  # a full gold response to train on (default: the answer)
    c.task.custom.judge = "exact"  # numeric | exact | regex | code | llm
    c.task.custom.regex = ""  # judge=regex: pattern whose group 1 (or match) is the answer
    c.task.custom.tests_field = "tests"  # judge=code: list of assert statements
    c.task.custom.setup_field = "setup"
    c.task.custom.stop = ()

    # Judges. The llm judge is the base model unless judge.model names another.
    c.judge = ml_collections.ConfigDict()
    c.judge.mode = "llm_or_heuristic"  # llm | heuristic | llm_or_heuristic (tasks judged by an llm)
    c.judge.model = ""
    c.judge.max_new_tokens = 8
    c.judge.code_timeout_s = 10.0
    c.judge.code_workers = 0  # 0: one per CPU core

    # `s3ft build`: Algorithm 1. Stage files go to <workdir>/build, D' to build.output.
    c.build = ml_collections.ConfigDict()
    c.build.method = "s3ft"  # s3ft | sdft | sft
    c.build.output = ""  # directory for dataset.jsonl + stats.json (default: workdir)

    # `s3ft run`: build, train and evaluate each method on the same data and settings.
    c.run = ml_collections.ConfigDict()
    c.run.methods = ("base", "sft", "sdft", "s3ft")

    # Evaluation: in-domain (task.test_split, greedy, judged) and generalization benchmarks.
    c.eval = ml_collections.ConfigDict()
    c.eval.limit = 0  # first N test examples (0: all)
    c.eval.benchmarks = ("mmlu", "truthfulqa_mc1", "truthfulqa_mc2", "hellaswag", "arc_easy", "arc_challenge", "winogrande", "piqa", "boolq")
    c.eval.benchmark_limit = 0  # first N questions of each benchmark (0: all)
    c.eval.mmlu_per_subject = 0  # > 0: a stratified MMLU subset, the first k questions per subject
    c.eval.batch_size = 16

    # `s3ft logprobs`: log p(target | prompt) of a built set's gold/paraphrase/own targets.
    c.logprobs = ml_collections.ConfigDict()
    c.logprobs.dataset = ""  # default: <workdir>/dataset.jsonl
    c.logprobs.output = ""  # directory (default: workdir)
    c.logprobs.batch_size = 8

    # Decoding. Greedy by default (temperature 0), one sample per prompt as in the paper.
    c.sampling = ml_collections.ConfigDict()
    c.sampling.max_new_tokens = 0  # 0: the task's default (GSM8K 256, MBPP 512, NQ 64)
    c.sampling.temperature = 0.0
    c.sampling.top_p = 1.0
    c.sampling.top_k = 0
    c.sampling.stop = ()  # e.g. --config.sampling.stop="('[DONE]',)"
    c.sampling.batch_size = 32
    c.sampling.return_logprobs = False
    c.sampling.chunk = 32  # decode steps between stop-string checks

    # `s3ft generate`: a JSONL of prompts in, a JSONL of generations out (resumable).
    c.generate = ml_collections.ConfigDict()
    c.generate.input = ""
    c.generate.output = ""  # empty: <workdir>/generations.jsonl
    return c


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks that need more than a type: one-line ConfigError naming the key."""
    for key in ("data", "fsdp", "tensor"):
        size = config.mesh[key]
        if size == 0 or size < -1:
            raise ConfigError(f"mesh.{key} must be a positive size or -1, got {size}")
    for key in ("dtype", "param_dtype"):
        value = config.model[key]
        if value is not None and value not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"model.{key} must be float32, bfloat16 or float16, got {value!r}")
    sampling = config.sampling
    for key in ("batch_size", "chunk"):
        if sampling[key] <= 0:
            raise ConfigError(f"sampling.{key} must be positive, got {sampling[key]}")
    if sampling.max_new_tokens < 0:
        raise ConfigError(f"sampling.max_new_tokens must be positive (or 0 for the task default), got {sampling.max_new_tokens}")
    if config.task.limit < 0:
        raise ConfigError(f"task.limit must be >= 0, got {config.task.limit}")
    unknown = sorted(set(config.run.methods) - {"base", "sft", "sdft", "s3ft"})
    if unknown or not config.run.methods:
        raise ConfigError(f"run.methods takes base, sft, sdft, s3ft; got {tuple(config.run.methods)!r}")
    if config.eval.limit < 0 or config.eval.benchmark_limit < 0 or config.eval.mmlu_per_subject < 0 or config.eval.batch_size <= 0:
        raise ConfigError("eval.limit, eval.benchmark_limit and eval.mmlu_per_subject must be >= 0, eval.batch_size > 0")
    if config.build.method not in ("s3ft", "sdft", "sft"):
        raise ConfigError(f"build.method must be s3ft, sdft or sft, got {config.build.method!r}")
    if config.judge.mode not in ("llm", "heuristic", "llm_or_heuristic"):
        raise ConfigError(f"judge.mode must be llm, heuristic or llm_or_heuristic, got {config.judge.mode!r}")
    if config.judge.code_timeout_s <= 0 or config.judge.max_new_tokens <= 0 or config.judge.code_workers < 0:
        raise ConfigError("judge.code_timeout_s and judge.max_new_tokens must be positive, judge.code_workers >= 0")
    if sampling.temperature < 0:
        raise ConfigError(f"sampling.temperature must be >= 0, got {sampling.temperature}")
    if not 0 < sampling.top_p <= 1:
        raise ConfigError(f"sampling.top_p must be in (0, 1], got {sampling.top_p}")
    if sampling.top_k < 0:
        raise ConfigError(f"sampling.top_k must be >= 0, got {sampling.top_k}")
    if not all(isinstance(s, str) and s for s in sampling.stop):
        raise ConfigError(f"sampling.stop must be a tuple of non-empty strings, got {sampling.stop!r}")
    return config


DEFAULT_MAX_NEW_TOKENS = 256


def sampling_kwargs(config: ml_collections.ConfigDict, task=None) -> dict:
    """The config's sampling section as keyword arguments of `sampling.generate`; with a task,
    its default length and stop strings fill in."""
    s = config.sampling
    default_length = task.max_new_tokens if task is not None else DEFAULT_MAX_NEW_TOKENS
    stop = task.stop if task is not None else tuple(s.stop)
    return dict(
        max_new_tokens=s.max_new_tokens or default_length, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
        stop=tuple(stop), seed=config.seed, batch_size=s.batch_size, return_logprobs=s.return_logprobs,
        chunk=s.chunk,
    )


def mesh_shape(config: ml_collections.ConfigDict) -> dict[str, int]:
    return {"data": config.mesh.data, "fsdp": config.mesh.fsdp, "tensor": config.mesh.tensor}
