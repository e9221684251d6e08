"""The configuration tree every command reads, and how it is parsed and checked.

Config files in `configs/` are ordinary ml_collections files: `get_config()` starts from
`base_config()` and overrides a few fields. Every field can then be overridden on the command
line (`--config.model.dtype=bfloat16`). The tree is locked, so a misspelt key is an error,
not a silently ignored setting.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from s3ft_jax.errors import ConfigError
from s3ft_jax.evaluation.settings import DEFAULT_BENCHMARKS, PAPER_HEADLINE, EvalSettings
from s3ft_jax.judges.settings import JudgeSettings
from s3ft_jax.models.settings import MeshShape, ModelSettings
from s3ft_jax.s3ft.settings import BuildSettings
from s3ft_jax.sampling.options import SamplingOptions
from s3ft_jax.settings import RunSettings
from s3ft_jax.tasks.base import TaskPrompts
from s3ft_jax.tasks.settings import ArithTaskSettings, CustomTaskSettings, TaskSettings
from s3ft_jax.training.settings import LoraSettings, TrainSettings


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
    # For a checkpoint without a chat template (base models): plain | chatml | a .jinja file.
    c.model.chat_template = ""

    # Device mesh: data x fsdp x tensor; one size may be -1 ("all remaining devices").
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1

    c.data = ml_collections.ConfigDict()
    # Local dataset copies (their files: README "Data files"; `s3ft data check` / `s3ft data fetch`);
    # empty means $S3FT_DATA_DIR. Only files read from it need it (not hf:/tfds: task sources).
    c.data.data_dir = ""

    c.task = ml_collections.ConfigDict()
    c.task.name = "gsm8k"  # gsm8k | mbpp | nq | arith | custom
    # Where the task's rows come from: empty = the task's files in the data directory;
    # or a file path, `hf:NAME[:CONFIG]` (hub) or `tfds:NAME[:CONFIG]` (TFDS).
    c.task.source = ""
    c.task.train_split = "train"
    c.task.test_split = "test"
    c.task.limit = 0  # use the first N training examples (0: all)
    c.task.split = "test"
    c.task.index = 0  # which example the `answer` command shows
    c.task.allow_overlap = False  # let test rows repeat training rows (same id or prompt); `run` refuses that otherwise
    # Prompt templates (str.format over the example's fields); empty = the task's default.
    c.task.prompts = ml_collections.ConfigDict()
    c.task.prompts.prediction = ""
    c.task.prompts.paraphrase = ""  # also gets {reference}, the gold answer
    c.task.prompts.training = ""
    c.task.prompts.judge = ""  # llm judge: {question} {golds} {response} and the example's fields
    c.task.prompts.distill = ""  # sdft: SDFT's distillation prompt; gets {reference} and {instruction}
    c.task.prompts.distill_prefix = ""  # sdft: the answer's start, continued by the model (GSM8K's "Great! ...")
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
    # task.name=arith: generated arithmetic word problems (no data files); their difficulty.
    c.task.arith = ml_collections.ConfigDict()
    c.task.arith.seed = 0
    c.task.arith.min_ops = 1  # steps per problem: min_ops to max_ops
    c.task.arith.max_ops = 2
    c.task.arith.max_operand = 20  # + and - operands up to this; multipliers up to min(10, this)
    c.task.arith.operators = "+-*"
    c.task.arith.train_size = 1000
    c.task.arith.test_size = 500

    # Judges. The llm judge is the base model unless judge.model names another; in evaluation it
    # also judges every fine-tuned model's answers (one judge for all methods).
    c.judge = ml_collections.ConfigDict()
    c.judge.mode = "llm_or_heuristic"  # llm | heuristic | llm_or_heuristic (tasks judged by an llm)
    c.judge.model = ""
    c.judge.code_timeout_s = 10.0
    c.judge.code_workers = 0  # 0: one per CPU core
    # Paraphrases must keep the gold's solution, not only its final answer (judges/solution.py):
    # at least keep_solution_fraction of its intermediate results (GSM8K) or of its length.
    c.judge.keep_solution = False  # off, as in the paper
    c.judge.keep_solution_fraction = 0.5
    # A response cut at max_new_tokens is never own/paraphrase unless it stated an answer marker
    # before the cut (True accepts it like any other).
    c.judge.accept_truncated = False
    # `s3ft build` (and run) audits the judge: golds must pass, perturbed golds must fail
    # (<workdir>/build/judge_audit.json); audit_limit: its first N examples (0: all).
    c.judge.audit = True
    c.judge.audit_limit = 0

    # `s3ft build`: Algorithm 1. Stage files go to <workdir>/build, D' to build.output.
    c.build = ml_collections.ConfigDict()
    c.build.method = "s3ft"  # s3ft | sdft | sft
    c.build.output = ""  # directory for dataset.jsonl + stats.json (default: workdir)
    # sdft: Yang et al.'s distillation template and keep rule (sdft), or S3FT's paraphrase prompt (s3ft)
    c.build.sdft_template = "sdft"
    c.build.leak_filter_s3ft = False  # reject S3FT paraphrases that leak meta-text (the paper has no such filter)

    # `s3ft run`: build, train and evaluate each method on the same data and settings.
    c.run = ml_collections.ConfigDict()
    c.run.methods = ("base", "sft", "sdft", "s3ft")
    # Training seeds: each trained method is trained and evaluated once per seed, on the same D'
    # (<workdir>/<method>/seed<k>); the report gives means with a between-seed interval.
    # () trains once per method with `seed`, in <workdir>/<method>.
    c.run.seeds = ()

    # Evaluation: in-domain (task.test_split, greedy, judged) and generalization benchmarks.
    c.eval = ml_collections.ConfigDict()
    c.eval.limit = 0  # first N test examples (0: all)
    c.eval.benchmarks = DEFAULT_BENCHMARKS
    # The report's headline average drop: "benchmark:metric", one per benchmark (evaluation/headline.py);
    # default the paper's set, acc as SDFT reads it; a benchmark not evaluated makes it partial.
    c.eval.headline = PAPER_HEADLINE
    c.eval.benchmark_limit = 0  # first N questions of each benchmark (0: all)
    c.eval.mmlu_per_subject = 0  # > 0: a stratified MMLU subset, the first k questions per subject
    c.eval.batch_size = 16
    # Drift of each fine-tuned model from the base: mean per-token KL(base || tuned) on the
    # base's own test responses and on the benchmarks' texts (<method>/eval/drift.json).
    c.eval.drift = True
    c.eval.drift_logit_tokens = 2048  # positions per batch whose full log-softmax is kept (memory)
    # Benchmark files: "data_dir" (the data directory) or "hf" (built from the hub, as `s3ft data
    # fetch` does, into $S3FT_HOME/hub_data/ once; no data directory needed).
    c.eval.benchmark_source = "data_dir"

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

    # `s3ft train`: fine-tune model.name on a JSONL of {"prompt", "target"} rows into
    # <workdir>/train. Defaults follow the paper's setting (SDFT's code): lr 1e-4, cosine,
    # effective batch 8, max length 1024. Compute dtype is model.dtype; trained weights are
    # always float32 master copies.
    c.train = ml_collections.ConfigDict()
    c.train.dataset = ""  # empty: <workdir>/dataset.jsonl
    c.train.learning_rate = 1e-4
    c.train.schedule = "cosine"  # cosine | linear | constant, after the warmup
    c.train.warmup_steps = 0
    c.train.warmup_ratio = 0.0  # used when warmup_steps is 0: a fraction of all steps
    c.train.end_lr_ratio = 0.0  # the decay ends at learning_rate * end_lr_ratio
    c.train.num_epochs = 3
    c.train.max_steps = 0  # > 0: stop after this many optimizer steps (overrides num_epochs)
    c.train.batch_size = 8  # global examples (rows when packing) per optimizer step
    c.train.grad_accum = 1  # micro-batches per step: each holds batch_size / grad_accum rows
    c.train.max_length = 1024  # longer examples are cut from the right (counted in the log)
    c.train.packing = False  # pack several examples per row (block-diagonal attention)
    c.train.clip_norm = 1.0  # global gradient norm clip; 0 disables
    c.train.weight_decay = 0.0
    c.train.adam_b1 = 0.9
    c.train.adam_b2 = 0.999
    c.train.adam_eps = 1e-8
    # What each layer keeps for backward: minimal (matmul inputs; recompute norms, RoPE,
    # softmax, SiLU) | none (keep all) | dots (matmul outputs) | full (layer inputs only).
    c.train.remat = "minimal"
    c.train.attention = "xla"  # xla (any mask) | cudnn (GPU flash attention; no packing, no sliding window)
    c.train.checkpoint_every = 100  # steps; a final checkpoint is always written
    c.train.keep_checkpoints = 2
    c.train.async_checkpoints = True
    c.train.log_every = 1  # steps between host syncs for metrics (every step is recorded)
    c.train.progress = True  # a progress bar with ETA on stderr
    c.train.report_to = "tensorboard"  # none | tensorboard | wandb (the wandb extra) | "tensorboard,wandb"

    # LoRA adapters; lora.enabled = False is full fine-tuning.
    c.lora = ml_collections.ConfigDict()
    c.lora.enabled = True
    c.lora.rank = 8
    c.lora.alpha = 16.0
    c.lora.dropout = 0.1
    c.lora.targets = ("q_proj", "v_proj")  # names or patterns: "*_proj", "mlp.*", "self_attn.o_proj"

    # `s3ft export`: base model + the latest training checkpoint (LoRA merged) -> HF directory.
    c.export = ml_collections.ConfigDict()
    c.export.output = ""  # empty: <workdir>/export
    c.export.dtype = ""  # empty: the base checkpoint's dtype (float32 if it names none)

    # `s3ft plan`: compile the programs ahead of time for a TPU slice (no weights, no TPU).
    c.plan = ml_collections.ConfigDict()
    c.plan.topology = ""  # v5e-8 | v4-8 | v5p-8 | v6e-8 | v5e-256 | ... | cpu-8 (this host's CPU devices)
    c.plan.model = ""  # shapes: a preset (mistral-7b, llama-3.1-8b, qwen2.5-7b, llama-3.2-1b), a dir or config.json; empty: model.name
    c.plan.programs = ("train", "prefill", "decode", "score")
    c.plan.prompt_length = 256  # sampler prompts (the cache holds these plus sampling.max_new_tokens)
    c.plan.score_length = 0  # scoring requests' tokens; 0: train.max_length
    c.plan.hbm_gib = 0.0  # the per-chip budget; 0: the chip's HBM
    c.plan.suggest = True  # compile the changes that would make a non-fitting program fit
    # The whole experiment's cost (plan/cost.py): time per stage at the roofline and at this
    # fraction of it. 0.4 is our choice; our measured H200 decode ran at 16-19% of its HBM roofline.
    c.plan.efficiency = 0.4
    c.plan.efficiency_label = "our choice; measured H200 decode: 16-19% of HBM roofline"
    c.plan.failure_fraction = 1.0  # of the training set s3ft paraphrases (1: the upper bound)
    c.plan.cost_only = False  # print the cost from analytic step times, compiling nothing (no libtpu needed)
    return c


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks that need more than a type: one-line ConfigError naming the key. Each section's
    rules live with the module that owns its settings; making them runs those checks."""
    if config.sampling.max_new_tokens < 0:
        raise ConfigError(f"sampling.max_new_tokens must be positive (or 0 for the task default), got {config.sampling.max_new_tokens}")
    run_settings(config)
    # lora.* is checked even when lora.enabled is False: a bad value waiting to be switched on is still bad.
    config.lora.targets = _lora_section(config).targets  # "q_proj,v_proj" -> ("q_proj", "v_proj")
    if config.export.dtype not in ("", "float32", "bfloat16", "float16"):
        raise ConfigError(f"export.dtype must be float32, bfloat16 or float16, got {config.export.dtype!r}")
    if config.plan.prompt_length <= 0 or config.plan.score_length < 0 or config.plan.hbm_gib < 0:
        raise ConfigError("plan.prompt_length must be positive, plan.score_length and plan.hbm_gib >= 0")
    return config


