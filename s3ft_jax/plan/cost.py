"""The whole experiment's cost on a slice: tokens generated and trained, benchmark requests,
drift texts, time per stage at the programs' roofline and at a stated efficiency, chip-hours.

`cost(workload, steps, efficiency)` is a pure function of counts and step times, so it is
testable without libtpu. The counts come from the config and the task's data sizes
(`workload_from_config`); the step times from the compiled programs' rows when `s3ft plan`
compiled them (`steps_from_rows`), else from the same analytic FLOPs and HBM bytes without
compiling (`analytic_steps`, the `plan.cost_only` path).

Every generation is counted at sampling.max_new_tokens (an upper bound: a response that
stops early costs less), every training row at train.max_length, every failure-dependent
stage as if every training example failed (S3FT paraphrases only the base model's failures;
`plan.failure_fraction` narrows that). Judging with an LLM is not counted.
"""

from __future__ import annotations

import dataclasses
import math

from s3ft_jax.errors import ConfigError

# (questions, scored requests = sum of choices) per benchmark, counted from /work/shared/data
# with evaluation.benchmarks.load_task (no limit), 2026-12-07. A benchmark not listed here
# is a ConfigError: its size must be counted before it can be costed.
BENCHMARK_SIZES = {
    "mmlu": (14042, 56168),
    "mmlu_5shot": (14042, 56168),  # the same questions after five dev shots: longer requests
    "truthfulqa_mc1": (817, 4186),
    "truthfulqa_mc2": (817, 6204),
    "hellaswag": (10042, 40168),
    "arc_easy": (2376, 9501),
    "arc_challenge": (1172, 4687),
    "winogrande": (1267, 2534),
    "piqa": (1838, 3676),
    "boolq": (3270, 6540),
}
# Task sizes (train, test) when the data directory is not at hand (README of shared/data).
TASK_SIZES = {"gsm8k": (7473, 1319), "mbpp": (374, 500), "nq": (87925, 3610)}


@dataclasses.dataclass(frozen=True)
class Workload:
    methods: tuple[str, ...]  # base, sft, sdft, s3ft
    seeds: int  # trained runs per trained method
    n_train: int
    n_test: int
    max_new_tokens: int
    epochs: int
    max_length: int  # training rows' length bound
    train_batch: int  # examples per optimizer step
    benchmarks: tuple[tuple[str, int, int], ...] = ()  # (name, questions, requests)
    drift: bool = True
    failure_fraction: float = 1.0  # of training examples the base model fails (s3ft paraphrases)


@dataclasses.dataclass(frozen=True)
class StepTimes:
    """Seconds per step at the roofline and what one step processes."""

    train: float  # one optimizer step of train_batch rows x max_length
    prefill: float  # one refill group of prompts
    decode: float  # one token for a whole batch
    score: float  # one batch of score_rows requests
    decode_batch: int
    prefill_group: int
    score_rows: int
    source: str = "analytic"  # "compiled" when the rows came from compiled programs


@dataclasses.dataclass(frozen=True)
class StageCost:
    stage: str
    what: str  # the count in words
    tokens: int  # tokens generated or trained (0 for scoring stages)
    steps: int
    roofline_seconds: float
    seconds: float  # at the efficiency


