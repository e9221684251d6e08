"""Reading task data: local JSONL/JSON/CSV files, hub names, or TFDS.

A source is one of
- a path (absolute, or relative to the data directory) ending in .jsonl/.json/.csv, read with
  the standard library (HF `datasets` would cost seconds of import and write an Arrow cache
  for files we read once);
- `hf:NAME[:CONFIG]`, a Hugging Face hub dataset through `datasets` (needs a reachable hub or a
  warm HF cache);
- `tfds:NAME[:CONFIG]`, a TensorFlow Datasets builder (the optional `tfds` extra), e.g. read
  from a TFDS data dir on a TPU VM (`TFDS_DATA_DIR`).
Rows come back as plain dicts; tasks map their fields. `load_rows` also says where each row
is (`file:line`), so a task can name the line of a row that lacks a field it reads (`require`)
or repeats an id (`check_unique_ids`): a missing answer must not train as the string "None".
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from s3ft_jax.errors import S3FTError
from s3ft_jax.io import iter_jsonl
from s3ft_jax.paths import data_dir as default_data_dir

def resolve_data_dir(configured: str | None) -> Path:
    path = default_data_dir(configured or None)
    if path is None:
        raise S3FTError("no data directory: set S3FT_DATA_DIR or --config.data.data_dir")
    if not path.is_dir():
        raise S3FTError(f"data directory {path} does not exist")
    return path


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a row is: line `line` of a local file, or row `line` of a hub/TFDS split."""

    source: str
    line: int
    unit: str = "line"  # "row" for hub and TFDS splits

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.unit == "line" else f"{self.source} row {self.line}"


def load_table(source: str, *, data_dir: Path | None = None, split: str = "train") -> list[dict]:
    """Rows of one split of `source` (see the module doc), every row with every column (None
    where a row lacks one), as a table reader gives them."""
    return _union_columns([row for _, row in load_rows(source, data_dir=data_dir, split=split)])


def load_rows(source: str, *, data_dir: Path | None = None, split: str = "train") -> list[tuple[Where, dict]]:
    """(where, row) for each row of one split of `source`, rows as the file has them."""
    if source.startswith(("hf:", "tfds:")):
        rows = _load_hub(source[3:], split) if source.startswith("hf:") else _load_tfds(source[5:], split)
        return [(Where(f"{source} ({split})", i, "row"), row) for i, row in enumerate(rows, 1)]
    path = Path(source)
    if not path.is_absolute():
        if data_dir is None:
            raise S3FTError(f"relative data file {source!r} needs a data directory (S3FT_DATA_DIR or --config.data.data_dir)")
        path = Path(data_dir) / path
    if not path.is_file():
        raise S3FTError(f"missing data file {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        lines = iter_jsonl(path)
    elif suffix == ".json":
        lines = _read_json(path)
    elif suffix == ".csv":
        lines = _read_csv(path)
    else:
        raise S3FTError(f"{path}: unsupported data file type (use .jsonl, .json or .csv)")
    return [(Where(str(path), line), row) for line, row in lines]


def require(row: dict, where: Where, *fields: str) -> None:
    """Each of `fields` is in `row` with a value: not null, not blank text, not an empty list
    (nor one with a null or blank item). Else one line naming the row's `file:line`."""
    for field in fields:
        if field not in row:
            raise S3FTError(f"{where}: no field {field!r} (the row has {', '.join(map(repr, row)) or 'no fields'})")
        value = row[field]
        items = value if isinstance(value, list) else [value]
        if not items or any(v is None or (isinstance(v, str) and not v.strip()) for v in items):
            raise S3FTError(f"{where}: field {field!r} is {'null' if value is None else 'empty'} ({json.dumps(value)[:40]})")


def check_unique_ids(ids: Iterable[tuple[str, Where]]) -> None:
    """No id twice: a repeated one would make two rows one wherever rows are found by id."""
    first: dict[str, Where] = {}
    for id_, where in ids:
        if id_ in first:
            seen = first[id_]
            also = f"{seen.unit} {seen.line}" if seen.source == where.source else str(seen)
            raise S3FTError(f"{where}: duplicate id {id_!r} (first on {also})")
        first[id_] = where


def _read_json(path: Path) -> list[tuple[int, dict]]:
    """A JSON array of objects, or JSON lines under a .json name (as `datasets` accepts)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            return list(iter_jsonl(path))
        raise S3FTError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if isinstance(data, dict):
        return [(1, data)]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise S3FTError(f"{path}: expected a JSON array of objects (or one object per line)")
    return list(zip(_array_item_lines(text), data))


_BETWEEN_ITEMS = re.compile(r"[ \t\r\n,]*")


def _array_item_lines(text: str) -> list[int]:
    """The line each item of a valid JSON array starts on (for messages that name `file:line`)."""
    decoder, lines = json.JSONDecoder(), []
    pos, line = text.index("[") + 1, text.count("\n", 0, text.index("[")) + 1
    while True:
        start = _BETWEEN_ITEMS.match(text, pos).end()
        line += text.count("\n", pos, start)
        if text[start] == "]":
            return lines
        lines.append(line)
        _, pos = decoder.raw_decode(text, start)
        line += text.count("\n", start, pos)


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise S3FTError(f"{path}: empty CSV file (the first line must name the columns)")
        rows = []
        for row in reader:
            if None in row:  # more cells than header names
                raise S3FTError(f"{path}:{reader.line_num}: more values than the header's {len(reader.fieldnames)} columns")
            rows.append((reader.line_num, row))  # the record's last line: its only one unless a quoted cell spans lines
    return rows


def _union_columns(rows: list[dict]) -> list[dict]:
    """Every row gets every column (None where missing), as a table reader gives them."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [row if len(row) == len(columns) else {k: row.get(k) for k in columns} for row in rows]


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
