"""The rows of a prompt file (`s3ft generate`'s input; the build writes its own), checked
without a tokenizer or JAX, so the CLI's preflight refuses a bad file in the first second and
the queue reads it by the same rules.

A row is {"id": ..., "prompt": "rendered text"} or {"id": ..., "messages": [chat turns]} or
{"id": ..., "prompt_ids": [token ids]}. Ids are unique: results are keyed by id, so a second
row with an id would be skipped as "already done" or overwrite the first one's result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from s3ft_jax import io
from s3ft_jax.errors import S3FTError


def prompt_kind(row: dict) -> str | None:
    """Which of 'prompt', 'messages', 'prompt_ids' holds the row's prompt (None: none does)."""
    if isinstance(row.get("prompt"), str) and row["prompt"]:
        return "prompt"
    if isinstance(row.get("messages"), list) and row["messages"]:
        return "messages"
    if isinstance(row.get("prompt_ids"), list) and row["prompt_ids"]:
        return "prompt_ids"
    return None


def prompt_rows(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line, row) for each row of a prompt file; a row without an id, with an id an earlier
    row has, or without a prompt is a one-line error naming `file:line`."""
    path = Path(path)
    rows, first = [], {}
    for lineno, row in io.iter_jsonl(path, missing="prompt file {path} not found"):
        if row.get("id") is None or row["id"] == "":
            raise S3FTError(f"{path}:{lineno}: each row needs an 'id'")
        key = json.dumps(row["id"])
        if key in first:
            raise S3FTError(f"{path}:{lineno}: duplicate id {row['id']!r} (first on line {first[key]})")
        first[key] = lineno
        if prompt_kind(row) is None:
            raise S3FTError(f"{path}:{lineno}: row needs a non-empty 'prompt', 'messages' or 'prompt_ids'")
        rows.append((lineno, row))
    return rows