def _ceil(a: float, b: int) -> int:
    return -(-int(a) // max(1, b))


def cost(w: Workload, s: StepTimes, efficiency: float) -> list[StageCost]:
    """Per stage: counts, steps and seconds at the roofline and at `efficiency` of it."""
    if not 0 < efficiency <= 1:
        raise ConfigError(f"plan.efficiency must be in (0, 1], got {efficiency}")
    if not 0 <= w.failure_fraction <= 1:
        raise ConfigError(f"plan.failure_fraction must be in [0, 1], got {w.failure_fraction}")
    trained = [m for m in w.methods if m != "base"]
    evaluated = (1 if "base" in w.methods else 0) + len(trained) * w.seeds  # models evaluated
    out: list[StageCost] = []

    def add(stage, what, tokens, steps, step_seconds):
        rl = steps * step_seconds if not isinstance(step_seconds, tuple) else sum(n * t for n, t in zip(steps, step_seconds))
        total = sum(steps) if isinstance(steps, tuple) else steps
        out.append(StageCost(stage, what, int(tokens), int(total), rl, rl / efficiency))

    def generate(stage, what, requests):
        decode_steps = _ceil(requests, s.decode_batch) * w.max_new_tokens
        prefills = _ceil(requests, s.prefill_group)
        add(stage, f"{what}: {requests} x {w.max_new_tokens} new tokens", requests * w.max_new_tokens,
            (decode_steps, prefills), (s.decode, s.prefill))

    if "s3ft" in w.methods:
        generate("predict (train)", "base on the training set", w.n_train)
        generate("paraphrase (s3ft)", f"failures, {w.failure_fraction:.0%} of the training set", math.ceil(w.n_train * w.failure_fraction))
    if "sdft" in w.methods:
        generate("distill (sdft)", "every training example", w.n_train)
    if evaluated:
        generate("evaluate in-domain", f"{evaluated} models x {w.n_test} test prompts", evaluated * w.n_test)
    for m in trained:
        steps = w.epochs * _ceil(w.n_train, w.train_batch) * w.seeds
        add(f"train ({m})", f"{w.epochs} epochs x {w.n_train} examples x {w.max_length} tokens x {w.seeds} seed(s)",
            w.epochs * w.n_train * w.max_length * w.seeds, steps, s.train)
    requests = sum(r for _, _, r in w.benchmarks)
    if requests and evaluated:
        names = ", ".join(n for n, _, _ in w.benchmarks)
        add("benchmarks", f"{evaluated} models x {requests} requests ({names})", 0,
            evaluated * _ceil(requests, s.score_rows), s.score)
    if w.drift and trained and (w.n_test or w.benchmarks):
        texts = w.n_test + sum(q for _, q, _ in w.benchmarks)
        # Each text goes through the base and the tuned model.
        add("drift", f"{len(trained) * w.seeds} tuned models x {texts} texts x 2 models", 0,
            2 * len(trained) * w.seeds * _ceil(texts, s.score_rows), s.score)
    return out


def totals(stages: list[StageCost], chips: int) -> dict:
    generated = sum(c.tokens for c in stages if not c.stage.startswith("train"))
    trained = sum(c.tokens for c in stages if c.stage.startswith("train"))
    roofline = sum(c.roofline_seconds for c in stages)
    seconds = sum(c.seconds for c in stages)
    return {"tokens_generated": generated, "tokens_trained": trained, "roofline_seconds": roofline,
            "seconds": seconds, "roofline_chip_hours": roofline * chips / 3600, "chip_hours": seconds * chips / 3600}


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"


def format_cost(stages: list[StageCost], steps: StepTimes, chips: int, efficiency: float, label: str, slice_name: str) -> str:
    t = totals(stages, chips)
    lines = [
        f"Experiment cost on {slice_name} ({chips} chips); step times {steps.source}; "
        f"generation counted at max_new_tokens and training at max_length (upper bounds); "
        f"efficiency {efficiency:.0%} of roofline ({label})", "",
        "| stage | what | tokens | steps | at roofline | at efficiency |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for c in stages:
        tokens = f"{c.tokens:,}" if c.tokens else "-"
        lines.append(f"| {c.stage} | {c.what} | {tokens} | {c.steps:,} | {_hours(c.roofline_seconds)} | {_hours(c.seconds)} |")
    lines.append(f"| total | | generated {t['tokens_generated']:,}, trained {t['tokens_trained']:,} | | "
                 f"{_hours(t['roofline_seconds'])} | {_hours(t['seconds'])} |")
    lines.append(f"\n{t['roofline_chip_hours']:.1f} chip-hours at roofline, {t['chip_hours']:.1f} chip-hours at {efficiency:.0%}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# From the config.


def workload_from_config(config, sizes: tuple[int, int] | None = None) -> Workload:
    """The run's counts. `sizes` (train, test) overrides reading the task's data."""
    from s3ft_jax.config import DEFAULT_MAX_NEW_TOKENS

    n_train, n_test = sizes or _task_sizes(config)
    if config.task.limit:
        n_train = min(n_train, config.task.limit)
    if config.eval.limit:
        n_test = min(n_test, config.eval.limit)
    benchmarks = []
    for name in config.eval.benchmarks:
        if name not in BENCHMARK_SIZES:
            raise ConfigError(f"plan: no question count for benchmark {name!r}; known: {', '.join(BENCHMARK_SIZES)}")
        q, r = BENCHMARK_SIZES[name]
        if config.eval.benchmark_limit and config.eval.benchmark_limit < q:
            r, q = round(r * config.eval.benchmark_limit / q), config.eval.benchmark_limit
        benchmarks.append((name, q, r))
    return Workload(
        methods=tuple(config.run.methods), seeds=max(1, len(config.run.seeds)), n_train=n_train, n_test=n_test,
        max_new_tokens=config.sampling.max_new_tokens or DEFAULT_MAX_NEW_TOKENS, epochs=config.train.num_epochs,
        max_length=config.train.max_length, train_batch=config.train.batch_size, benchmarks=tuple(benchmarks),
        drift=bool(config.eval.drift), failure_fraction=config.plan.failure_fraction,
    )  # fmt: skip


def _task_sizes(config) -> tuple[int, int]:
    """(train, test) examples: counted from the data when it is at hand, else the known sizes."""
    from s3ft_jax.config import task_settings
    from s3ft_jax.tasks import get_task, load_examples

    settings = task_settings(config)
    try:
        task = get_task(settings)
        return len(load_examples(settings, task, settings.train_split)), len(load_examples(settings, task, settings.test_split))
    except (ConfigError, FileNotFoundError, OSError):
        if config.task.name in TASK_SIZES:
            return TASK_SIZES[config.task.name]
        raise


def analytic_steps(config, cfg, target) -> StepTimes:
    """Step times at the roofline without compiling: the FLOPs and decode bytes
    `plan.programs` attaches to the compiled programs, from the same formulas."""
    import numpy as np

    from s3ft_jax.config import DEFAULT_MAX_NEW_TOKENS, lora_settings
    from s3ft_jax.models.params import param_shapes
    from s3ft_jax.plan.programs import _causal_pairs, forward_flops
    from s3ft_jax.sampling.scheduler import batch_and_group, bucket, row_slots
    from s3ft_jax.sampling.scoring import DEFAULT_BATCH_TOKENS, _rows_for

    chips, chip = target.chips, target.chip
    tensor = max(1, config.mesh.tensor)
    multiple = max(1, chips // tensor)  # batch rows split over data x fsdp
    peak = chips * chip.peak_flops

    def at_roofline(flops, bytes_per_chip=0.0):
        return max(flops / peak, bytes_per_chip / chip.hbm_bandwidth)

    t = config.train
    rows = _ceil(t.batch_size // t.grad_accum, multiple) * multiple * t.grad_accum
    T = t.max_length
    fwd = forward_flops(cfg, rows * T, _causal_pairs(rows, T), rows * T)
    lcfg = lora_settings(config)
    if lcfg is None:
        train = 3 * fwd
    else:
        from s3ft_jax.training.lora import adapter_shapes

        adapters = sum(math.prod(s) for s in adapter_shapes(cfg, lcfg, param_shapes(cfg)).values())
        train = 2 * fwd + 6.0 * rows * T * adapters
    batch, group = batch_and_group(config.sampling.batch_size, multiple)
    max_new = config.sampling.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    prompt, slots = bucket(config.plan.prompt_length), row_slots(config.plan.prompt_length, max_new)
    itemsize = np.dtype(_np_dtype(config.model.param_dtype or config.model.dtype)).itemsize
    weights = sum(math.prod(s) for s in param_shapes(cfg).values()) * itemsize / tensor
    kv_item = np.dtype(_np_dtype(config.model.dtype)).itemsize
    cache = 2 * cfg.num_layers * batch * slots * cfg.num_kv_heads * cfg.head_dim * kv_item / chips
    length = bucket(config.plan.score_length or config.train.max_length)
    score_rows = _rows_for(length, config.eval.batch_size, DEFAULT_BATCH_TOKENS, multiple)
    return StepTimes(
        train=at_roofline(train),
        prefill=at_roofline(forward_flops(cfg, group * prompt, _causal_pairs(group, prompt), group)),
        decode=at_roofline(forward_flops(cfg, batch, batch * slots, batch), weights + cache),
        score=at_roofline(forward_flops(cfg, score_rows * length, _causal_pairs(score_rows, length), score_rows * 16)),
        decode_batch=batch, prefill_group=group, score_rows=score_rows,
    )  # fmt: skip


def _np_dtype(name: str) -> str:
    return "float16" if name == "bfloat16" else name  # same itemsize; numpy has no bfloat16


def steps_from_rows(rows, analytic: StepTimes) -> StepTimes:
    """The compiled programs' step times (max of peak and HBM roofline) where plan has them."""
    times = {r.program: max(r.peak_seconds, r.roofline_seconds) for r in rows}
    if not times:
        return analytic
    return dataclasses.replace(analytic, source="from the compiled programs", **{k: v for k, v in times.items() if k in ("train", "prefill", "decode", "score")})


def print_cost(config, rows=None, *, sizes=None, workload: Workload | None = None, out=print) -> list[StageCost]:
    """`s3ft plan`'s cost section: from compiled rows when given, else analytic step times."""
    from s3ft_jax.plan.targets import model_config, parse_slice

    if not config.plan.topology:
        raise ConfigError("set --config.plan.topology to a TPU slice, e.g. v5e-8, v4-8, v5p-8, v6e-8")
    target = parse_slice(config.plan.topology)
    workload = workload or workload_from_config(config, sizes)  # bad settings fail before the model is read
    steps = analytic_steps(config, model_config(config.plan.model or config.model.name), target)
    if rows:
        steps = steps_from_rows(rows, steps)
    stages = cost(workload, steps, config.plan.efficiency)
    out(format_cost(stages, steps, target.chips, config.plan.efficiency, config.plan.efficiency_label, target.name))
    return stages
