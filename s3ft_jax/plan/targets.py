"""What `s3ft plan` compiles for: named TPU slices (their chips' HBM, peak FLOP/s, bandwidth)
and model shapes (a checkpoint's config.json, or a preset when no checkpoint is at hand).

Slices are named as Cloud TPU names them: v5e-N and v6e-N count chips, v4-N and v5p-N count
TensorCores (two per chip), so v4-8 and v5p-8 are 4 chips. `cpu-N` plans over this host's
CPU devices (N of them, forced with XLA_FLAGS); it has no real HBM figure, so it is meant for
tests and for trying a config with `plan.hbm_gib` as the budget.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from s3ft_jax.errors import ConfigError

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    hbm_bytes: int  # per chip
    peak_flops: float  # bf16 dense, per chip
    hbm_bandwidth: float  # bytes/s per chip
    cores_per_chip: int  # how the slice name counts: TensorCores per chip (v4, v5p: 2)


# Public Cloud TPU figures per chip.
CHIPS = {
    "v4": Chip("v4", 32 * GIB, 275e12, 1.2e12, 2),
    "v5e": Chip("v5e", 16 * GIB, 197e12, 819e9, 1),
    "v5p": Chip("v5p", 95 * GIB, 459e12, 2.765e12, 2),
    "v6e": Chip("v6e", 32 * GIB, 918e12, 1.64e12, 1),
    # No meaningful figures: the budget comes from plan.hbm_gib (default 16 GiB).
    "cpu": Chip("cpu", 16 * GIB, 1e12, 1e11, 1),
}

# Chips -> the topology's bounds: 2-D tori for v5e/v6e, 3-D for v4/v5p.
_GRID_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}
_GRID_3D = {
    4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8), 256: (4, 8, 8), 512: (8, 8, 8),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Slice:
    name: str  # "v5e-8"
    chip: Chip
    chips: int
    bounds: tuple[int, ...]  # the topology's chip grid; () for cpu


def parse_slice(name: str) -> Slice:
    m = re.fullmatch(r"(v4|v5e|v5p|v6e|cpu)-(\d+)", name.strip().lower())
    if not m:
        raise ConfigError(f"unknown TPU slice {name!r}: use a name like {', '.join(known_slices())}")
    chip, count = CHIPS[m.group(1)], int(m.group(2))
    if chip.name == "cpu":
        return Slice(name, chip, count, ())
    chips, rest = divmod(count, chip.cores_per_chip)
    grids = _GRID_3D if len(chip.name) == 2 or chip.name == "v5p" else _GRID_2D
    if rest or chips not in grids:
        sizes = ", ".join(f"{chip.name}-{n * chip.cores_per_chip}" for n in grids)
        raise ConfigError(f"unknown TPU slice {name!r}: {chip.name} slices are {sizes}")
    return Slice(name, chip, chips, grids[chips])


def known_slices() -> list[str]:
    return ["v5e-8", "v5e-256", "v6e-8", "v4-8", "v5p-8", "cpu-8"]


def tpu_environment() -> None:
    """Quiet libtpu's search for TPU metadata, and let several plans load it at once (its
    lockfile guards real TPUs): we only compile, nothing runs here."""
    from s3ft_jax.hostenv import NO_TPU_SETTINGS

    for key, value in NO_TPU_SETTINGS.items():
        os.environ.setdefault(key, value)


def devices(target: Slice) -> list:
    """The slice's devices: abstract TPU devices from libtpu's topology description (nothing
    is executed on them), or this host's CPU devices."""
    import jax

    if target.chip.name == "cpu":
        cpus = jax.devices("cpu")
        if len(cpus) < target.chips:
            raise ConfigError(
                f"{target.name} needs {target.chips} CPU devices, this process has {len(cpus)} "
                f"(set XLA_FLAGS=--xla_force_host_platform_device_count={target.chips})"
            )
        return cpus[: target.chips]
    try:
        import libtpu  # noqa: F401
    except ImportError:
        raise ConfigError(f"planning for {target.name} needs libtpu: install the plan extra: pip install -e '.[plan]'") from None
    tpu_environment()
    from jax.experimental import topologies

    shape = "x".join(map(str, target.bounds))
    kwargs = {}
    if target.chip.cores_per_chip == 2:
        # One device per chip (megacore), not one per TensorCore.
        kwargs = dict(chip_config_name="megacore", chips_per_host_bounds=target.bounds if target.chips <= 4 else (2, 2, 1),
                      num_slices=1, wrap=(False, False, False))  # fmt: skip
    desc = topologies.get_topology_desc(topology_name=f"{target.chip.name}:{shape}", platform="tpu", **kwargs)
    found = list(desc.devices)
    if len(found) != target.chips:
        raise ConfigError(f"libtpu describes {len(found)} devices for {target.name}, expected {target.chips}")
    return found


