"""`s3ft plan`: compile the project's programs ahead of time for a TPU slice and say whether
they fit, without the slice and without weights.

    s3ft plan --config=configs/paper.py:gsm8k --config.plan.topology=v5e-8

For each program (training step, sampler prefill and decode step, log-likelihood scoring) it
prints the compiler's per-chip memory (arguments, temporaries, total) against the chip's HBM,
the analytic FLOPs of one step with its time at the chip's peak (a lower bound), and for
decode the HBM bytes one chip reads per step as compiled (its shares of the weights and KV
cache plus whatever the program all-gathers) beside the ideal (the shares alone), with the
time at the bandwidth roofline. A
program that does not fit gets the compiler's complaint as one line and the changes that make
it fit, each checked by compiling it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import time

from s3ft_jax.errors import ConfigError
from s3ft_jax.plan.targets import GIB, PRESETS, Slice, model_config, parse_slice

__all__ = ["PRESETS", "PlanRow", "format_table", "plan", "parse_slice"]


@dataclasses.dataclass
class PlanRow:
    program: str
    shape: str
    fits: bool
    argument_bytes: int = 0
    temp_bytes: int = 0
    total_bytes: int = 0  # arguments + outputs not aliased to them + temporaries
    needed_bytes: int = 0  # what the compiler said it needs, when it refused
    flops: float = 0.0
    peak_seconds: float = 0.0
    bytes_per_chip: float = 0.0  # decode: HBM bytes one chip reads per step, as compiled
    ideal_bytes: float = 0.0  # decode: its shares of the weights and KV cache, read once
    roofline_seconds: float = 0.0
    compile_seconds: float = 0.0
    error: str = ""  # one line, when it does not fit
    suggestions: list[str] = dataclasses.field(default_factory=list)


def _budget(config, target: Slice) -> int:
    return int(config.plan.hbm_gib * GIB) if config.plan.hbm_gib else target.chip.hbm_bytes


def oom_line(message: str, target: Slice, budget: int) -> tuple[str, int]:
    """The compiler's out-of-memory report as one line, and the bytes it needed (0 if unknown)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

    def size(text: str) -> int:
        m = re.fullmatch(r"([\d.]+)\s*([KMGT])i?B?", text.strip())
        return int(float(m.group(1)) * units[m.group(2)]) if m else 0

    patterns = (
        (r"Used ([\d.]+\s*[KMGT]i?B?) of ([\d.]+\s*[KMGT]i?B?) hbm", ""),
        (r"HLO temporaries \(([\d.]+\s*[KMGT]i?B?)\) exceeds available HBM \(([\d.]+\s*[KMGT]i?B?)\)", " for temporaries alone"),
    )
    for pattern, what in patterns:
        m = re.search(pattern, message)
        if m and size(m.group(1)):
            # The compiler's own figure for what a program may use (v5e: 15.75 of 16 GiB).
            needed, usable = size(m.group(1)), size(m.group(2)) or budget
            return f"needs {_size(needed)} per chip{what}, {target.chip.name} has {_size(usable)} usable", needed
    first = next((line.strip() for line in message.splitlines() if line.strip()), "compile failed")
    return first[:200], 0


def _compile(program, config, target: Slice) -> PlanRow:
    budget = _budget(config, target)
    row = PlanRow(program.name, program.shape, fits=False, flops=program.flops, ideal_bytes=program.ideal_bytes)
    row.peak_seconds = program.flops / (target.chips * target.chip.peak_flops)
    start = time.perf_counter()
    try:
        compiled = program.lower().compile()
    except Exception as e:  # the compiler's RESOURCE_EXHAUSTED (XlaRuntimeError) among others
        text = str(e)
        if "RESOURCE_EXHAUSTED" not in text and "exceeds available" not in text and "Ran out of memory" not in text:
            raise
        row.error, row.needed_bytes = oom_line(text, target, budget)
        row.compile_seconds = time.perf_counter() - start
        return row
    row.compile_seconds = time.perf_counter() - start
    if program.reads:
        from s3ft_jax.plan.programs import step_reads

        row.bytes_per_chip = step_reads(compiled, program.reads)
        row.roofline_seconds = row.bytes_per_chip / target.chip.hbm_bandwidth
    m = compiled.memory_analysis()
    row.argument_bytes, row.temp_bytes = int(m.argument_size_in_bytes), int(m.temp_size_in_bytes)
    row.total_bytes = int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)
    row.fits = row.total_bytes <= budget
    if not row.fits:  # a CPU target (or a budget below the chip's): the compiler did not refuse
        row.needed_bytes = row.total_bytes
        row.error = f"needs {_size(row.total_bytes)} per chip, {target.chip.name} has {_size(budget)}"
    return row


def _size(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / 2**20:.2f} MiB"


