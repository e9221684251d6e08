"""Sharded loading reads each device's slice only, and gives the same bits as a full read;
export writes the same tensors back, one at a time."""

import json

import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from s3ft_jax.models import from_pretrained, save_pretrained
from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.params import param_shapes
from s3ft_jax.models.safetensors_io import SafetensorsFile, write_file
from s3ft_jax.models.safetensors_io import open_checkpoint
from s3ft_jax.models.weights import export_entries, plan_load
from s3ft_jax.sharding import make_mesh
from s3ft_jax.training.step import flatten

# Every dimension a mesh of 8 splits: 8 query heads, 4 KV heads, with biases (Qwen2) so
# the per-head bias layout is sliced too.
CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
    "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 256, "rope_theta": 10000.0,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    (out / "config.json").write_text(json.dumps(CONFIG))
    cfg = ModelConfig.from_hf_dict(CONFIG)
    entries = [(name, shape, np.dtype(ml_dtypes.bfloat16)) for name, shape, _, _ in export_entries(param_shapes(cfg), cfg)]
    rng = np.random.default_rng(0)
    write_file(entries, (rng.standard_normal(s, np.float32).astype(ml_dtypes.bfloat16) for _, s, _ in entries), out / "model.safetensors")
    return out


def _full_read(path) -> dict[str, np.ndarray]:
    """Our parameters built from whole-tensor reads, the way the previous loader built them."""
    cfg = ModelConfig.from_dir(path)
    files = open_checkpoint(path)
    plan = plan_load(files, cfg, param_shapes(cfg))
    out = {}
    for param, sources in plan.items():
        layers = [src.layout.to_ours(files[src.hf_name].get(src.hf_name), cfg) for src in sources]
        out[param] = layers[0] if sources[0].layer is None else np.stack(layers)
    return out


@pytest.mark.parametrize("shape", [{"fsdp": 8}, {"fsdp": 2, "tensor": 4}])
def test_sliced_load_is_bit_identical_and_reads_only_slices(checkpoint, monkeypatch, shape):
    reads: dict[str, int] = {}
    original = SafetensorsFile.read

    def counting(self, name, index):
        out = original(self, name, index)
        reads[name] = reads.get(name, 0) + out.size
        return out

    monkeypatch.setattr(SafetensorsFile, "read", counting)
    model = from_pretrained(checkpoint, dtype="bfloat16", mesh=make_mesh(shape))
    monkeypatch.undo()
    expected = _full_read(checkpoint)
    cfg = ModelConfig.from_dir(checkpoint)
    sources = plan_load(open_checkpoint(checkpoint), cfg, param_shapes(cfg))
    loaded = flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    for path, want in expected.items():
        got = loaded[path]
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got).view(np.uint16), want.view(np.uint16))
        distinct = {}
        for shard in got.addressable_shards:  # each device holds exactly its slice of the tensor
            np.testing.assert_array_equal(np.asarray(shard.data).view(np.uint16), want[shard.index].view(np.uint16))
            distinct[str(shard.index)] = shard.data.size
        # What was read for this parameter is what the devices hold: at least each distinct
        # slice once, at most each device's slice (a whole read per device would be 8x the
        # tensor).
        read = sum(reads[src.hf_name] for src in sources[path])
        assert sum(distinct.values()) <= read <= sum(s.data.size for s in got.addressable_shards), path
        if len(distinct) == 8:
            assert read == want.size, path


def test_export_streams_the_same_tensors(checkpoint, tmp_path):
    model = from_pretrained(checkpoint, dtype="bfloat16", mesh=make_mesh({"fsdp": 8}))
    out = save_pretrained(model, tmp_path / "out", max_shard_bytes=20_000)
    source, written = SafetensorsFile(checkpoint / "model.safetensors"), open_checkpoint(out)
    assert sorted(written) == sorted(source.keys()) and len({f.path for f in written.values()}) > 1
    for name in source.keys():
        np.testing.assert_array_equal(written[name].get(name).view(np.uint16), source.get(name).view(np.uint16))
