"""HF checkpoint <-> our parameters, driven by the parameter table (models/params.py).

Each row says: this HF tensor name (a regex; a layer index when the tensor is per-layer) is
that parameter of ours, converted by that layout transform. Loading reads the table forwards;
export reads it backwards, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jax
import numpy as np

from s3ft_jax.errors import ModelError
from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.params import ALL, LAYER, PARAMS, Index, Layout
from s3ft_jax.models.safetensors_io import INDEX_FILE, SINGLE_FILE, write_file


# (HF name pattern, our parameter path, layout), read off the parameter table.
WEIGHT_TABLE: tuple[tuple[str, str, Layout], ...] = tuple((p.hf, p.path, p.layout) for p in PARAMS)
_COMPILED = tuple((re.compile(p), ours, layout) for p, ours, layout in WEIGHT_TABLE)
# Buffers some exporters write that carry no weights of their own.
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")


def hf_name(pattern: str, layer: int | None) -> str:
    name = pattern.replace(LAYER, f"model.layers.{layer}.") if layer is not None else pattern
    return name.replace("\\.", ".")


@dataclasses.dataclass(frozen=True)
class Source:
    """Where one slice of one of our parameters comes from."""

    hf_name: str
    layer: int | None
    layout: Layout


def plan_load(files: dict, cfg: ModelConfig, wanted: dict[str, tuple[int, ...]]) -> dict[str, list[Source]]:
    """Our parameter path -> its HF sources in layer order, checking names and shapes."""
    plan: dict[str, dict[int | None, Source]] = {path: {} for path in wanted}
    unknown = []
    for name in files:
        for regex, ours, layout in _COMPILED:
            m = regex.fullmatch(name)
            if m:
                break
        else:
            if not _IGNORED.fullmatch(name):
                unknown.append(name)
            continue
        if ours not in wanted:
            if ours == "lm_head.kernel" and cfg.tie_word_embeddings:
                continue  # some tied checkpoints still store a copy of the head
            raise ModelError(f"checkpoint tensor {name!r} has no place in this {cfg.architecture} config")
        layer = int(m.group(1)) if m.groups() else None
        if layer is not None and not 0 <= layer < cfg.num_layers:
            raise ModelError(f"checkpoint tensor {name!r} is beyond num_hidden_layers={cfg.num_layers}")
        plan[ours][layer] = Source(name, layer, layout)
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ModelError(f"unexpected tensor {unknown[0]!r} in checkpoint{more}")
    ordered: dict[str, list[Source]] = {}
    for path, shape in wanted.items():
        per_layer = path.startswith("layers.")
        expected = list(range(cfg.num_layers)) if per_layer else [None]
        missing = [i for i in expected if i not in plan[path]]
        if missing:
            pattern = next(p for p, ours, _ in WEIGHT_TABLE if ours == path)
            raise ModelError(f"checkpoint lacks tensor {hf_name(pattern, missing[0])!r}")
        ordered[path] = [plan[path][i] for i in expected]
        for src in ordered[path]:
            got = files[src.hf_name].shape(src.hf_name)
            want = _hf_shape(src.layout, shape[1:] if per_layer else shape, cfg)
            if tuple(got) != tuple(want):
                raise ModelError(f"tensor {src.hf_name!r} has shape {list(got)}, expected {list(want)} from config.json")
    return ordered


def _hf_shape(layout: Layout, our_shape: tuple[int, ...], cfg: ModelConfig) -> tuple[int, ...]:
    # Shapes only: trace the export transform abstractly, allocating nothing.
    abstract = jax.ShapeDtypeStruct(tuple(our_shape), np.float32)
    return jax.eval_shape(lambda w: layout.to_hf(w, cfg), abstract).shape


def _normalize(index: tuple, shape: tuple[int, ...]) -> Index:
    """make_array_from_callback's index (slices, possibly open-ended or missing) as explicit ranges."""
    index = tuple(index) + (ALL,) * (len(shape) - len(index))
    return tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, shape))


def read_slice(files: dict, src: Source, index: Index, cfg: ModelConfig) -> np.ndarray:
    """Our-layout slice `index` of one HF tensor (one layer), reading only its bytes."""
    hf_index, rest = src.layout.hf_index(index, cfg)
    return src.layout.to_ours(files[src.hf_name].read(src.hf_name, hf_index), cfg)[rest]


def load_array(files: dict, sources: list[Source], cfg: ModelConfig, shape, dtype, sharding) -> jax.Array:
    """Build one parameter directly into its sharding: each device's callback reads only that
    device's slice of each source tensor (a stacked parameter: of each layer it holds, into
    one preallocated buffer), so the host holds its slices plus one layer's slice at a time."""

    def callback(index: tuple) -> np.ndarray:
        index = _normalize(index, tuple(shape))
        if sources[0].layer is None:
            return np.asarray(read_slice(files, sources[0], index, cfg), dtype=dtype)
        layers = range(len(sources))[index[0]]
        out = np.empty((len(layers), *(s.stop - s.start for s in index[1:])), dtype)
        for j, i in enumerate(layers):
            out[j] = read_slice(files, sources[i], index[1:], cfg)
        return out

    return jax.make_array_from_callback(tuple(shape), sharding, callback)


def export_entries(shapes: dict[str, tuple[int, ...]], cfg: ModelConfig) -> list[tuple[str, tuple[int, ...], str, int | None]]:
    """(HF name, HF shape, our parameter path, layer or None) for each tensor an export writes,
    from our parameters' shapes alone."""
    out = []
    for pattern, ours, layout in WEIGHT_TABLE:
        if ours not in shapes:
            continue
        if ours.startswith("layers."):
            hf = _hf_shape(layout, shapes[ours][1:], cfg)
            out += [(hf_name(pattern, i), hf, ours, i) for i in range(cfg.num_layers)]
        else:
            out.append((hf_name(pattern, None), _hf_shape(layout, shapes[ours], cfg), ours, None))
    return out


def to_hf_layout(ours: str, value: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """One of our tensors (one layer of a stacked one) in HF's layout."""
    layout = next(layout for _, path, layout in WEIGHT_TABLE if path == ours)
    return np.ascontiguousarray(layout.to_hf(value, cfg))


def write_checkpoint(entries, arrays, out_dir: Path, max_shard_bytes: int) -> None:
    """Write safetensors shards (with an index when there is more than one) from header
    entries (name, shape, dtype) and then the arrays in that order, one at a time."""
    shards: list[list] = [[]]
    size = 0
    for name, shape, dtype in entries:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape, dtype))
        size += nbytes
    arrays = iter(arrays)
    if len(shards) == 1:
        write_file(shards[0], arrays, out_dir / SINGLE_FILE)
        return
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        filename = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_file(shard, arrays, out_dir / filename)
        for name, shape, dtype in shard:
            weight_map[name] = filename
            total += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    (out_dir / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
