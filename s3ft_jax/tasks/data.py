"""Reading task data from the configured local data directory."""

from __future__ import annotations

import json
from pathlib import Path

from s3ft_jax.errors import S3FTError
from s3ft_jax.paths import data_dir as default_data_dir


def resolve_data_dir(configured: str | None) -> Path:
    path = default_data_dir(configured or None)
    if path is None:
        raise S3FTError("no data directory: set S3FT_DATA_DIR or --config.data.data_dir")
    if not path.is_dir():
        raise S3FTError(f"data directory {path} does not exist")
    return path


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise S3FTError(f"missing data file {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise S3FTError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    return rows
