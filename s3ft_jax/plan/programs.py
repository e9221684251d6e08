"""The project's own jitted programs, lowered on abstract inputs for a target mesh.

Nothing here allocates a weight: every argument is a ShapeDtypeStruct carrying the sharding
the real run would give it (the same rules and helpers the trainer, sampler and scorer use),
and each program is the real jitted function: `training.step.compile_step`, the sampler's
`insert` (prefill) and `decode`, and log-likelihood scoring's `_score_batch`.

FLOPs are counted here, analytically: XLA's cost analysis counts a scanned layer body once
(not once per layer) and under-reports on v5e/v6e. They are model FLOPs, the lower bound: no
rematerialisation, no padding waste, attention as the causal half of T x T.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.llama import ForwardSpec
from s3ft_jax.models.params import held_dtype, param_logical_axes, param_shapes
from s3ft_jax.models.loading import to_dtype
from s3ft_jax.sampling.weights import sampling_spec
from s3ft_jax.sharding import DEFAULT_RULES

PROGRAMS = ("train", "prefill", "decode", "score")


@dataclasses.dataclass
class Program:
    name: str
    shape: str  # what one step processes, in words
    flops: float  # per step, the whole slice
    lower: Callable[[], jax.stages.Lowered]
    ideal_bytes: float = 0.0  # decode: the least HBM bytes one chip can read per step
    reads: tuple = ()  # decode: the arguments a step reads (weights, KV cache), see step_reads


def step_reads(compiled, reads) -> float:
    """HBM bytes one chip reads per step of `compiled`: its shard of every argument in `reads`,
    plus every buffer the program all-gathers (a weight gathered onto each chip is read whole).
    Collectives are counted once each in the program text: once per step for decode's loop."""
    own = sum(math.prod(x.sharding.shard_shape(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(reads))
    gathered = 0
    for m in _GATHER.finditer(compiled.as_text()):
        dims = [int(d) for d in m.group(2).split(",") if d]
        gathered += math.prod(dims) * _HLO_BYTES.get(m.group(1), 4)
    return float(own + gathered)


# `%x = bf16[4096,1792]{1,0} all-gather(...)`; async: the `-done` op's result is the gathered buffer.
_GATHER = re.compile(r"= ([a-z]+\d*)\[([\d,]*)\][^ ]* all-gather(?:-done)?\(")
_HLO_BYTES = {"bf16": 2, "f16": 2, "f32": 4, "s32": 4, "u32": 4, "s8": 1, "u8": 1, "pred": 1, "f64": 8, "s64": 8}


def _sds(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=sharding)


def _replicated(mesh, shape=(), dtype=jnp.int32) -> jax.ShapeDtypeStruct:
    return _sds(shape, dtype, NamedSharding(mesh, PartitionSpec()))


def _batch_sds(mesh, rules, shape, dtype=jnp.int32) -> jax.ShapeDtypeStruct:
    logical = ("batch", "seq", None, None)[: len(shape)]
    return _sds(shape, dtype, rules.named(mesh, logical, shape))


def abstract_params(cfg: ModelConfig, dtype, mesh, rules=DEFAULT_RULES, held=None) -> dict:
    """The model's parameters as a nested dict of ShapeDtypeStructs, sharded as loading places
    them (or as `rules` say); `held(path, dtype)` gives a leaf's dtype when it is not `dtype`."""
    from s3ft_jax.training.step import unflatten

    shapes, axes = param_shapes(cfg), param_logical_axes(cfg)
    held = held or (lambda path, d: d)
    return unflatten({p: _sds(s, held(p, dtype), rules.named(mesh, axes[p], s)) for p, s in shapes.items()})


def sampling_abstract(cfg: ModelConfig, config, spec: ForwardSpec, mesh) -> dict:
    """The weights as `sampling.weights.place` makes them: compute dtype, the sampling layout."""
    from s3ft_jax.sampling.weights import sampling_dtype

    stored = to_dtype(config.model.param_dtype or config.model.dtype)
    return abstract_params(cfg, stored, mesh, spec.rules, held=lambda path, d: sampling_dtype(path, d, spec.dtype))


def unstacked(params: dict) -> dict:
    """`models.llama.unstack_layers` on abstract values: a layer's slice keeps the rest of the spec."""

    def layer(x: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
        spec = tuple(x.sharding.spec)[1:]
        return _sds(x.shape[1:], x.dtype, NamedSharding(x.sharding.mesh, PartitionSpec(*spec)))

    count = jax.tree.leaves(params["layers"])[0].shape[0]
    return {**params, "layers": tuple(jax.tree.map(layer, params["layers"]) for _ in range(count))}


# ----------------------------------------------------------------------------------------
# Analytic FLOPs.


def layer_matmul_params(cfg: ModelConfig) -> int:
    D, F, H, K, Dh = cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    return D * H * Dh + 2 * D * K * Dh + H * Dh * D + 3 * D * F


def forward_flops(cfg: ModelConfig, tokens: int, attended: float, head_positions: int) -> float:
    """Matmul FLOPs of a forward pass over `tokens` tokens, `attended` (query, key) pairs in
    all, and the LM head on `head_positions` positions."""
    L, H, Dh = cfg.num_layers, cfg.num_heads, cfg.head_dim
    return 2.0 * tokens * L * layer_matmul_params(cfg) + 4.0 * L * H * Dh * attended + 2.0 * head_positions * cfg.hidden_size * cfg.vocab_size


def _causal_pairs(rows: int, length: int) -> float:
    return rows * length * (length + 1) / 2


def _nbytes(tree) -> int:
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------------------
# The programs.


def train_program(config, cfg: ModelConfig, mesh, platform: str) -> Program:
    from s3ft_jax.config import lora_settings, train_settings
    from s3ft_jax.training import step as step_lib
    from s3ft_jax.training.lora import adapter_tree
    from s3ft_jax.training.trainer import adapter_layout, make_tx

    t = config.train
    lcfg = lora_settings(config)
    fwd = ForwardSpec(cfg, to_dtype(config.model.dtype), DEFAULT_RULES, mesh, remat=t.remat, attention=t.attention, platform=platform)
    # As training.trainer.load_base: trained weights are float32 master copies; LoRA's frozen
    # base is held in the compute dtype (models.params.held_dtype).
    if lcfg is None:
        base = abstract_params(cfg, jnp.float32, mesh)
    else:
        compute = to_dtype(config.model.dtype)
        held = lambda path, d: held_dtype(path, d, compute)  # noqa: E731
        base = abstract_params(cfg, to_dtype(config.model.param_dtype or "float32"), mesh, held=held)
    base_sh = jax.tree.map(lambda x: x.sharding, base)
    if lcfg is None:
        params, params_sh, frozen, frozen_sh = base, base_sh, {}, {}
    else:
        a_shapes, a_sh = adapter_layout(cfg, fwd, lcfg, mesh)
        shapes = adapter_tree({p: jax.ShapeDtypeStruct(s, jnp.float32) for p, s in a_shapes.items()})
        params = jax.tree.map(lambda x, sh: _sds(x.shape, x.dtype, sh), shapes, a_sh)
        params_sh, frozen, frozen_sh = a_sh, base, base_sh
    tx, lr = make_tx(train_settings(config), max(1, t.max_steps or 1000))
    state_sh = step_lib.state_shardings(mesh, tx, params, params_sh)
    opt = jax.eval_shape(tx.init, params)
    opt = jax.tree.map(lambda x, sh: _sds(x.shape, x.dtype, sh), opt, state_sh["opt_state"])
    rng = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0)))
    state = {"step": _replicated(mesh), "params": params, "opt_state": opt, "rng": _replicated(mesh, rng.shape, rng.dtype)}

    spec = step_lib.StepSpec(forward=fwd, lora=lcfg, grad_accum=t.grad_accum)
    fn = step_lib.compile_step(spec, tx, lr, state_sh, frozen_sh, mesh)
    multiple = step_lib.rows_multiple(mesh, fwd.rules)
    rows = -(-(t.batch_size // t.grad_accum) // multiple) * multiple
    T = t.max_length
    K = rows // multiple * T  # every position carries loss: the most the head can see
    seq = (t.grad_accum, rows, T)
    loss = (t.grad_accum, multiple, K)
    rules = fwd.rules
    batch = {
        "input_ids": _sds(seq, jnp.int32, step_lib.batch_sharding(mesh, rules, seq)),
        "positions": _sds(seq, jnp.int32, step_lib.batch_sharding(mesh, rules, seq)),
        "segment_ids": _sds(seq, jnp.int32, step_lib.batch_sharding(mesh, rules, seq)),
        "loss_index": _sds(loss, jnp.int32, step_lib.batch_sharding(mesh, rules, loss)),
        "loss_labels": _sds(loss, jnp.int32, step_lib.batch_sharding(mesh, rules, loss)),
        "loss_weights": _sds(loss, jnp.float32, step_lib.batch_sharding(mesh, rules, loss)),
    }
    n_rows = rows * t.grad_accum
    fwd_flops = forward_flops(cfg, n_rows * T, _causal_pairs(n_rows, T), n_rows * T)
    if lcfg is None:
        flops = 3 * fwd_flops  # forward, then gradients for activations and for weights
    else:  # no weight gradients for the frozen base; the adapters' own matmuls are small
        adapters = sum(math.prod(s) for s in adapter_layout(cfg, fwd, lcfg, mesh)[0].values())  # all layers
        flops = 2 * fwd_flops + 6.0 * n_rows * T * adapters
    method = f"LoRA r{lcfg.rank}" if lcfg else "full"
    shape = f"{method}, {t.batch_size} x {T}" + (f" in {t.grad_accum} micro-batches" if t.grad_accum > 1 else "") + f", remat {t.remat}"
    return Program("train", shape, flops, lambda: fn.lower(state, frozen, batch))


def sampler_programs(config, cfg: ModelConfig, mesh, platform: str) -> list[Program]:
    from s3ft_jax.config import DEFAULT_MAX_NEW_TOKENS
    from s3ft_jax.sampling import sampler
    from s3ft_jax.sampling.params import SamplingParams
    from s3ft_jax.sampling.scheduler import batch_and_group, bucket, row_slots

    spec = sampling_spec(ForwardSpec(cfg, to_dtype(config.model.dtype), DEFAULT_RULES, mesh, platform=platform))
    params = unstacked(sampling_abstract(cfg, config, spec, mesh))
    batch, group = batch_and_group(config.sampling.batch_size, sampler.batch_multiple(spec))
    max_new = config.sampling.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    prompt = bucket(config.plan.prompt_length)
    slots, gen_len = row_slots(config.plan.prompt_length, max_new), bucket(max_new)

    # The decode state's shardings are whatever the real `empty_state` program gives it.
    made = sampler.empty_state.lower(spec, None, batch, slots, gen_len).compile()
    shapes = jax.eval_shape(lambda: sampler.empty_state(spec, None, batch, slots, gen_len))
    state = jax.tree.map(lambda x, sh: _sds(x.shape, x.dtype, sh), shapes, made.output_shardings)
    scalar = _replicated(mesh)
    sampling = SamplingParams(_replicated(mesh, (), jnp.float32), scalar, _replicated(mesh, (), jnp.float32))
    eos = _replicated(mesh, (max(1, len(cfg.eos_token_ids)),))
    rows = _replicated(mesh, (group,))
    ids = _batch_sds(mesh, spec.rules, (group, prompt))
    row_ids = _batch_sds(mesh, spec.rules, (group,))

    def lower_prefill():
        return sampler.insert.lower(params, spec, state, None, rows, ids, ids, row_ids, scalar, sampling, eos, scalar)

    def lower_decode():
        return sampler.decode.lower(params, spec, state, scalar, sampling, eos, scalar, scalar, scalar, bool(config.sampling.return_logprobs))

    cache_len = slots
    prefill_flops = forward_flops(cfg, group * prompt, _causal_pairs(group, prompt), group)
    decode_flops = forward_flops(cfg, batch, batch * cache_len, batch)
    # The roofline's floor: each chip reads its 1/chips share of every weight (held in the
    # compute dtype) and of the KV cache, once per step.
    ideal = (_nbytes(params) + _nbytes(state.cache)) / mesh.size
    return [
        Program("prefill", f"{group} prompts x {prompt} tokens into a batch of {batch}", prefill_flops, lower_prefill),
        Program(
            "decode", f"batch {batch}, cache {cache_len} slots, one token", decode_flops, lower_decode,
            ideal_bytes=ideal, reads=(params, state.cache),
        ),
    ]


def score_program(config, cfg: ModelConfig, mesh, platform: str) -> Program:
    from s3ft_jax.sampling import scoring
    from s3ft_jax.sampling.sampler import batch_multiple
    from s3ft_jax.sampling.scheduler import bucket

    spec = sampling_spec(ForwardSpec(cfg, to_dtype(config.model.dtype), DEFAULT_RULES, mesh, platform=platform))
    params = sampling_abstract(cfg, config, spec, mesh)
    length = bucket(config.plan.score_length or config.train.max_length)
    rows = scoring._rows_for(length, config.eval.batch_size, scoring.DEFAULT_BATCH_TOKENS, batch_multiple(spec))
    width, choices = 16, 4  # a short continuation; MMLU's four answer letters
    ids = _batch_sds(mesh, spec.rules, (rows, length))
    targets = _batch_sds(mesh, spec.rules, (rows, width))
    valid = _batch_sds(mesh, spec.rules, (rows, width), bool)
    last = _batch_sds(mesh, spec.rules, (rows, choices))
    last_valid = _batch_sds(mesh, spec.rules, (rows, choices), bool)
    flops = forward_flops(cfg, rows * length, _causal_pairs(rows, length), rows * width)
    return Program(
        "score", f"{rows} requests x {length} tokens", flops,
        lambda: scoring._score_batch.lower(params, spec, ids, ids, targets, valid, last, last_valid),
    )  # fmt: skip


def build(config, cfg: ModelConfig, mesh, platform: str, names=PROGRAMS) -> list[Program]:
    out: list[Program] = []
    if "train" in names:
        out.append(train_program(config, cfg, mesh, platform))
    if "prefill" in names or "decode" in names:
        out += [p for p in sampler_programs(config, cfg, mesh, platform) if p.name in names]
    if "score" in names:
        out.append(score_program(config, cfg, mesh, platform))
    return out
