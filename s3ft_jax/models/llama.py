"""The Llama-family decoder (Llama 2/3.x, Mistral, Qwen2, Qwen3, Gemma 3 text) as a flax.nnx
module. The families differ only in static config (models/config.py): Qwen3 and Gemma norm
each query and key head, Gemma adds norms after attention and the MLP, GeGLU, scaled
embeddings, its own attention scale, a final-logit soft cap and a second RoPE base for its
local layers.

Layer weights are stacked along a leading `layers` axis and the forward pass scans over them:
one compiled layer body instead of N unrolled copies, which keeps compile time flat in depth
(SmolLM2 has 30 layers) and leaves room for rematerialisation in training. The module holds the
parameters; the math is in pure functions below, so the sampler and trainer can call them on
plain pytrees.

Numerics follow transformers: RMSNorm, attention softmax, RoPE and the final logits in float32
whatever the compute dtype.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from s3ft_jax.models.adapter import PROJECTION_KEYS, Adapter
from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.norms import gate_activation, rms_norm, softcap
from s3ft_jax.models.params import param_specs
from s3ft_jax.models.rope import apply_rope, inverse_frequencies, rope_tables
from s3ft_jax.sharding import DEFAULT_RULES, ShardingRules

# Large finite negative: a fully masked row (a left-pad query) softmaxes to uniform, not NaN.
_MASKED = -1e30
# Stands for "no window": larger than any position difference.
_FULL_ATTENTION = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------------------
# Modules: containers of parameters, built from the parameter table (models/params.py).


class _Params(nnx.Module):
    """A named group of parameters (one projection, one norm)."""

    def __init__(self, arrays: dict[str, jax.Array]):
        for name, value in arrays.items():
            setattr(self, name, nnx.Param(value))


class LlamaForCausalLM(nnx.Module):
    """Decoder-only LM. `model(input_ids, attention_mask)` -> float32 logits [B, T, V]."""

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        param_dtype: Any = jnp.float32,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs | None = None,
        rules: ShardingRules = DEFAULT_RULES,
        mesh: jax.sharding.Mesh | None = None,
    ):
        self.cfg = cfg
        self.dtype = jnp.dtype(dtype)
        self.rules = rules
        self.mesh = mesh
        rngs = rngs or nnx.Rngs(0)
        groups: dict[str, dict[str, jax.Array]] = {}
        for path, spec in param_specs(cfg).items():
            *group, leaf = path.split(".")
            groups.setdefault(".".join(group), {})[leaf] = init_param(rngs, spec.initial(cfg), spec.shape(cfg), param_dtype)
        self.embed = _Params(groups.pop("embed"))
        self.final_norm = _Params(groups.pop("final_norm"))
        if "lm_head" in groups:
            self.lm_head = _Params(groups.pop("lm_head"))
        self.layers = nnx.Module()
        for name, arrays in groups.items():
            setattr(self.layers, name.removeprefix("layers."), _Params(arrays))

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        params = nnx.to_pure_dict(nnx.state(self, nnx.Param))
        return forward(params, self.spec, input_ids, attention_mask)

    @property
    def spec(self) -> "ForwardSpec":
        return ForwardSpec(self.cfg, self.dtype, self.rules, self.mesh)


def init_param(rngs: nnx.Rngs, init: str, shape: tuple[int, ...], dtype) -> jax.Array:
    """A fresh weight by its table row's `init`: norms start at one, biases at zero, matrices
    at N(0, 0.02^2) (drawn in float32, then cast)."""
    if init == "ones":
        return jnp.ones(shape, dtype)
    if init == "zeros":
        return jnp.zeros(shape, dtype)
    return (0.02 * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)


# ----------------------------------------------------------------------------------------
# Pure forward pass.


@dataclasses.dataclass(frozen=True)
class ForwardSpec:
    """Everything static about a forward pass: hashable, so it can be a jit static arg."""

    cfg: ModelConfig
    dtype: Any = jnp.float32
    rules: ShardingRules = DEFAULT_RULES
    mesh: jax.sharding.Mesh | None = None
    # Training only: what each layer keeps for the backward pass. "minimal" keeps the inputs
    # of its matmuls and the residual the MLP's norm reads (named below), and recomputes the
    # cheap rest: norms, RoPE, the attention softmax, SiLU. "none" keeps everything XLA's
    # autodiff saves (attention probabilities included), "full" only the layer inputs, "dots"
    # every matmul output.
    remat: str = "none"
    # Training only: "xla" is `attend` below (any mask: padding, segments, windows). "cudnn"
    # (GPU flash attention) and "dot_product" (the same call on XLA, for tests) use
    # jax.nn.dot_product_attention with causal masking and key lengths: right-padded rows of
    # one segment each, no sliding window.
    attention: str = "xla"
    # The platform the program is compiled for ("cpu", "tpu", "gpu"); empty: this process's
    # default backend. Variants picked per platform (decode attention here, the LM-head chunk
    # in training) follow it, so `s3ft plan` compiles what a TPU would run from a CPU host.
    platform: str = ""

    @property
    def backend(self) -> str:
        return self.platform or jax.default_backend()

    def constrain(self, x: jax.Array, *logical: str | None) -> jax.Array:
        if self.mesh is None:
            return x
        return jax.lax.with_sharding_constraint(x, self.rules.named(self.mesh, logical, x.shape))


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
    """Per-row positions that ignore left padding.

    Example, one row padded by two: mask [0 0 1 1 1] -> positions [0 0 0 1 2]. The pads get
    position 0 too, harmlessly: they are never attended to.
    """
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


def forward(
    params: dict,
    spec: ForwardSpec,
    input_ids: jax.Array,
    attention_mask: jax.Array | None = None,
    positions: jax.Array | None = None,
) -> jax.Array:
    """Logits [B, T, V] in float32 for a full (uncached) sequence."""
    if attention_mask is None:
        attention_mask = jnp.ones(input_ids.shape, jnp.int32)
    if positions is None:
        positions = positions_from_mask(attention_mask)
    hidden = hidden_states(params, spec, input_ids, positions, attention_mask.astype(bool))
    return logits_from_hidden(params, spec, hidden)


def hidden_states(params: dict, spec: ForwardSpec, input_ids, positions, key_valid, segment_ids=None) -> jax.Array:
    """Final-norm hidden states [B, T, D] (before the LM head).

    `segment_ids` [B, T] (packed training rows) restricts attention to tokens of the same
    segment; positions then restart at 0 in each segment.
    """
    hidden, _ = _decoder(params, spec, input_ids, positions, key_valid, cache=None, write_index=None, segment_ids=segment_ids)
    return hidden


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype) -> dict:
    """An empty KV cache: one key and one value buffer per layer, plus each slot's position and
    validity.

    Slots are shared by the whole batch (slot t holds every row's t-th token, pads included),
    but positions are per row, so rows with different amounts of left padding coexist.
    Keys are stored transposed, [batch, kv_heads, head_dim, slots], values as
    [batch, kv_heads, slots, head_dim]: both attention products then contract over a
    contiguous axis, which XLA's CPU backend runs about twice as fast as the untransposed form.
    """
    K, Dh, L = cfg.num_kv_heads, cfg.head_dim, cfg.num_layers
    return {
        "k": tuple(jnp.zeros((batch, K, Dh, length), dtype) for _ in range(L)),
        "v": tuple(jnp.zeros((batch, K, length, Dh), dtype) for _ in range(L)),
        "pos": jnp.zeros((batch, length), jnp.int32),
        "valid": jnp.zeros((batch, length), bool),
    }


def unstack_layers(params: dict) -> dict:
    """`params` with "layers" as a tuple of per-layer dicts, each weight its own buffer.

    The cached (sampling) forward pass takes this form. Scanning over stacked layers makes XLA
    copy each layer's weights (and its cache) out of the stack on every decode step before
    the matmuls read them, multiplying a step's memory traffic. (Fusing q/k/v and gate/up into
    wider matmuls gave no measurable gain: docs/performance.md.)
    """
    layers = params["layers"]
    if isinstance(layers, (tuple, list)):
        return params
    count = jax.tree.leaves(layers)[0].shape[0]
    return {**params, "layers": tuple(jax.tree.map(lambda a, i=i: a[i], layers) for i in range(count))}


def forward_cached(params: dict, spec: ForwardSpec, input_ids, positions, valid, cache: dict, write_index, attend_len: int | None = None):
    """Run T new tokens through the model, writing them into cache slots [write_index, +T).
    `write_index` is a scalar, or for T = 1 one slot per row ([B]).

    `attend_len` (static) limits attention to slots [0, attend_len): a prefill knows the
    generation slots after the prompt are still empty and need not read them.

    `params` must be unstacked (`unstack_layers`): the layers are unrolled, one compiled copy
    of the block per layer, so no step slices weights or cache out of a stack. Returns
    (hidden [B, T, D] after the final norm, updated cache). Prefill is T = prompt length at
    write_index 0; each decode step is T = 1.
    """
    return _decoder(params, spec, input_ids, positions, valid, cache=cache, write_index=write_index, attend_len=attend_len)


# Activations named with checkpoint_name in decoder_layer / lora_delta.
# "attn_res" (the residual after attention) is kept because the MLP norm's backward reads it:
# without it, remat recomputes the output projection, a full matmul per layer (the trade,
# a little more memory for a faster step, is measured in docs/performance.md).
# LoRA's dropout masks are not kept: recomputing one from its key is a single fused hash
# pass (see _hash_bits), as fast as storing it and lighter.
# With q/k norms, "q" and "k" are the projections' outputs (the norm and RoPE are recomputed);
# Gemma's norms after attention and the MLP read "attn_proj" and "mlp_proj", the outputs of
# o_proj and down_proj, which other families never name.
SAVED_ACTIVATIONS = ("norm_in", "q", "k", "v", "attn_out", "attn_res", "mlp_in", "gate", "up", "attn_proj", "mlp_proj")
_REMAT_POLICIES = {
    "full": None,  # save nothing but the layer's input
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "minimal": jax.checkpoint_policies.save_only_these_names(*SAVED_ACTIVATIONS),
}


def _decoder(params, spec: ForwardSpec, input_ids, positions, valid, *, cache, write_index, segment_ids=None, attend_len=None):
    cfg = spec.cfg
    x = jnp.take(params["embed"]["embedding"], input_ids, axis=0).astype(spec.dtype)
    if cfg.embed_scale:  # Gemma: times sqrt(hidden), rounded to the compute dtype first as HF does
        x = x * jnp.asarray(np.float32(cfg.hidden_size**0.5), spec.dtype)
    x = spec.constrain(x, "batch", "seq", "act_embed")
    cos, sin = rope_tables(positions, inverse_frequencies(cfg.rope, cfg.head_dim))
    # Gemma's sliding-window layers rotate with their own base: (cos, sin) of each layer kind.
    local = None if cfg.local_rope is None else rope_tables(positions, inverse_frequencies(cfg.local_rope, cfg.head_dim))
    windows = jnp.asarray([w or _FULL_ATTENTION for w in cfg.sliding_windows], jnp.int32)
    if cache is None:
        k_pos, k_valid = positions, valid
    else:
        k_pos = write_slots(cache["pos"], positions.astype(jnp.int32), write_index, 1)
        k_valid = write_slots(cache["valid"], valid, write_index, 1)

    if cache is None:

        same_segment = None if segment_ids is None else segment_ids[:, :, None] == segment_ids[:, None, :]

        lengths = jnp.sum(k_valid, axis=-1, dtype=jnp.int32)

        def layer(x, scanned):
            layer_params, window = scanned
            c, s = cos, sin
            if local is not None:  # the scanned layer's kind picks its tables
                c, s = (jnp.where(window < _FULL_ATTENTION, lt, gt) for lt, gt in zip(local, (cos, sin)))
            if spec.attention != "xla":
                return decoder_layer(layer_params, spec, x, c, s, lengths)[0], None
            mask = attention_mask(positions, k_pos, k_valid, window)
            if same_segment is not None:
                mask = mask & same_segment
            return decoder_layer(layer_params, spec, x, c, s, mask)[0], None

        if spec.remat != "none":
            layer = jax.checkpoint(layer, policy=_REMAT_POLICIES[spec.remat], prevent_cse=False)
        x, _ = jax.lax.scan(layer, x, (params["layers"], windows))
        return rms_norm(x, params["final_norm"]["scale"], cfg.rms_norm_eps, cfg.gemma_norms), None

    masks: dict[int, jax.Array] = {}  # one mask per distinct window size
    keys, values = [], []
    for p, window, cache_k, cache_v in zip(params["layers"], cfg.sliding_windows, cache["k"], cache["v"], strict=True):
        c, s = local if window and local is not None else (cos, sin)
        window = window or _FULL_ATTENTION
        if window not in masks:
            masks[window] = attention_mask(positions, k_pos[:, :attend_len], k_valid[:, :attend_len], window)
        x, (cache_k, cache_v) = decoder_layer(p, spec, x, c, s, masks[window], (cache_k, cache_v), write_index, attend_len)
        keys.append(cache_k)
        values.append(cache_v)
    hidden = rms_norm(x, params["final_norm"]["scale"], cfg.rms_norm_eps, cfg.gemma_norms)
    return hidden, {"k": tuple(keys), "v": tuple(values), "pos": k_pos, "valid": k_valid}


def logits_from_hidden(params: dict, spec: ForwardSpec, hidden: jax.Array) -> jax.Array:
    if spec.cfg.tie_word_embeddings:
        head, eq = params["embed"]["embedding"], "btd,vd->btv"
    else:
        head, eq = params["lm_head"]["kernel"], "btd,dv->btv"
    logits = jnp.einsum(eq, hidden, head.astype(hidden.dtype), preferred_element_type=jnp.float32)
    logits = softcap(logits, spec.cfg.final_softcap)
    return spec.constrain(logits, "batch", "seq", "act_vocab")


def attention_mask(q_pos, k_pos, k_valid, window) -> jax.Array:
    """[B, T, S] bool: causal by position, valid keys only, within the sliding window."""
    diff = q_pos[:, :, None] - k_pos[:, None, :]
    return k_valid[:, None, :] & (diff >= 0) & (diff < window)


def project(p: dict, x: jax.Array, eq: str) -> jax.Array:
    """A linear map: `kernel`, optional `bias`, optional `lora` (an adapter.Adapter)."""
    if not PROJECTION_KEYS.issuperset(p):
        raise TypeError(f"unknown projection parameters {sorted(set(p) - PROJECTION_KEYS)}: a projection holds {sorted(PROJECTION_KEYS)}")
    y = linear(x, p["kernel"].astype(x.dtype), eq)
    if "bias" in p:
        y = y + p["bias"].astype(y.dtype)
    if "lora" in p:
        if not isinstance(p["lora"], Adapter):
            raise TypeError(f"a projection's lora must be an Adapter (training.lora.attach makes one), got {type(p['lora']).__name__}")
        y = y + lora_delta(p["lora"], x, eq)
    return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def linear(x: jax.Array, kernel: jax.Array, eq: str) -> jax.Array:
    """einsum(eq, x, kernel) for a projection: x's trailing axes contract with the kernel's
    leading ones ("btd,dhk->bthk", "bthk,hkd->btd").

    The gradient is written by hand for the kernel's sake: dW = x^T @ dy as one matmul over
    all tokens. Left to autodiff, XLA's CPU backend transposed dy instead: a strided
    [tokens, d_ff] copy per MLP projection, a large share of a training step
    (docs/performance.md).
    """
    return jnp.einsum(eq, x, kernel)


def _linear_fwd(x, kernel, eq):
    return jnp.einsum(eq, x, kernel), (x, kernel)


def _linear_bwd(eq, res, dy):
    x, kernel = res
    x_axes, rest = eq.split(",")
    k_axes, out_axes = rest.split("->")
    n_in = sum(a in x_axes for a in k_axes)
    assert x_axes.endswith(k_axes[:n_in]) and out_axes == x_axes[: len(x_axes) - n_in] + k_axes[n_in:], eq
    dx = jnp.einsum(f"{out_axes},{k_axes}->{x_axes}", dy, kernel)
    rows = x.size // np.prod(kernel.shape[:n_in])
    dkernel = (x.reshape(rows, -1).T @ dy.reshape(rows, -1)).reshape(kernel.shape)
    return dx, dkernel


linear.defvjp(_linear_fwd, _linear_bwd)


def lora_delta(adapter: Adapter, x: jax.Array, eq: str) -> jax.Array:
    """LoRA's low-rank update scale * dropout(x) @ A @ B for the map `eq`.

    A has the kernel's input axes then the rank, B the rank then the kernel's output axes:
    for q_proj ("btd,dhk->bthk") A is [D, r] and B [r, H, Dh]. Dropout is on when the
    adapter has a dropout key.
    """
    a, b = adapter.weights.lora_a, adapter.weights.lora_b
    x_axes, rest = eq.split(",")
    k_axes, out_axes = rest.split("->")
    n_in = a.ndim - 1
    in_axes, kept = k_axes[:n_in], "".join(c for c in x_axes if c not in k_axes)
    if adapter.dropout_key is not None:
        mask, keep = dropout_keep_mask(adapter.dropout_key, adapter.keep, x.shape)
        x = jnp.where(mask, x / keep.astype(x.dtype), jnp.zeros((), x.dtype))
    # Through `linear` for its hand-written gradient: autodiff of the plain einsum had XLA's
    # CPU backend transpose dy (q_proj's, [tokens, d_model]) before the lora_b gradient, a
    # strided copy (docs/performance.md).
    low = linear(x, a.astype(x.dtype), f"{x_axes},{in_axes}r->{kept}r")
    y = linear(low, b.astype(x.dtype), f"{kept}r,r{k_axes[n_in:]}->{out_axes}")
    return y * adapter.scale.astype(y.dtype)


def _fmix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: a bijection on uint32 with full avalanche."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _hash_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 words for dropout: a keyed hash of each element's flat index.

    jax.random.bits (threefry) runs its rounds as a loop on CPUs, one pass over the array per
    round, a visible share of a LoRA layer's forward (docs/performance.md). This is one fused
    elementwise pass. Distinct indices give
    distinct words under one key (every stage is a bijection on uint32), and the index is
    global, so any sharding of the array draws the same mask. Good enough for dropout masks,
    not a general-purpose PRNG.
    """
    words = key.reshape(-1).astype(jnp.uint32)  # raw key data, as lora.attach stores it
    index = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    return _fmix32(_fmix32(index * jnp.uint32(0x9E3779B9) + words[0]) ^ words[-1])


