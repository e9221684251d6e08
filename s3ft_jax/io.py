"""Files: the one module that reads and writes the project's JSONL, JSON and text files, and
hashes files and values. Every stage goes through it, so a rule changes in one place:

- JSONL is one JSON object per line. A line that is not one is a one-line `S3FTError` naming
  `file:line`. Files grown batch by batch can end in a torn line after a crash (`kill -9`
  mid-write): `read_jsonl(path, repair=True)` cuts it off (the writer process does the cut)
  and returns the whole lines.
- `append_jsonl` writes whole lines and fsyncs: a batch is on disk once the call returns.
- `atomic_write_*` write a temporary sibling, fsync it and rename it over the target: a reader
  sees the old file or the new one, never half of one.
- On several processes only process 0 writes (`is_writer()`); the writers here do nothing on
  the others, which read what process 0 wrote (the workdir is on storage every host sees).
- Digests: `file_digest` is the sha256 of a file's bytes; `json_digest` the first 16 hex
  digits of the sha256 of a value's canonical JSON: what stage and run fingerprints are made of.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from s3ft_jax.errors import S3FTError


def is_writer() -> bool:
    """True in the process that writes files: process 0 (or the only one)."""
    import jax

    return jax.process_index() == 0


# ---------------------------------------------------------------------------------------------
# Reading


def iter_jsonl(path: str | os.PathLike, *, missing: str = "missing data file {path}", repair: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line. `missing` is the error for an absent
    file; with `repair`, a torn last line (no newline) is cut from the file and skipped."""
    path = Path(path)
    if not path.is_file():
        raise S3FTError(missing.format(path=path))
    data = path.read_bytes()
    end = len(data)
    if repair:
        end = data.rfind(b"\n") + 1
        if end < len(data) and is_writer():
            with open(path, "r+b") as f:
                f.truncate(end)
    try:
        text = data[:end].decode("utf-8")
    except UnicodeDecodeError as e:
        raise S3FTError(f"{path}: not UTF-8 text (byte {e.start})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise S3FTError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise S3FTError(f"{path}:{lineno}: each line must be a JSON object")
        yield lineno, row


def read_jsonl(path: str | os.PathLike, *, missing: str = "missing data file {path}", repair: bool = False) -> list[dict]:
    return [row for _, row in iter_jsonl(path, missing=missing, repair=repair)]


def read_json(path: str | os.PathLike, *, missing: str = "missing file {path}"):
    path = Path(path)
    if not path.is_file():
        raise S3FTError(missing.format(path=path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise S3FTError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


# ---------------------------------------------------------------------------------------------
# Writing (process 0 only)


def _jsonl_text(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Append whole lines and fsync them."""
    if not is_writer():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(_jsonl_text(rows))
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    if not is_writer():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, value, *, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, _jsonl_text(rows))


# ---------------------------------------------------------------------------------------------
# Digests


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex), read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def json_digest(value) -> str:
    """16 hex digits of the sha256 of `value` as canonical JSON (sorted keys; other types as str)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
