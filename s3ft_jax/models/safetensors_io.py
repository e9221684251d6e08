"""Safetensors files: slice reads through the `safetensors` package, and a streaming writer.

Loading reads each device's slice of a tensor, never the whole tensor per device:
`safe_open(...).get_slice(name)[index]` copies only the requested elements out of a memory
map (docs/performance.md has the measurement). A file is opened per read and closed right
after, so the pages a read touched are unmapped again and the process's resident memory stays
near the slices it holds. The writer takes the header (names, shapes, dtypes) first and then
the arrays one at a time, so an export never holds more than one tensor on the host.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open

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
    """Read-only view of one .safetensors file: names and shapes up front, data on demand."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            with safe_open(self.path, framework="numpy") as f:
                slices = {name: f.get_slice(name) for name in f.keys()}
                self._info = {name: (tuple(s.get_shape()), s.get_dtype()) for name, s in slices.items()}
        except (OSError, SafetensorError) as e:
            raise ModelError(f"cannot read safetensors file {self.path} (truncated or not safetensors?): {e}") from None

    def keys(self) -> list[str]:
        return list(self._info)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._info[name][0]

    def get(self, name: str) -> np.ndarray:
        return self.read(name, None)

    def read(self, name: str, index: tuple[slice, ...] | None) -> np.ndarray:
        """The tensor, or its `index` (a tuple of unit-step slices): only those bytes are copied."""
        dtype = self._info[name][1]
        if dtype not in _DTYPES:
            raise ModelError(f"tensor {name!r} in {self.path} has unsupported dtype {dtype}")
        with safe_open(self.path, framework="numpy") as f:
            if index is None:
                return np.asarray(f.get_tensor(name))
            return np.asarray(f.get_slice(name)[index])


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
    """Write tensors (name, array), all already in memory, to one .safetensors file."""
    items = [(name, np.asarray(arr)) for name, arr in tensors]
    write_file([(name, arr.shape, arr.dtype) for name, arr in items], (arr for _, arr in items), path, metadata)


def write_file(entries: Sequence[tuple[str, Sequence[int], np.dtype]], arrays: Iterator[np.ndarray], path, metadata: dict | None = None) -> None:
    """Write one .safetensors file from its header entries (name, shape, dtype) and then the
    arrays in the same order, each written as it arrives and then dropped."""
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, shape, dtype in entries:
        dtype = np.dtype(dtype)
        if dtype not in _NAMES:
            raise ModelError(f"cannot save tensor {name!r} of dtype {dtype}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": _NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the spec aligns tensor data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype in entries:
            arr = np.ascontiguousarray(next(arrays))
            if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
                raise ModelError(f"tensor {name!r}: got {arr.dtype}{list(arr.shape)}, the header says {np.dtype(dtype)}{list(shape)}")
            f.write(arr.reshape(-1).view(np.uint8).data)  # raw bytes, no copy (bfloat16 has no buffer format)
