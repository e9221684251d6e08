"""Reading task data: local JSONL/JSON/CSV files, hub names, or TFDS.

A source is one of
- a path (absolute, or relative to the data directory) ending in .jsonl/.json/.csv, read with
  the standard library (HF `datasets` would cost seconds of import and write an Arrow cache
  for files we read once);
- `hf:NAME[:CONFIG]`, a Hugging Face hub dataset through `datasets` (needs a reachable hub or a
  warm HF cache);
- `tfds:NAME[:CONFIG]`, a TensorFlow Datasets builder (the optional `tfds` extra), e.g. read
  from a TFDS data dir on a TPU VM (`TFDS_DATA_DIR`).
Rows come back as plain dicts; tasks map their fields.
"""

from __future__ import annotations

import csv
import json
import logging
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
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = read_jsonl(path)
    elif suffix == ".json":
        rows = _read_json(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    else:
        raise S3FTError(f"{path}: unsupported data file type (use .jsonl, .json or .csv)")
    return _union_columns(rows)


def _read_json(path: Path) -> list[dict]:
    """A JSON array of objects, or JSON lines under a .json name (as `datasets` accepts)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            return read_jsonl(path)
        raise S3FTError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise S3FTError(f"{path}: expected a JSON array of objects (or one object per line)")
    return data


def _read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise S3FTError(f"{path}: empty CSV file (the first line must name the columns)")
        rows = []
        for row in reader:
            if None in row:  # more cells than header names
                raise S3FTError(f"{path}:{reader.line_num}: more values than the header's {len(reader.fieldnames)} columns")
            rows.append(row)
    return rows


def _union_columns(rows: list[dict]) -> list[dict]:
    """Every row gets every column (None where missing), as a table reader gives them."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [row if len(row) == len(columns) else {k: row.get(k) for k in columns} for row in rows]


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

    datasets.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)
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