def _candidates(config, program: str, devices: int) -> list[tuple[str, dict]]:
    """Changes that may make `program` fit, as (description, {config key: value})."""
    t, out = config.train, []
    all_fsdp = {"mesh.data": 1, "mesh.fsdp": -1, "mesh.tensor": 1}
    more_fsdp = (config.mesh.data != 1 or config.mesh.tensor != 1) and config.mesh.fsdp != devices
    if program == "train":
        if t.remat != "full":
            out.append(("train.remat=full", {"train.remat": "full"}))
        if more_fsdp:
            out.append(("all devices on fsdp", all_fsdp))
        if t.batch_size % (2 * t.grad_accum) == 0:
            out.append((f"train.grad_accum={2 * t.grad_accum} (same batch)", {"train.grad_accum": 2 * t.grad_accum}))
        if t.batch_size > 1:
            half = t.batch_size // 2
            out.append((f"train.batch_size={half}", {"train.batch_size": half, "train.grad_accum": min(t.grad_accum, half)}))
        return out
    # (No param_dtype change: sampling holds the weights in the compute dtype already.)
    if more_fsdp:
        out.append(("all devices on fsdp", all_fsdp))
    key = "eval.batch_size" if program == "score" else "sampling.batch_size"
    size = config.eval.batch_size if program == "score" else config.sampling.batch_size
    rows_multiple = devices // max(1, config.mesh.tensor)  # batch rows split over data x fsdp
    for smaller in (size // 2, size // 4):
        if smaller >= rows_multiple:
            out.append((f"{key}={smaller}", {key: smaller}))
    return out


def _with(config, changes: dict):
    new = copy.deepcopy(config)
    for key, value in changes.items():
        section, name = key.split(".")
        new[section][name] = value
    return new


def plan(config, *, log=print) -> tuple[Slice, object, list[PlanRow]]:
    """Compile the configured programs for config.plan.topology: (slice, model config, rows)."""
    from s3ft_jax.plan import programs as programs_lib

    p = config.plan
    if not p.topology:
        raise ConfigError("set --config.plan.topology to a TPU slice, e.g. v5e-8, v4-8, v5p-8, v6e-8, v5e-256")
    target = parse_slice(p.topology)
    unknown = sorted(set(p.programs) - set(programs_lib.PROGRAMS))
    if unknown or not p.programs:
        raise ConfigError(f"plan.programs takes {', '.join(programs_lib.PROGRAMS)}; got {tuple(p.programs)!r}")
    devices = _devices(target)  # before the model: a missing libtpu is reported at once
    cfg = model_config(p.model or config.model.name)
    platform = "cpu" if target.chip.name == "cpu" else "tpu"

    def compile_all(cfg_, names):
        mesh = _mesh(cfg_, devices)
        return [_compile(prog, cfg_, target) for prog in programs_lib.build(cfg_, cfg, mesh, platform, names)]

    rows = compile_all(config, tuple(p.programs))
    for row in rows:
        log(f"compiled {row.program} in {row.compile_seconds:.0f}s: {'fits' if row.fits else row.error}")
        if row.fits or not p.suggest:
            continue
        for description, changes in _candidates(config, row.program, len(devices)):
            try:
                (alt,) = compile_all(_with(config, changes), (row.program,))
            except ConfigError as e:
                row.suggestions.append(f"{description}: {e}")
                continue
            verdict = f"fits, {_size(alt.total_bytes)} per chip" if alt.fits else alt.error
            row.suggestions.append(f"{description}: {verdict}")
            log(f"  {description}: {verdict}")
    return target, cfg, rows


def _devices(target: Slice) -> list:
    from s3ft_jax.plan.targets import devices

    return devices(target)


def _mesh(config, devices):
    from s3ft_jax.config import model_settings
    from s3ft_jax.sharding import make_mesh

    return make_mesh(model_settings(config).mesh.as_dict(), devices=devices)


def _seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def format_table(config, target: Slice, cfg, rows: list[PlanRow]) -> str:
    """The plan as a Markdown table, with the non-fitting programs' fixes below it."""
    budget = _budget(config, target)
    sizes = {"data": config.mesh.data, "fsdp": config.mesh.fsdp, "tensor": config.mesh.tensor}
    rest = [k for k, v in sizes.items() if v == -1]
    if rest:  # "all remaining devices", as make_mesh resolves it
        sizes[rest[0]] = target.chips // max(1, -math.prod(sizes.values()))
    mesh = " x ".join(f"{k} {v}" for k, v in sizes.items())
    head = (
        f"{target.name}: {target.chips} x {target.chip.name}, {budget / GIB:.0f} GiB HBM per chip; "
        f"model {config.plan.model or config.model.name} ({cfg.num_layers} layers, hidden {cfg.hidden_size}), "
        f"{config.model.dtype} compute, params {config.model.param_dtype or config.model.dtype}; mesh {mesh}"
    )
    lines = [
        head, "",
        "| program | step | arguments GiB | temporaries GiB | total GiB / chip | fits | TFLOPs / step | at peak | HBM GB / chip / step | ideal GB | at HBM roofline |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        if r.error and not r.total_bytes:
            mem = f"| - | - | {r.needed_bytes / GIB:.1f} (needed) |" if r.needed_bytes else "| - | - | - |"
        else:
            mem = f"| {r.argument_bytes / GIB:.2f} | {r.temp_bytes / GIB:.2f} | {r.total_bytes / GIB:.2f} |"
        if r.bytes_per_chip:
            hbm = f"{r.bytes_per_chip / 1e9:.2f} | {r.ideal_bytes / 1e9:.2f} | {_seconds(r.roofline_seconds)}"
        else:
            hbm = "- | - | -"
        lines.append(f"| {r.program} | {r.shape} {mem} {'yes' if r.fits else 'no'} | {r.flops / 1e12:.1f} | {_seconds(r.peak_seconds)} | {hbm} |")
    for r in rows:
        if not r.fits:
            lines.append(f"\n{r.program} does not fit: {r.error}")
            lines += [f"  - {s}" for s in r.suggestions]
    return "\n".join(lines)