# Model shapes for planning without the checkpoint at hand (the fields config.json holds).
_LLAMA3_ROPE = {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
PRESETS: dict[str, dict] = {
    "mistral-7b": {
        "architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "rope_theta": 1e6, "sliding_window": None,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "eos_token_id": 2,
    },
    "llama-3.1-8b": {
        "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "rope_theta": 500000.0,
        "rope_scaling": {**_LLAMA3_ROPE, "factor": 8.0}, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False, "eos_token_id": [128001, 128008, 128009],
    },
    "qwen2.5-7b": {
        "architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "rope_theta": 1e6,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "use_sliding_window": False,
        "eos_token_id": 151645,
    },
    "llama-3.2-1b": {
        "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "rope_theta": 500000.0,
        "rope_scaling": {**_LLAMA3_ROPE, "factor": 32.0}, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True, "eos_token_id": [128001, 128008, 128009],
    },
    "qwen3-8b": {
        "architectures": ["Qwen3ForCausalLM"], "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "rope_theta": 1e6,
        "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "use_sliding_window": False,
        "eos_token_id": 151645,
    },
    # The text model of google/gemma-3-12b-it (a Gemma3ForConditionalGeneration checkpoint).
    "gemma-3-12b": {
        "architectures": ["Gemma3ForCausalLM"], "hidden_size": 3840, "intermediate_size": 15360, "num_hidden_layers": 48,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "vocab_size": 262208,
        "query_pre_attn_scalar": 256, "rope_theta": 1e6, "rope_local_base_freq": 10000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "sliding_window": 1024, "sliding_window_pattern": 6,
        "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True, "eos_token_id": [1, 106],
    },
}  # fmt: skip
# Hub ids (any case, with or without -Instruct/-v0.x) -> preset.
_HUB = {
    "mistralai/mistral-7b": "mistral-7b", "meta-llama/llama-3.1-8b": "llama-3.1-8b", "meta-llama/meta-llama-3.1-8b": "llama-3.1-8b",
    "qwen/qwen2.5-7b": "qwen2.5-7b", "meta-llama/llama-3.2-1b": "llama-3.2-1b", "qwen/qwen3-8b": "qwen3-8b",
    "google/gemma-3-12b": "gemma-3-12b", "google/gemma-3-12b-it": "gemma-3-12b", "google/gemma-3-12b-pt": "gemma-3-12b",
}  # fmt: skip


def model_config(name: str):
    """ModelConfig for a preset name, a directory holding config.json, a config.json path,
    an embedded model or a known hub id: shapes only, no weights are read."""
    from s3ft_jax.models import embedded
    from s3ft_jax.models.config import ModelConfig

    key = str(name).strip()
    if key.lower() in PRESETS:
        return ModelConfig.from_hf_dict(PRESETS[key.lower()])
    path = Path(key).expanduser()
    if path.is_file() and path.name.endswith(".json"):
        try:
            return ModelConfig.from_hf_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
    if path.is_dir():
        return ModelConfig.from_dir(path)
    if embedded.is_embedded(key):
        return ModelConfig.from_dir(embedded.ensure_embedded_model(key))
    base = re.sub(r"(-instruct)?(-v\d+(\.\d+)*)?$", "", key.lower())
    if base in _HUB:
        return ModelConfig.from_hf_dict(PRESETS[_HUB[base]])
    raise ConfigError(f"no model shapes for {name!r}: give a checkpoint directory, a config.json, or a preset ({', '.join(PRESETS)})")