DEFAULT_MAX_NEW_TOKENS = 256


def override(config: ml_collections.ConfigDict, values: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """`config` with each dotted key of `values` set ("train.max_steps": 2), then validated: the
    code path for what `--config.train.max_steps=2` does on the command line (tests use it)."""
    for key, value in values.items():
        node = config
        *parents, leaf = key.split(".")
        try:
            for part in parents:
                node = node[part]
            node[leaf] = value
        except (KeyError, AttributeError):
            raise ConfigError(f"unknown config key {key!r}") from None
    return validate(config)


# -- the tree -> each module's typed settings (made once, at the top) -------------------------


def model_settings(config: ml_collections.ConfigDict) -> ModelSettings:
    m, mesh = config.model, config.mesh
    return ModelSettings(name=str(m.name), dtype=m.dtype, param_dtype=m.param_dtype, chat_template=m.chat_template,
                         mesh=MeshShape(data=mesh.data, fsdp=mesh.fsdp, tensor=mesh.tensor))


def task_settings(config: ml_collections.ConfigDict) -> TaskSettings:
    t = config.task
    custom = CustomTaskSettings(**{k: (tuple(v) if k == "stop" else v) for k, v in t.custom.to_dict().items()})
    return TaskSettings(name=t.name, source=t.source, train_split=t.train_split, test_split=t.test_split,
                        limit=t.limit, split=t.split, index=t.index, prompts=TaskPrompts(**t.prompts.to_dict()),
                        custom=custom, arith=ArithTaskSettings(**t.arith.to_dict()), data_dir=config.data.data_dir,
                        stop=tuple(config.sampling.stop), allow_overlap=t.allow_overlap)


def judge_settings(config: ml_collections.ConfigDict) -> JudgeSettings:
    return JudgeSettings(**config.judge.to_dict())


def eval_settings(config: ml_collections.ConfigDict) -> EvalSettings:
    e = config.eval.to_dict()
    return EvalSettings(**{**e, "benchmarks": tuple(e["benchmarks"]), "headline": tuple(e["headline"])})


def sampling_options(config: ml_collections.ConfigDict, task=None, *, max_new_tokens: int | None = None,
                     stop: tuple[str, ...] | None = None) -> SamplingOptions:
    """The sampling section for `task` (a tasks.Task): its default length and stop strings fill in."""
    s = config.sampling
    if max_new_tokens is None:
        max_new_tokens = s.max_new_tokens or (task.max_new_tokens if task is not None else DEFAULT_MAX_NEW_TOKENS)
    if stop is None:
        stop = task.stop if task is not None else tuple(s.stop)
    return SamplingOptions(max_new_tokens=max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                           stop=tuple(stop), seed=config.seed, batch_size=s.batch_size, return_logprobs=s.return_logprobs,
                           chunk=s.chunk)


def build_settings(config: ml_collections.ConfigDict, task) -> BuildSettings:
    return BuildSettings(task=task_settings(config), judge=judge_settings(config), sampling=sampling_options(config, task),
                         method=config.build.method, output=config.build.output,
                         sdft_template=config.build.sdft_template, leak_filter_s3ft=config.build.leak_filter_s3ft)


def train_settings(config: ml_collections.ConfigDict) -> TrainSettings:
    """`train.*` plus the model, its dtypes and the seed."""
    return TrainSettings(model_name=str(config.model.name), dtype=config.model.dtype, param_dtype=config.model.param_dtype,
                         chat_template=config.model.chat_template, seed=config.seed, **config.train.to_dict())


def lora_settings(config: ml_collections.ConfigDict) -> LoraSettings | None:
    """`lora.*`, or None when lora.enabled is False (full fine-tuning)."""
    return _lora_section(config) if config.lora.enabled else None


def _lora_section(config: ml_collections.ConfigDict) -> LoraSettings:
    c = config.lora
    return LoraSettings(rank=c.rank, alpha=c.alpha, dropout=c.dropout, targets=c.targets)


def run_settings(config: ml_collections.ConfigDict) -> RunSettings:
    """Everything `s3ft run` and `s3ft build` read, checked section by section."""
    from s3ft_jax.tasks import get_task

    task = get_task(task_settings(config))
    return RunSettings(workdir=config.workdir, methods=tuple(config.run.methods), model=model_settings(config),
                       build=build_settings(config, task), train=train_settings(config), lora=lora_settings(config),
                       eval=eval_settings(config), logprobs_batch_size=config.logprobs.batch_size,
                       seeds=tuple(config.run.seeds))


def key_comments() -> dict[str, str]:
    """Each key's comment in `base_config`'s source (the trailing one, else the comment lines
    just above it): the text `s3ft COMMAND --help` prints beside the key."""
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(base_config).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# "))
            continue
        m = re.match(r"c\.([\w.]+)\s*=\s*(.*?)(?:\s+#\s*(.*))?$", stripped)
        if m:
            comments[m.group(1)] = m.group(3) or " ".join(above)
        above = []
    return comments


def describe(config: ml_collections.ConfigDict, sections: tuple[str, ...]) -> str:
    """`key = value  # comment` for every key under `sections` (a section or a top-level key)."""
    comments = key_comments()
    lines = []

    def walk(node, prefix: str) -> None:
        for key in node.keys():
            path = f"{prefix}{key}"
            value = node[key]
            if isinstance(value, ml_collections.ConfigDict):
                walk(value, path + ".")
            else:
                note = comments.get(path, "")
                lines.append(f"  {path} = {value!r}" + (f"  # {note}" if note else ""))

    for section in sections:
        value = config[section]
        if isinstance(value, ml_collections.ConfigDict):
            if comments.get(section):
                lines.append(f"  # {section}: {comments[section]}")
            walk(value, section + ".")
        else:
            note = comments.get(section, "")
            lines.append(f"  {section} = {value!r}" + (f"  # {note}" if note else ""))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# The config tree -> the typed settings that the packages below take (made once, here).
