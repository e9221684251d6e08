"""Minimal safetensors reader/writer on numpy memory maps.

The `safetensors` package's numpy backend cannot return bfloat16 tensors, and most real
checkpoints are bfloat16. The format is a length-prefixed JSON header followed by raw
little-endian bytes, so we read each tensor on demand with a plain positioned read: a loader
holds only the parameter it is placing, and (unlike a memory map, whose touched pages count
towards the process's resident memory until unmapped) nothing of the file stays resident.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from s3ft_jax.errors import ModelError

_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class SafetensorsFile:
    """Lazy, read-only view of one .safetensors file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                if header_len > size - 8:
                    raise ValueError("header longer than the file")
                header = json.loads(f.read(header_len))
        except (OSError, ValueError, struct.error) as e:
            raise ModelError(f"cannot read safetensors file {self.path}: {e}") from None
        header.pop("__metadata__", None)
        self._header = header
        self._data_start = 8 + header_len
        for name, info in header.items():
            start, end = info["data_offsets"]
            if self._data_start + end > size:
                raise ModelError(f"safetensors file {self.path} is truncated (tensor {name!r})")

    def keys(self) -> list[str]:
        return list(self._header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._header[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        info = self._header[name]
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ModelError(f"tensor {name!r} in {self.path} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end == start:
            return np.zeros(shape, dtype)
        count = (end - start) // dtype.itemsize
        return np.fromfile(self.path, dtype=dtype, count=count, offset=self._data_start + start).reshape(shape)


def open_checkpoint(model_dir: str | os.PathLike) -> dict[str, SafetensorsFile]:
    """HF tensor name -> the file holding it, for single or sharded checkpoints."""
    model_dir = Path(model_dir)
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map: Mapping[str, str] = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise ModelError(f"{index_path} is not a valid safetensors index: {e}") from None
        files: dict[str, SafetensorsFile] = {}
        for filename in sorted(set(weight_map.values())):
            if not (model_dir / filename).is_file():
                raise ModelError(f"missing weight file {model_dir / filename} (listed in {INDEX_FILE})")
            files[filename] = SafetensorsFile(model_dir / filename)
        return {name: files[filename] for name, filename in weight_map.items()}
    single = model_dir / SINGLE_FILE
    if not single.is_file():
        raise ModelError(f"missing weight file: no {SINGLE_FILE} or {INDEX_FILE} in {model_dir}")
    f = SafetensorsFile(single)
    return {name: f for name in f.keys()}


def save_file(tensors: Iterable[tuple[str, np.ndarray]], path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write tensors (name, array) to one .safetensors file, streaming them to disk."""
    items = [(name, np.ascontiguousarray(arr)) for name, arr in tensors]
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, arr in items:
        if arr.dtype not in _NAMES:
            raise ModelError(f"cannot save tensor {name!r} of dtype {arr.dtype}")
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the spec aligns tensor data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, arr in items:
            f.write(arr.tobytes(order="C"))
