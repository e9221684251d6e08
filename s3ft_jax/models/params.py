"""The parameter table: one row per weight of the Llama-family decoder, from which everything
else about a weight is read: its logical axes (hence sharding and shape), its initialisation,
its Hugging Face name and layout (loading and export), and whether a LoRA adapter can sit on
it. Adding a weight is adding a row; nothing else keeps its own list of names.

Shapes follow from the axes: each logical axis has one size in a config (`axis_sizes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from s3ft_jax.models.config import ModelConfig

Index = tuple[slice, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    """A pair of inverse transforms between HF's tensor layout and ours, and `hf_index`: which
    part of the HF tensor holds a slice of ours. It gives (the HF slice to read, the index to
    take of its to_ours result); the second is all-slices except where a slice of ours is
    not one contiguous HF range (part of a head's dims), where a covering range is read."""

    to_ours: Callable[[np.ndarray, ModelConfig], np.ndarray]
    to_hf: Callable[[np.ndarray, ModelConfig], np.ndarray]
    hf_index: Callable[[Index, ModelConfig], tuple[Index, Index]]


def _whole_heads(heads: slice, c: ModelConfig) -> slice:
    # Rows heads.start*Dh .. heads.stop*Dh of a [heads*head_dim, ...] HF tensor.
    return slice(heads.start * c.head_dim, heads.stop * c.head_dim)


ALL = slice(None)


def _heads_in() -> Layout:
    # HF q/k/v: [heads*head_dim, embed] -> ours [embed, heads, head_dim]
    return Layout(
        to_ours=lambda w, c: w.T.reshape(w.shape[1], -1, c.head_dim),
        to_hf=lambda w, c: w.reshape(w.shape[0], -1).T,
        hf_index=lambda i, c: ((_whole_heads(i[1], c), i[0]), (ALL, ALL, i[2])),
    )


def _heads_bias() -> Layout:
    return Layout(
        to_ours=lambda b, c: b.reshape(-1, c.head_dim),
        to_hf=lambda b, c: b.reshape(-1),
        hf_index=lambda i, c: ((_whole_heads(i[0], c),), (ALL, i[1])),
    )


SAME = Layout(lambda w, c: w, lambda w, c: w, lambda i, c: (i, ()))
TRANSPOSE = Layout(lambda w, c: w.T, lambda w, c: w.T, lambda i, c: (i[::-1], ()))
# q and k/v differ only in their head counts, which the shapes carry.
Q_IN = KV_IN = _heads_in()
Q_BIAS = KV_BIAS = _heads_bias()
# HF o_proj: [embed, heads*head_dim] -> ours [heads, head_dim, embed]
O_OUT = Layout(
    to_ours=lambda w, c: w.T.reshape(-1, c.head_dim, w.shape[0]),
    to_hf=lambda w, c: w.reshape(-1, w.shape[-1]).T,
    hf_index=lambda i, c: ((i[2], _whole_heads(i[0], c)), (ALL, i[1], ALL)),
)


def axis_sizes(cfg: ModelConfig) -> dict[str, int]:
    """Logical axis -> its size in `cfg`."""
    return {
        "layers": cfg.num_layers, "embed": cfg.hidden_size, "norm": cfg.hidden_size, "mlp": cfg.intermediate_size,
        "q_heads": cfg.num_heads, "kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim, "vocab": cfg.vocab_size,
    }  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    path: str  # ours, dotted: "layers.q_proj.kernel" (stacked over layers when it starts with "layers.")
    axes: tuple[str, ...]  # logical axis names
    init: str  # "normal" (std 0.02) | "zeros" | "norm" (identity: ones, or zeros where the norm scales by 1 + w)
    hf: str  # the HF tensor name, a regex; LAYER stands for the layer index
    layout: Layout
    present: Callable[[ModelConfig], bool] = lambda cfg: True
    # A projection's kernel that LoRA can adapt: how many leading axes (after `layers`) are its
    # input; None: not adaptable.
    lora_inputs: int | None = None

    @property
    def group(self) -> str:
        """The projection or norm it belongs to: "q_proj", "input_norm", "embed"."""
        parts = self.path.split(".")
        return parts[-2]

    def initial(self, cfg: ModelConfig) -> str:
        """`init` resolved for `cfg`: "normal", "ones" or "zeros"."""
        if self.init == "norm":
            return "zeros" if cfg.gemma_norms else "ones"
        return self.init

    def shape(self, cfg: ModelConfig) -> tuple[int, ...]:
        sizes = axis_sizes(cfg)
        return tuple(sizes[a] for a in self.axes)


LAYER = r"model\.layers\.(\d+)\."
_qkv_bias = lambda c: c.qkv_bias  # noqa: E731
_o_bias = lambda c: c.o_bias  # noqa: E731
_mlp_bias = lambda c: c.mlp_bias  # noqa: E731
_qk_norm = lambda c: c.qk_norm  # noqa: E731
_gemma_norms = lambda c: c.gemma_norms  # noqa: E731

# In this order models are initialised (one random draw per "normal" row) and exported.
# HF's post_attention_layernorm is the MLP's input norm in Llama-style blocks, but in Gemma's
# (which also have pre_/post_feedforward_layernorm) the norm of the attention's output: one
# row either way, read by the block as its family says (llama.decoder_layer).
PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("embed.embedding", ("vocab", "embed"), "normal", r"model\.embed_tokens\.weight", SAME),
    ParamSpec("final_norm.scale", ("norm",), "norm", r"model\.norm\.weight", SAME),
    ParamSpec("layers.input_norm.scale", ("layers", "norm"), "norm", LAYER + r"input_layernorm\.weight", SAME),
    ParamSpec("layers.post_attn_norm.scale", ("layers", "norm"), "norm", LAYER + r"post_attention_layernorm\.weight", SAME),
    ParamSpec("layers.pre_mlp_norm.scale", ("layers", "norm"), "norm", LAYER + r"pre_feedforward_layernorm\.weight", SAME, _gemma_norms),
    ParamSpec("layers.post_mlp_norm.scale", ("layers", "norm"), "norm", LAYER + r"post_feedforward_layernorm\.weight", SAME, _gemma_norms),
    ParamSpec("layers.q_norm.scale", ("layers", "head_dim"), "norm", LAYER + r"self_attn\.q_norm\.weight", SAME, _qk_norm),
    ParamSpec("layers.k_norm.scale", ("layers", "head_dim"), "norm", LAYER + r"self_attn\.k_norm\.weight", SAME, _qk_norm),
    ParamSpec("layers.q_proj.kernel", ("layers", "embed", "q_heads", "head_dim"), "normal", LAYER + r"self_attn\.q_proj\.weight", Q_IN, lora_inputs=1),
    ParamSpec("layers.k_proj.kernel", ("layers", "embed", "kv_heads", "head_dim"), "normal", LAYER + r"self_attn\.k_proj\.weight", KV_IN, lora_inputs=1),
    ParamSpec("layers.v_proj.kernel", ("layers", "embed", "kv_heads", "head_dim"), "normal", LAYER + r"self_attn\.v_proj\.weight", KV_IN, lora_inputs=1),
    ParamSpec("layers.o_proj.kernel", ("layers", "q_heads", "head_dim", "embed"), "normal", LAYER + r"self_attn\.o_proj\.weight", O_OUT, lora_inputs=2),
    ParamSpec("layers.gate_proj.kernel", ("layers", "embed", "mlp"), "normal", LAYER + r"mlp\.gate_proj\.weight", TRANSPOSE, lora_inputs=1),
    ParamSpec("layers.up_proj.kernel", ("layers", "embed", "mlp"), "normal", LAYER + r"mlp\.up_proj\.weight", TRANSPOSE, lora_inputs=1),
    ParamSpec("layers.down_proj.kernel", ("layers", "mlp", "embed"), "normal", LAYER + r"mlp\.down_proj\.weight", TRANSPOSE, lora_inputs=1),
    ParamSpec("layers.q_proj.bias", ("layers", "q_heads", "head_dim"), "zeros", LAYER + r"self_attn\.q_proj\.bias", Q_BIAS, _qkv_bias),
    ParamSpec("layers.k_proj.bias", ("layers", "kv_heads", "head_dim"), "zeros", LAYER + r"self_attn\.k_proj\.bias", KV_BIAS, _qkv_bias),
    ParamSpec("layers.v_proj.bias", ("layers", "kv_heads", "head_dim"), "zeros", LAYER + r"self_attn\.v_proj\.bias", KV_BIAS, _qkv_bias),
    ParamSpec("layers.o_proj.bias", ("layers", "embed"), "zeros", LAYER + r"self_attn\.o_proj\.bias", SAME, _o_bias),
    ParamSpec("layers.gate_proj.bias", ("layers", "mlp"), "zeros", LAYER + r"mlp\.gate_proj\.bias", SAME, _mlp_bias),
    ParamSpec("layers.up_proj.bias", ("layers", "mlp"), "zeros", LAYER + r"mlp\.up_proj\.bias", SAME, _mlp_bias),
    ParamSpec("layers.down_proj.bias", ("layers", "embed"), "zeros", LAYER + r"mlp\.down_proj\.bias", SAME, _mlp_bias),
    ParamSpec("lm_head.kernel", ("embed", "vocab"), "normal", r"lm_head\.weight", TRANSPOSE,
              present=lambda c: not c.tie_word_embeddings),
)  # fmt: skip

