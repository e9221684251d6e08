"""Reading task data: local JSONL/CSV files (through HF `datasets`), hub names, or TFDS.

A source is one of
- a path (absolute, or relative to the data directory) ending in .jsonl/.json/.csv;
- `hf:NAME[:CONFIG]`, a Hugging Face hub dataset (needs a reachable hub or a warm HF cache);
- `tfds:NAME[:CONFIG]`, a TensorFlow Datasets builder (the optional `tfds` extra), e.g. read
  from a TFDS data dir on a TPU VM (`TFDS_DATA_DIR`).
Rows come back as plain dicts; tasks map their fields.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from s3ft_jax.errors import S3FTError
from s3ft_jax.paths import data_dir as default_data_dir

_LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv"}


def resolve_data_dir(configured: str | None) -> Path:
    path = default_data_dir(configured or None)
    if path is None:
        raise S3FTError("no data directory: set S3FT_DATA_DIR or --config.data.data_dir")
    if not path.is_dir():
        raise S3FTError(f"data directory {path} does not exist")
    return path


def load_table(source: str, *, data_dir: Path | None = None, split: str = "train") -> list[dict]:
    """Rows of one split of `source` (see the module doc)."""
    if source.startswith("hf:"):
        return _load_hub(source[3:], split)
    if source.startswith("tfds:"):
        return _load_tfds(source[5:], split)
    path = Path(source)
    if not path.is_absolute():
        if data_dir is None:
            raise S3FTError(f"relative data file {source!r} needs a data directory (S3FT_DATA_DIR or --config.data.data_dir)")
        path = Path(data_dir) / path
    if not path.is_file():
        raise S3FTError(f"missing data file {path}")
    kind = _LOCAL_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise S3FTError(f"{path}: unsupported data file type (use .jsonl, .json or .csv)")
    if kind == "json" and path.suffix.lower() == ".jsonl":
        read_jsonl(path)  # line-numbered errors; `datasets` only says "failed to parse"
    import datasets

    datasets.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    try:
        table = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as e:  # datasets raises many types; the user needs the file and reason
        raise S3FTError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return table.to_list()


def read_jsonl(path: Path) -> list[dict]:
    return [row for _, row in iter_jsonl(Path(path))]


def iter_jsonl(path: Path, missing: str = "missing data file {path}"):
    """(line number, object) for each non-blank line; a bad line is a one-line S3FTError."""
    path = Path(path)
    if not path.is_file():
        raise S3FTError(missing.format(path=path))
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise S3FTError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise S3FTError(f"{path}:{lineno}: each line must be a JSON object")
            yield lineno, row


def _load_hub(name: str, split: str) -> list[dict]:
    import datasets

    repo, _, config = name.partition(":")
    try:
        return datasets.load_dataset(repo, config or None, split=split).to_list()
    except Exception as e:
        raise S3FTError(f"cannot load hub dataset {name!r} split {split!r}: {str(e).splitlines()[0]}") from None


def _load_tfds(name: str, split: str) -> list[dict]:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise S3FTError("TFDS sources need the optional extra: pip install 's3ft-jax[tfds]'") from None
    builder, _, config = name.partition(":")
    try:
        ds = tfds.load(f"{builder}/{config}" if config else builder, split=split)
        return [{k: _plain(v) for k, v in row.items()} for row in tfds.as_numpy(ds)]
    except Exception as e:
        raise S3FTError(f"cannot load TFDS dataset {name!r} split {split!r}: {str(e).splitlines()[0]}") from None


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if hasattr(value, "tolist"):
        value = value.tolist()
        if isinstance(value, list):
            return [_plain(v) for v in value]
    return value
