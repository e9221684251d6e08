"""The same model on 8 forced CPU devices, sharded two ways, gives the one-device logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from s3ft_jax.errors import ConfigError
from s3ft_jax.models import from_pretrained
from s3ft_jax.sharding import DEFAULT_RULES, make_mesh
from tests.tiny_models import make_tiny_model, random_batch


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen2")
    make_tiny_model("qwen2", path)
    return path


def _logits(model, ids, mask):
    return np.asarray(nnx.jit(lambda m, x, a: m(x, a))(model, jnp.asarray(ids), jnp.asarray(mask)))


@pytest.mark.parametrize("shape", [{"fsdp": 8}, {"data": 2, "tensor": 4}, {"data": 2, "fsdp": 2, "tensor": 2}])
def test_mesh_logits_equal_single_device(qwen_dir, shape):
    assert jax.device_count() == 8
    ids, mask = random_batch([80, 64, 33, 80, 70, 12, 80, 50], 80, seed=5)
    reference = _logits(from_pretrained(qwen_dir), ids, mask)
    mesh = make_mesh(shape)
    model = from_pretrained(qwen_dir, mesh=mesh)
    # Parameters really are split, not replicated on every device.
    kernel = model.layers.q_proj.kernel[...]
    assert len(kernel.sharding.device_set) == 8
    assert kernel.addressable_shards[0].data.size < kernel.size
    np.testing.assert_allclose(_logits(model, ids, mask), reference, atol=2e-5, rtol=0)


@pytest.mark.fast
def test_mesh_shape_errors():
    with pytest.raises(ConfigError, match="needs 16 devices"):
        make_mesh({"data": 2, "fsdp": 8})
    with pytest.raises(ConfigError, match="at most one"):
        make_mesh({"data": -1, "fsdp": -1})
    with pytest.raises(ConfigError, match="unknown mesh axis"):
        make_mesh({"model": 8})
    assert dict(make_mesh({"tensor": 2, "fsdp": -1}).shape) == {"data": 1, "fsdp": 4, "tensor": 2}


@pytest.mark.fast
def test_rules_replicate_dimensions_that_do_not_divide():
    mesh = make_mesh({"tensor": 8})
    # 3 KV heads cannot split 8 ways: replicated instead of failing.
    spec = DEFAULT_RULES.spec(("layers", "embed", "kv_heads", "head_dim"), (2, 64, 3, 16), mesh)
    assert tuple(spec) == (None, None, None, None)
    spec = DEFAULT_RULES.spec(("layers", "embed", "q_heads", "head_dim"), (2, 64, 8, 16), mesh)
    assert tuple(spec) == (None, None, "tensor", None)