# The projections LoRA can adapt -> their kernel's number of input axes (after `layers`).
LORA_PROJECTIONS: dict[str, int] = {p.group: p.lora_inputs for p in PARAMS if p.lora_inputs is not None}
# Each projection's HF module path, for PEFT-style names ("self_attn.q_proj", "mlp.down_proj").
HF_MODULES: dict[str, str] = {
    p.group: p.hf.removeprefix(LAYER).replace("\\.", ".").rsplit(".", 1)[0] for p in PARAMS if p.lora_inputs is not None
}


def param_specs(cfg: ModelConfig) -> dict[str, ParamSpec]:
    """Our parameter path -> its row, for the weights `cfg` has."""
    return {p.path: p for p in PARAMS if p.present(cfg)}


def param_logical_axes(cfg: ModelConfig) -> dict[str, tuple[str, ...]]:
    """Our parameter path -> logical axis names, the single source for sharding parameters."""
    return {path: p.axes for path, p in param_specs(cfg).items()}


def held_dtype(path: str, dtype, compute) -> np.dtype:
    """The dtype a weight that is only read (sampling; LoRA's frozen base) can be held in without
    changing a result: the compute dtype, to which every matmul casts its kernel anyway
    (`llama.project`, `linear`, the embedding and the LM head), when that is narrower. Norm
    scales are read in float32 (`rms_norm`) and keep their own dtype; they are tiny."""
    import jax.numpy as jnp

    dtype, compute = jnp.dtype(dtype), jnp.dtype(compute)
    if path.rsplit(".", 1)[-1] == "scale" or not jnp.issubdtype(dtype, jnp.floating):
        return dtype
    return compute if compute.itemsize < dtype.itemsize else dtype


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    return {path: p.shape(cfg) for path, p in param_specs(cfg).items()}