def dropout_keep_mask(key: jax.Array, keep: jax.Array, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Dropout's keep mask and its exact keep probability.

    16-bit draws (two per 32-bit word when the last axis is even), so the probability is a
    multiple of 2^-16: 1 - 0.1 becomes 58982 / 65536 = 0.900009, and the kept values are
    scaled by exactly that.
    """
    if shape[-1] % 2:
        draws = _hash_bits(key, shape) >> 16
    else:
        bits = _hash_bits(key, (*shape[:-1], shape[-1] // 2))
        draws = jax.lax.bitcast_convert_type(bits, jnp.uint16).reshape(shape)
    threshold = jnp.round(keep * 65536.0).astype(jnp.uint32)
    return draws.astype(jnp.uint32) < threshold, threshold.astype(jnp.float32) / 65536.0


def write_slots(buffer: jax.Array, new: jax.Array, write_index, axis: int) -> jax.Array:
    """`buffer` (batch-major) with `new` written at slots [write_index, +T) along `axis`.

    A scalar index writes the same slots in every row; a [B] index writes each row's one new
    token (T = 1) at its own slot, for batches whose rows are at different points.
    """
    if jnp.ndim(write_index) == 0:
        start = [0] * buffer.ndim
        start[axis] = write_index
        return jax.lax.dynamic_update_slice(buffer, new, tuple(start))
    index: list = [slice(None)] * buffer.ndim
    index[0], index[axis] = jnp.arange(buffer.shape[0]), write_index
    return buffer.at[tuple(index)].set(jnp.squeeze(new, axis), mode="drop")


def decoder_layer(p: dict, spec: ForwardSpec, x, cos, sin, mask, cache=None, write_index=None, attend_len=None):
    """One block. Without a cache, attends within x. With one, this layer's (k, v) buffers, it
    writes the new k/v into slots [write_index, +T), attends to slots [0, attend_len) (all
    of them by default) and returns the updated pair."""
    cfg = spec.cfg
    h = checkpoint_name(rms_norm(x, p["input_norm"]["scale"], cfg.rms_norm_eps, cfg.gemma_norms), "norm_in")
    q = _query_or_key(p, "q", spec, h, cos, sin)
    k = _query_or_key(p, "k", spec, h, cos, sin)
    v = checkpoint_name(project(p["v_proj"], h, "btd,dhk->bthk"), "v")
    q = spec.constrain(q, "batch", "seq", "act_heads", None)
    new_cache = None
    scale = cfg.attention_scale
    if spec.attention != "xla" and cache is None:  # `mask` is then each row's length
        impl = "cudnn" if spec.attention == "cudnn" else "xla"
        own_scale = scale if cfg.query_pre_attn_scalar else None  # None: the library's 1/sqrt(Dh), as before
        attn = jax.nn.dot_product_attention(q, k, v, scale=own_scale, is_causal=True, key_value_seq_lengths=mask, implementation=impl)
        return _mlp_block(p, spec, x, attn), None
    k, v = k.transpose(0, 2, 3, 1), v.transpose(0, 2, 1, 3)  # k [B, K, Dh, T], v [B, K, T, Dh]
    if cache is not None:
        cache_k, cache_v = cache
        cache_k = write_slots(cache_k, k.astype(cache_k.dtype), write_index, 3)
        cache_v = write_slots(cache_v, v.astype(cache_v.dtype), write_index, 2)
        new_cache = cache_k, cache_v
        k, v = cache_k[..., :attend_len], cache_v[:, :, :attend_len]
    if cache is None:
        attn = attend_causal_blocks(q, k, v, mask, scale=scale)
    else:
        by_reduction = q.shape[1] == 1 and spec.backend == "cpu"
        attn = attend(q, k.astype(q.dtype), v.astype(q.dtype), mask, by_reduction=by_reduction, scale=scale)
    return _mlp_block(p, spec, x, attn), new_cache


def _query_or_key(p: dict, name: str, spec: ForwardSpec, h, cos, sin):
    """Queries or keys [B, T, heads, Dh]: the projection, with q/k norms (Qwen3, Gemma) each
    head normed, then rotated."""
    cfg = spec.cfg
    y = project(p[f"{name}_proj"], h, "btd,dhk->bthk")
    if not cfg.qk_norm:
        return checkpoint_name(apply_rope(y, cos, sin), name)
    y = rms_norm(checkpoint_name(y, name), p[f"{name}_norm"]["scale"], cfg.rms_norm_eps, cfg.gemma_norms)
    return apply_rope(y, cos, sin)


def _mlp_block(p: dict, spec: ForwardSpec, x, attn):
    """The rest of a block after attention: output projection, residual, MLP, residual.
    Gemma norms the attention's and the MLP's outputs before each residual, and its MLP's
    input with a norm of its own (Llama's post_attention_layernorm is the MLP's input norm)."""
    cfg = spec.cfg
    eps, gemma = cfg.rms_norm_eps, cfg.gemma_norms
    out = project(p["o_proj"], checkpoint_name(attn, "attn_out"), "bthk,hkd->btd")
    if gemma:
        out = rms_norm(checkpoint_name(out, "attn_proj"), p["post_attn_norm"]["scale"], eps, True)
    x = checkpoint_name(x + out, "attn_res")
    x = spec.constrain(x, "batch", "seq", "act_embed")
    h = checkpoint_name(rms_norm(x, p["pre_mlp_norm" if gemma else "post_attn_norm"]["scale"], eps, gemma), "mlp_in")
    gate = checkpoint_name(project(p["gate_proj"], h, "btd,df->btf"), "gate")
    up = checkpoint_name(project(p["up_proj"], h, "btd,df->btf"), "up")
    out = project(p["down_proj"], gate_activation(gate, cfg.activation) * up, "btf,fd->btd")
    if gemma:
        out = rms_norm(checkpoint_name(out, "mlp_proj"), p["post_mlp_norm"]["scale"], eps, True)
    return spec.constrain(x + out, "batch", "seq", "act_embed")


# Query blocks for attention over a whole sequence: at most this many, of at least this size.
_CAUSAL_BLOCKS, _MIN_CAUSAL_BLOCK = 4, 128


def attend_causal_blocks(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float | None = None) -> jax.Array:
    """`attend` over a sequence attending to itself (q, k, v from the same T tokens), in query
    blocks, each reading only the keys up to its last query.

    Keys after a query's index are always masked: in training and scoring layouts (right or
    left padding, packed segments) positions grow with the index among a row's valid tokens.
    The skipped upper triangle is a quarter of the attention work at two blocks, three
    eighths at four (measured gain: docs/performance.md). (A pad query's output may differ,
    it is never read.)
    """
    T = q.shape[1]
    blocks = max(b for b in range(1, _CAUSAL_BLOCKS + 1) if T % b == 0 and (b == 1 or T // b >= _MIN_CAUSAL_BLOCK))
    size = T // blocks
    outs = []
    for i in range(blocks):
        end = (i + 1) * size
        outs.append(attend(q[:, i * size : end], k[..., :end], v[:, :, :end], mask[:, i * size : end, :end], scale=scale))
    return outs[0] if blocks == 1 else jnp.concatenate(outs, axis=1)


def attend(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *, by_reduction: bool | None = None, scale: float | None = None
) -> jax.Array:
    """Grouped-query attention. q [B,T,H,Dh], k [B,K,Dh,S] (transposed), v [B,K,S,Dh],
    mask [B,T,S] -> [B,T,H,Dh]. Scores are scaled by `scale`, by default Dh^-0.5 (Gemma's
    is query_pre_attn_scalar^-0.5).

    Queries are regrouped as [B, K, T*G, Dh] so both products are plain batched matmuls over
    (B, K): XLA's CPU backend runs that form much faster than the 5-d einsum.

    One query per row (a decode step) on a CPU, `by_reduction` by default: each (row, kv
    head) product is then a [G, Dh] x [Dh, S] matmul that reads a cache block for only G rows
    of work, and the library's batched matmul streamed the cache slowly, on one thread.
    Written as multiply and sum, XLA's own loop fusion reads it faster (docs/performance.md).
    Accelerators keep the matmuls.
    """
    B, T, H, Dh = q.shape
    K = k.shape[1]
    G = H // K
    qg = q.reshape(B, T, K, G, Dh).transpose(0, 2, 1, 3, 4).reshape(B, K, T * G, Dh)
    if by_reduction is None:
        by_reduction = T == 1 and jax.default_backend() == "cpu"
    if by_reduction:
        scores = jnp.sum(qg.astype(jnp.float32)[..., None] * k.astype(jnp.float32)[:, :, None], axis=3)
    else:
        scores = jnp.einsum("bkqd,bkds->bkqs", qg, k, preferred_element_type=jnp.float32)
    scores = (scores * (Dh**-0.5 if scale is None else scale)).reshape(B, K, T, G, -1)
    scores = jnp.where(mask[:, None, :, None, :], scores, _MASKED)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(B, K, T * G, -1)
    if by_reduction:
        out = jnp.sum(probs.astype(jnp.float32)[..., None] * v.astype(jnp.float32)[:, :, None], axis=3).astype(v.dtype)
    else:
        out = jnp.einsum("bkqs,bksd->bkqd", probs, v)
    return out.reshape(B, K, T, G, Dh).transpose(0, 2, 1, 3, 4).reshape(B, T, H, Dh)
