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
    c.task.name = "gsm8k"
    c.task.split = "test"
    c.task.index = 0  # which example the `answer` command shows

    # Decoding. Greedy by default (temperature 0), one sample per prompt as in the paper.
    c.sampling = ml_collections.ConfigDict()
    c.sampling.max_new_tokens = 256
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
    for key in ("max_new_tokens", "batch_size", "chunk"):
        if sampling[key] <= 0:
            raise ConfigError(f"sampling.{key} must be positive, got {sampling[key]}")
    if sampling.temperature < 0:
        raise ConfigError(f"sampling.temperature must be >= 0, got {sampling.temperature}")
    if not 0 < sampling.top_p <= 1:
        raise ConfigError(f"sampling.top_p must be in (0, 1], got {sampling.top_p}")
    if sampling.top_k < 0:
        raise ConfigError(f"sampling.top_k must be >= 0, got {sampling.top_k}")
    if not all(isinstance(s, str) and s for s in sampling.stop):
        raise ConfigError(f"sampling.stop must be a tuple of non-empty strings, got {sampling.stop!r}")
    return config


def sampling_kwargs(config: ml_collections.ConfigDict) -> dict:
    """The config's sampling section as keyword arguments of `sampling.generate`."""
    s = config.sampling
    return dict(
        max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
        stop=tuple(s.stop), seed=config.seed, batch_size=s.batch_size, return_logprobs=s.return_logprobs,
        chunk=s.chunk,
    )


def mesh_shape(config: ml_collections.ConfigDict) -> dict[str, int]:
    return {"data": config.mesh.data, "fsdp": config.mesh.fsdp, "tensor": config.mesh.tensor}
