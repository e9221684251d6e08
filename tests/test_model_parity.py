"""Our Flax decoder against transformers' torch implementation, per family."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from s3ft_jax.models import from_pretrained, save_pretrained
from tests.tiny_models import FAMILIES, make_tiny_model, random_batch, torch_logits

TOL = 1e-4


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    torch_model = make_tiny_model(request.param, path)
    return request.param, path, torch_model


def _logits(model, ids, mask=None):
    fn = nnx.jit(lambda m, x, a: m(x, a))
    return np.asarray(fn(model, jnp.asarray(ids), None if mask is None else jnp.asarray(mask)))


def test_logits_match_torch(tiny):
    family, path, torch_model = tiny
    ids, _ = random_batch([96, 96], 96, seed=1)
    ours = _logits(from_pretrained(path), ids)
    for row in range(len(ids)):
        ref = torch_logits(torch_model, ids[row])
        diff = np.abs(ours[row] - ref).max()
        print(f"{family}: max |logit diff| = {diff:.2e}")
        assert diff < TOL


# At 512 tokens, attention over the whole sequence runs in four causal query blocks.
@pytest.mark.parametrize("lengths, seq_len", [([96, 64, 71], 96), ([512, 300, 129], 512)])
def test_left_padding_matches_unpadded(tiny, lengths, seq_len):
    # Each left-padded row must give the logits torch gives for that row alone, unpadded.
    family, path, torch_model = tiny
    ids, mask = random_batch(lengths, seq_len, seed=2)
    ours = _logits(from_pretrained(path), ids, mask)
    for row, n in enumerate(lengths):
        ref = torch_logits(torch_model, ids[row, -n:])
        assert np.abs(ours[row, -n:] - ref).max() < TOL, family


def test_export_round_trip_loads_in_transformers(tiny, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    family, path, _ = tiny
    model = from_pretrained(path)
    save_pretrained(model, tmp_path / "export", source=path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "export", dtype=torch.float32).eval()
    ids, _ = random_batch([80], 80, seed=3)
    ours = _logits(model, ids)[0]
    assert np.abs(torch_logits(reloaded, ids[0]) - ours).max() < TOL
    # And it loads back into ours bit-identically.
    again = _logits(from_pretrained(tmp_path / "export"), ids)[0]
    np.testing.assert_array_equal(again, ours)


def test_bfloat16_close_to_float32(tiny):
    family, path, _ = tiny
    ids, mask = random_batch([80, 50], 80, seed=4)
    full = _logits(from_pretrained(path), ids, mask)
    half = _logits(from_pretrained(path, dtype="bfloat16"), ids, mask)
    assert half.dtype == np.float32  # logits stay float32 whatever the compute dtype
    real = mask.astype(bool)
    assert np.abs(half - full)[real].max() < 0.1


def test_hand_written_gradients_equal_autodiff(tiny, monkeypatch):
    # The projections' custom VJP and the causal query blocks against plain einsums and one
    # attention block, differentiated by JAX: same gradient for every parameter.
    from s3ft_jax.models import llama

    family, path, _ = tiny
    model = from_pretrained(path)
    params, spec = nnx.to_pure_dict(nnx.state(model, nnx.Param)), model.spec
    ids, mask = random_batch([256, 200, 130], 256, seed=4)
    ids, mask = jnp.asarray(ids), jnp.asarray(mask)

    def loss(params):
        logp = jax.nn.log_softmax(llama.forward(params, spec, ids, mask)[:, :-1], axis=-1)
        picked = jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]
        return -jnp.sum(picked * mask[:, 1:])

    ours = jax.grad(loss)(params)
    monkeypatch.setattr(llama, "linear", lambda x, kernel, eq: jnp.einsum(eq, x, kernel))
    monkeypatch.setattr(llama, "_CAUSAL_BLOCKS", 1)
    reference = jax.grad(loss)(params)
    flat_ours, flat_ref = jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(reference)
    for (where, a), b in zip(flat_ours, flat_ref, strict=True):
        scale = float(jnp.abs(b).max()) + 1e-12
        assert float(jnp.abs(a - b).max()) / scale < 1e-4, (family, jax.tree_util.keystr(where))


@pytest.mark.fast
def test_decode_attention_forms_agree():
    """A decode step's attention as multiply-and-sum (the CPU default for one query per row)
    equals the batched-matmul form, masked slots and a row with no valid key included."""
    from s3ft_jax.models.llama import attend

    rng = np.random.default_rng(0)
    B, H, K, Dh, S = 3, 6, 2, 16, 40
    q = jnp.asarray(rng.standard_normal((B, 1, H, Dh)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((B, K, Dh, S)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((B, K, S, Dh)), jnp.float32)
    mask = jnp.asarray(rng.random((B, 1, S)) < 0.6).at[2].set(False)
    for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)):
        args = (q.astype(dtype), k.astype(dtype), v.astype(dtype), mask)
        by_matmul = np.asarray(attend(*args, by_reduction=False), np.float32)
        by_sum = np.asarray(attend(*args, by_reduction=True), np.float32)
        np.testing.assert_allclose(by_sum, by_matmul, atol=tol, rtol=tol)
    # On a CPU the default picks multiply-and-sum for one query and matmuls for several.
    one = str(jax.make_jaxpr(attend)(q, k, v, mask))
    two = str(jax.make_jaxpr(attend)(jnp.concatenate([q, q], 1), k, v, jnp.concatenate([mask, mask], 1)))
    assert jax.default_backend() != "cpu" or ("dot_general" not in one and "dot_general" in two)
