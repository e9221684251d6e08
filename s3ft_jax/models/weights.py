"""HF checkpoint <-> our parameters, driven by one mapping table.

Each rule says: this HF tensor name (a regex; a layer index when the tensor is per-layer) is
that parameter of ours, converted by that layout transform. Loading reads the table forwards;
export reads it backwards, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from s3ft_jax.errors import ModelError
from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.safetensors_io import INDEX_FILE, SINGLE_FILE, open_checkpoint, save_file


@dataclasses.dataclass(frozen=True)
class Layout:
    """A pair of inverse transforms between HF's tensor layout and ours."""

    to_ours: Callable[[np.ndarray, ModelConfig], np.ndarray]
    to_hf: Callable[[np.ndarray, ModelConfig], np.ndarray]


def _heads_in(n_heads: Callable[[ModelConfig], int]) -> Layout:
    # HF q/k/v: [heads*head_dim, embed] -> ours [embed, heads, head_dim]
    return Layout(
        to_ours=lambda w, c: w.T.reshape(w.shape[1], n_heads(c), c.head_dim),
        to_hf=lambda w, c: w.reshape(w.shape[0], -1).T,
    )


def _heads_bias(n_heads: Callable[[ModelConfig], int]) -> Layout:
    return Layout(to_ours=lambda b, c: b.reshape(n_heads(c), c.head_dim), to_hf=lambda b, c: b.reshape(-1))


SAME = Layout(lambda w, c: w, lambda w, c: w)
TRANSPOSE = Layout(lambda w, c: w.T, lambda w, c: w.T)
Q_IN = _heads_in(lambda c: c.num_heads)
KV_IN = _heads_in(lambda c: c.num_kv_heads)
Q_BIAS = _heads_bias(lambda c: c.num_heads)
KV_BIAS = _heads_bias(lambda c: c.num_kv_heads)
# HF o_proj: [embed, heads*head_dim] -> ours [heads, head_dim, embed]
O_OUT = Layout(
    to_ours=lambda w, c: w.T.reshape(c.num_heads, c.head_dim, w.shape[0]),
    to_hf=lambda w, c: w.reshape(-1, w.shape[-1]).T,
)

_L = r"model\.layers\.(\d+)\."
# (HF name pattern, our parameter path, layout). `{i}` in the export name is the layer.
WEIGHT_TABLE: tuple[tuple[str, str, Layout], ...] = (
    (r"model\.embed_tokens\.weight", "embed.embedding", SAME),
    (r"model\.norm\.weight", "final_norm.scale", SAME),
    (r"lm_head\.weight", "lm_head.kernel", TRANSPOSE),
    (_L + r"input_layernorm\.weight", "layers.input_norm.scale", SAME),
    (_L + r"post_attention_layernorm\.weight", "layers.post_attn_norm.scale", SAME),
    (_L + r"self_attn\.q_proj\.weight", "layers.q_proj.kernel", Q_IN),
    (_L + r"self_attn\.k_proj\.weight", "layers.k_proj.kernel", KV_IN),
    (_L + r"self_attn\.v_proj\.weight", "layers.v_proj.kernel", KV_IN),
    (_L + r"self_attn\.o_proj\.weight", "layers.o_proj.kernel", O_OUT),
    (_L + r"self_attn\.q_proj\.bias", "layers.q_proj.bias", Q_BIAS),
    (_L + r"self_attn\.k_proj\.bias", "layers.k_proj.bias", KV_BIAS),
    (_L + r"self_attn\.v_proj\.bias", "layers.v_proj.bias", KV_BIAS),
    (_L + r"self_attn\.o_proj\.bias", "layers.o_proj.bias", SAME),
    (_L + r"mlp\.gate_proj\.weight", "layers.gate_proj.kernel", TRANSPOSE),
    (_L + r"mlp\.up_proj\.weight", "layers.up_proj.kernel", TRANSPOSE),
    (_L + r"mlp\.down_proj\.weight", "layers.down_proj.kernel", TRANSPOSE),
    (_L + r"mlp\.gate_proj\.bias", "layers.gate_proj.bias", SAME),
    (_L + r"mlp\.up_proj\.bias", "layers.up_proj.bias", SAME),
    (_L + r"mlp\.down_proj\.bias", "layers.down_proj.bias", SAME),
)
_COMPILED = tuple((re.compile(p), ours, layout) for p, ours, layout in WEIGHT_TABLE)
# Buffers some exporters write that carry no weights of their own.
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")


def hf_name(pattern: str, layer: int | None) -> str:
    name = pattern.replace(_L, f"model.layers.{layer}.") if layer is not None else pattern
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


def load_array(files: dict, sources: list[Source], cfg: ModelConfig, shape, dtype, sharding) -> jax.Array:
    """Build one parameter directly into its sharding, reading only what each device holds.

    A stacked (per-layer) parameter is filled layer by layer into one preallocated buffer,
    so the host holds at most that device's slice plus one layer at a time.
    """

    def read(i: int) -> np.ndarray:
        src = sources[i]
        return src.layout.to_ours(files[src.hf_name].get(src.hf_name), cfg)

    def callback(index: tuple[slice, ...]) -> np.ndarray:
        if sources[0].layer is None:
            return np.asarray(read(0)[index], dtype=dtype)
        layers = range(len(sources))[index[0]]
        first = np.asarray(read(layers[0])[index[1:]], dtype=dtype)
        out = np.empty((len(layers), *first.shape), dtype)
        out[0] = first
        for j, i in enumerate(layers[1:], 1):
            out[j] = read(i)[index[1:]]
        return out

    return jax.make_array_from_callback(tuple(shape), sharding, callback)


def export_tensors(params: dict[str, np.ndarray], cfg: ModelConfig):
    """Yield (HF name, array) for each of our parameters (flat paths -> host arrays)."""
    for pattern, ours, layout in WEIGHT_TABLE:
        if ours not in params:
            continue
        value = params[ours]
        if ours.startswith("layers."):
            for i in range(cfg.num_layers):
                yield hf_name(pattern, i), np.ascontiguousarray(layout.to_hf(value[i], cfg))
        else:
            yield hf_name(pattern, None), np.ascontiguousarray(layout.to_hf(value, cfg))


def write_checkpoint(tensors, out_dir: Path, max_shard_bytes: int) -> None:
    """Write safetensors shards (with an index when there is more than one)."""
    shards: list[list[tuple[str, np.ndarray]]] = [[]]
    size = 0
    for name, arr in tensors:
        if shards[-1] and size + arr.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, arr))
        size += arr.nbytes
    if len(shards) == 1:
        save_file(shards[0], out_dir / SINGLE_FILE)
        return
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        filename = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, out_dir / filename)
        for name, arr in shard:
            weight_map[name] = filename
            total += arr.nbytes
    (out_dir / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
