"""The model's shape and options, read from a Hugging Face `config.json`.

Sizes always come from the checkpoint's own config, never from a hand-typed table, so a new
Llama/Mistral/Qwen2 size needs no code. Both config spellings are accepted: transformers 4.x
(`rope_theta` + `rope_scaling`) and 5.x (`rope_parameters`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from s3ft_jax.errors import ModelError

# architecture -> family. All three share the Llama decoder; they differ only in the flags
# below (biases, sliding windows), so one implementation serves them.
SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")


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
    hf_json: str = dataclasses.field(repr=False, compare=False, default="{}")

    @property
    def family(self) -> str:
        return SUPPORTED_ARCHITECTURES[self.architecture]

    @property
    def hf_config(self) -> dict[str, Any]:
        return json.loads(self.hf_json)

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any]) -> "ModelConfig":
        archs = hf.get("architectures") or []
        arch = next((a for a in archs if a in SUPPORTED_ARCHITECTURES), None)
        if arch is None:
            arch = {v: k for k, v in SUPPORTED_ARCHITECTURES.items()}.get(hf.get("model_type", ""))
        if arch is None:
            raise ModelError(
                f"unsupported architecture {archs or hf.get('model_type')!r}: "
                f"supported are {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        if hf.get("hidden_act", "silu") not in ("silu", "swish"):
            raise ModelError(f"unsupported hidden_act {hf['hidden_act']!r}: only silu is supported")
        try:
            hidden, heads, layers = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]
            family = SUPPORTED_ARCHITECTURES[arch]
            eos = hf.get("eos_token_id")
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
                rope=_rope_config(hf),
                max_position_embeddings=hf.get("max_position_embeddings", 4096),
                qkv_bias=family == "qwen2" or bool(hf.get("attention_bias", False)),
                o_bias=family == "llama" and bool(hf.get("attention_bias", False)),
                mlp_bias=family == "llama" and bool(hf.get("mlp_bias", False)),
                tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
                sliding_windows=_sliding_windows(hf, family, layers),
                eos_token_ids=tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,)),
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


def _rope_config(hf: dict[str, Any]) -> RopeConfig:
    # transformers 5 folds theta and scaling into `rope_parameters`; 4.x keeps them apart.
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    merged = {**scaling, **params}
    theta = merged.get("rope_theta", hf.get("rope_theta", 10000.0))
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
    if family == "qwen2" and not hf.get("use_sliding_window", False):
        window = 0
    layer_types = hf.get("layer_types")
    if layer_types and window:
        return tuple(window if t == "sliding_attention" else 0 for t in layer_types)
    if family == "qwen2" and window:
        first = hf.get("max_window_layers", layers)
        return tuple(window if i >= first else 0 for i in range(layers))
    if family == "mistral":
        return (window,) * layers
    return (0,) * layers
