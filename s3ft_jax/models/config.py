"""The model's shape and options, read from a Hugging Face `config.json`.

Sizes always come from the checkpoint's own config, never from a hand-typed table, so a new
Llama/Mistral/Qwen2/Qwen3/Gemma 3 size needs no code. Both config spellings are accepted:
transformers 4.x (`rope_theta` + `rope_scaling`, Gemma's `rope_local_base_freq`) and 5.x
(`rope_parameters`, per layer type for Gemma).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from s3ft_jax.errors import ModelError

# architecture -> family. All share the Llama decoder; they differ only in the flags below
# (biases, sliding windows, q/k norms, Gemma's norms, activation, scales and caps), so one
# implementation serves them.
SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Gemma3ForCausalLM": "gemma3",
}
# config.json's model_type -> architecture, for configs that name no architecture. Gemma's
# text model is "gemma3_text"; "gemma3" is the multimodal Gemma3ForConditionalGeneration.
_MODEL_TYPES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                "qwen3": "Qwen3ForCausalLM", "gemma3_text": "Gemma3ForCausalLM"}  # fmt: skip
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
# hidden_act / hidden_activation -> the activation we compute ("gelu_tanh": GELU's tanh form).
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    theta: float
    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hashable (usable as a static jit argument); `hf_json` keeps the original for export."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope: RopeConfig
    max_position_embeddings: int
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool
    # One entry per layer: the attention window in tokens, or 0 for full attention.
    sliding_windows: tuple[int, ...]
    eos_token_ids: tuple[int, ...]
    # Options of the newer families; the defaults are the Llama decoder's.
    qk_norm: bool = False  # RMSNorm over each query and key head before RoPE (Qwen3, Gemma 3)
    gemma_norms: bool = False  # norms scale by (1 + w); norms after attention and the MLP too
    activation: str = "silu"  # the MLP's gate: "silu" or "gelu_tanh"
    embed_scale: bool = False  # embeddings times sqrt(hidden_size)
    query_pre_attn_scalar: float = 0.0  # attention scale 1/sqrt(this); 0: head_dim
    # cap * tanh(logit / cap) on the final logits (Gemma's final_logit_softcapping); 0: none.
    # Its attn_logit_softcapping is not read: transformers' Gemma 3 attention never applies
    # it (Gemma 3 replaced Gemma 2's score capping by the q/k norms, and its checkpoints set
    # it null), so a model that capped scores would disagree with every exported copy.
    final_softcap: float = 0.0
    # RoPE of the sliding-window layers when it differs from `rope` (Gemma's local base).
    local_rope: RopeConfig | None = None
    hf_json: str = dataclasses.field(repr=False, compare=False, default="{}")

    @property
    def family(self) -> str:
        return SUPPORTED_ARCHITECTURES[self.architecture]

    @property
    def attention_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    @property
    def hf_config(self) -> dict[str, Any]:
        return json.loads(self.hf_json)

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any]) -> "ModelConfig":
        archs = hf.get("architectures") or []
        arch = next((a for a in archs if a in SUPPORTED_ARCHITECTURES), None)
        if arch is None:
            arch = _MODEL_TYPES.get(hf.get("model_type", ""))
        if arch is None:
            raise ModelError(
                f"unsupported architecture {archs or hf.get('model_type')!r}: "
                f"supported are {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        family = SUPPORTED_ARCHITECTURES[arch]
        gemma = family == "gemma3"
        act_key = "hidden_activation" if "hidden_activation" in hf else "hidden_act"
        act = hf.get(act_key) or ("gelu_pytorch_tanh" if gemma else "silu")
        if act not in _ACTIVATIONS:
            raise ModelError(f"unsupported {act_key} {act!r}: supported are {', '.join(_ACTIVATIONS)}")
        if gemma and hf.get("use_bidirectional_attention"):
            raise ModelError("use_bidirectional_attention is not supported: only causal attention")
        try:
            hidden, heads, layers = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]
            attention_bias = bool(hf.get("attention_bias", False))
            eos = hf.get("eos_token_id")
            rope, local_rope = _gemma_ropes(hf) if gemma else (_rope_config(hf), None)
            return cls(
                architecture=arch,
                vocab_size=hf["vocab_size"],
                hidden_size=hidden,
                intermediate_size=hf["intermediate_size"],
                num_layers=layers,
                num_heads=heads,
                num_kv_heads=hf.get("num_key_value_heads") or heads,
                head_dim=hf.get("head_dim") or hidden // heads,
                rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
                rope=rope,
                max_position_embeddings=hf.get("max_position_embeddings", 4096),
                qkv_bias=family == "qwen2" or attention_bias,
                o_bias=family in ("llama", "qwen3", "gemma3") and attention_bias,
                mlp_bias=family == "llama" and bool(hf.get("mlp_bias", False)),
                # Gemma 3 ties by default (its config.json may leave the field out).
                tie_word_embeddings=bool(hf.get("tie_word_embeddings", gemma)),
                sliding_windows=_sliding_windows(hf, family, layers),
                eos_token_ids=tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,)),
                qk_norm=family in ("qwen3", "gemma3"),
                gemma_norms=gemma,
                activation=_ACTIVATIONS[act],
                embed_scale=gemma,
                query_pre_attn_scalar=float(hf.get("query_pre_attn_scalar") or 256) if gemma else 0.0,
                final_softcap=float(hf.get("final_logit_softcapping") or 0.0) if gemma else 0.0,
                local_rope=local_rope,
                hf_json=json.dumps(hf, sort_keys=True),
            )
        except KeyError as e:
            raise ModelError(f"config.json lacks the field {e.args[0]!r}") from None

    @classmethod
    def from_dir(cls, path: str | Path) -> "ModelConfig":
        config_path = Path(path) / "config.json"
        if not config_path.is_file():
            raise ModelError(f"no config.json in {path}")
        try:
            hf = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise ModelError(f"{config_path} is not valid JSON: {e}") from None
        return cls.from_hf_dict(hf)


def _gemma_ropes(hf: dict[str, Any]) -> tuple[RopeConfig, RopeConfig]:
    """(global, local) RoPE of Gemma 3: full-attention layers use `rope_theta` (default 1e6)
    and `rope_scaling`, sliding-window layers `rope_local_base_freq` (default 1e4) unscaled;
    transformers 5 writes both as `rope_parameters` keyed by layer type."""
    params = hf.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        full, local = params.get("full_attention") or {}, params.get("sliding_attention") or {}
        length = {k: hf[k] for k in ("max_position_embeddings",) if k in hf}
        return (
            _rope_config({"rope_parameters": full, **length}, default_theta=1e6),
            _rope_config({"rope_parameters": local, **length}, default_theta=1e4),
        )
    local = {"rope_theta": hf.get("rope_local_base_freq", 1e4), "max_position_embeddings": hf.get("max_position_embeddings", 8192)}
    return _rope_config(hf, default_theta=1e6), _rope_config(local)


def _rope_config(hf: dict[str, Any], default_theta: float = 10000.0) -> RopeConfig:
    # transformers 5 folds theta and scaling into `rope_parameters`; 4.x keeps them apart.
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    merged = {**scaling, **params}
    theta = merged.get("rope_theta", hf.get("rope_theta", default_theta))
    rope_type = merged.get("rope_type", merged.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ModelError(f"unsupported rope type {rope_type!r}: supported are {', '.join(SUPPORTED_ROPE_TYPES)}")
    if merged.get("partial_rotary_factor", 1.0) != 1.0:
        raise ModelError("partial_rotary_factor != 1 is not supported")
    return RopeConfig(
        theta=float(theta),
        rope_type=rope_type,
        factor=float(merged.get("factor", 1.0)),
        low_freq_factor=float(merged.get("low_freq_factor", 1.0)),
        high_freq_factor=float(merged.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(
            merged.get("original_max_position_embeddings", hf.get("max_position_embeddings", 8192))
        ),
    )


def _sliding_windows(hf: dict[str, Any], family: str, layers: int) -> tuple[int, ...]:
    window = hf.get("sliding_window") or 0
    if family in ("qwen2", "qwen3") and not hf.get("use_sliding_window", False):
        window = 0
    layer_types = hf.get("layer_types")
    if family == "gemma3":
        # transformers' defaults: a 4096 window, and without layer_types every
        # `sliding_window_pattern`-th layer global, the others local.
        window = window or 4096
        if not layer_types:
            pattern = hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 6
            layer_types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)]
    if layer_types and window:
        if len(layer_types) != layers:
            raise ModelError(f"layer_types has {len(layer_types)} entries for num_hidden_layers={layers}")
        return tuple(window if t == "sliding_attention" else 0 for t in layer_types)
    if family in ("qwen2", "qwen3") and window:
        first = hf.get("max_window_layers", layers)
        return tuple(window if i >= first else 0 for i in range(layers))
    if family == "mistral":
        return (window,) * layers
    return (0,) * layers
