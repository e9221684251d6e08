"""The decoding settings of a generation call, checked once when they are made.

`SamplingOptions` holds what stays the same across calls (lengths, sampling cuts, batch
shape); what belongs to one call (the prompts, their seed ids, `layout_from`, end-of-sequence
ids) is passed to the call itself. A bad value is a one-line `ConfigError` naming the
`sampling.*` key, the same whether the value came from a config file or from code.

This module imports nothing heavier than the errors, so the CLI can check a config's sampling
section without loading JAX.
"""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """Decoding settings; see `SamplerEngine.generate_batches` for what each one does."""

    max_new_tokens: int
    temperature: float = 0.0  # 0 is greedy
    top_p: float = 1.0  # 1: no nucleus cut
    top_k: int = 0  # 0: no top-k cut
    stop: tuple[str, ...] = ()  # a generation ends (cut before it) once its text holds one
    seed: int = 0
    batch_size: int = 32
    return_logprobs: bool = False
    chunk: int = 32  # decode steps between stop-string checks
    min_compact: int = 4  # compaction never makes a batch smaller than this
    share_prefix: int = 16  # shortest common prompt prefix that is prefilled once; 0: never
    group: int | None = None  # rows refilled at once; None: an eighth of the batch, at least 4
    fixed_batch: bool = False  # keep batch_size rows even for fewer prompts (one compiled shape)

    def __post_init__(self) -> None:
        # A bare string would be read as one stop string per character.
        if isinstance(self.stop, str) or not all(isinstance(s, str) and s for s in self.stop):
            raise ConfigError(f"sampling.stop must be a tuple of non-empty strings, got {self.stop!r}")
        object.__setattr__(self, "stop", tuple(self.stop))  # a list from a caller: hashable, unchangeable
        if self.max_new_tokens <= 0:
            raise ConfigError(f"sampling.max_new_tokens must be positive, got {self.max_new_tokens}")
        for key in ("batch_size", "chunk", "min_compact"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"sampling.{key} must be positive, got {getattr(self, key)}")
        if self.group is not None and self.group <= 0:
            raise ConfigError(f"sampling.group must be positive (or None for the default), got {self.group}")
        if self.share_prefix < 0:
            raise ConfigError(f"sampling.share_prefix must be >= 0, got {self.share_prefix}")
        if self.temperature < 0:
            raise ConfigError(f"sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"sampling.top_k must be >= 0, got {self.top_k}")
