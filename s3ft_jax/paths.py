"""Where the project reads data and keeps its caches.

`S3FT_HOME` (default `~/.cache/s3ft_jax`) holds models built once, such as the embedded
SmolLM2 converted from GGUF. `S3FT_DATA_DIR` points at local copies of the datasets; the
Makefile sets it to `../shared/data` when that folder exists.
"""

from __future__ import annotations

import os
from pathlib import Path


def s3ft_home() -> Path:
    return Path(os.environ.get("S3FT_HOME") or Path.home() / ".cache" / "s3ft_jax").expanduser()


def data_dir(override: str | os.PathLike | None = None) -> Path | None:
    """The local dataset directory, or None when neither the config nor the env names one."""
    value = override or os.environ.get("S3FT_DATA_DIR")
    return Path(value).expanduser() if value else None
