"""Drift (mean per-token KL(base || tuned)): zero for a model against itself, equal to a torch
computation for two different tiny models, the same on a mesh, and the ratio stderr."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s3ft_jax.evaluation.drift import kl_drift, kl_per_text, summarize
from s3ft_jax.models import from_pretrained
from s3ft_jax.sharding import make_mesh
from tests.tiny_models import VOCAB, IdTokenizer, make_tiny_model

LENGTHS = [(5, 1), (100, 3), (17, 12), (40, 2), (60, 7), (2, 2), (33, 40), (1, 30)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base_dir, tuned_dir = tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("tuned")
    base_torch = make_tiny_model("qwen2", base_dir, seed=3)
    tuned_torch = make_tiny_model("qwen2", tuned_dir, seed=4)
    rng = np.random.RandomState(0)
    pairs = [(rng.randint(3, VOCAB, c).tolist(), rng.randint(3, VOCAB, n).tolist()) for c, n in LENGTHS]
    return base_dir, tuned_dir, base_torch, tuned_torch, pairs


def torch_kl(p_model, q_model, context, continuation) -> float:
    ids = torch.tensor([context + continuation])[:, :-1]
    with torch.no_grad():
        lp = torch.log_softmax(p_model(ids).logits[0].double(), -1)[-len(continuation) :]
        lq = torch.log_softmax(q_model(ids).logits[0].double(), -1)[-len(continuation) :]
    return float((lp.exp() * (lp - lq)).sum())


def test_a_model_against_itself_has_no_drift(pair):
    base_dir, _, _, _, pairs = pair
    model = from_pretrained(base_dir)
    per_text = kl_per_text(model, model, pairs, batch_size=4)
    assert [n for _, n in per_text] == [n for _, n in LENGTHS]
    assert max(abs(s) for s, _ in per_text) < 1e-6
    assert abs(summarize(per_text)["kl"]) < 1e-7


def test_kl_matches_torch_and_a_mesh(pair):
    base_dir, tuned_dir, base_torch, tuned_torch, pairs = pair
    expected = [torch_kl(base_torch, tuned_torch, c, x) for c, x in pairs]
    assert min(expected) > 0  # different random models: the comparison is not trivially 0
    got = kl_per_text(from_pretrained(base_dir), from_pretrained(tuned_dir), pairs, batch_size=4, logit_tokens=64)
    np.testing.assert_allclose([s for s, _ in got], expected, rtol=2e-4, atol=1e-5)
    # KL is not symmetric: swapping the models gives other numbers.
    swapped = [torch_kl(tuned_torch, base_torch, c, x) for c, x in pairs]
    assert not np.allclose(swapped, expected, rtol=1e-3)

    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    sharded = kl_per_text(from_pretrained(base_dir, mesh=mesh), from_pretrained(tuned_dir, mesh=mesh), pairs, batch_size=8)
    np.testing.assert_allclose([s for s, _ in sharded], expected, rtol=2e-4, atol=1e-5)


def test_kl_drift_on_strings_scores_the_continuation_tokens(pair):
    base_dir, tuned_dir, base_torch, tuned_torch, pairs = pair
    tok = IdTokenizer()
    texts = [(" ".join(f"t{i}" for i in c), " " + " ".join(f"t{i}" for i in x)) for c, x in pairs[:4]]
    texts.append(("", "t7 t8 t9"))  # empty context: scored after the EOS (the prefix token)
    result = kl_drift(from_pretrained(base_dir), from_pretrained(tuned_dir), tok, texts)
    sums = [torch_kl(base_torch, tuned_torch, c, x) for c, x in pairs[:4]]
    sums.append(torch_kl(base_torch, tuned_torch, [tok.eos_token_id], [7, 8, 9]))
    counts = [len(x) for _, x in pairs[:4]] + [3]
    assert result["texts"] == 5 and result["tokens"] == sum(counts)
    assert result["kl"] == pytest.approx(sum(sums) / sum(counts), rel=2e-4)


@pytest.mark.fast
def test_summary_is_the_token_weighted_mean_with_the_ratio_stderr():
    per_text = [(2.0, 4), (1.0, 1), (3.0, 5)]
    out = summarize(per_text)
    r = 6.0 / 10
    residuals = [2.0 - 4 * r, 1.0 - 1 * r, 3.0 - 5 * r]  # -0.4, 0.4, 0.0
    se = math.sqrt(sum(e * e for e in residuals) / (3 * 2)) / (10 / 3)
    assert out == {"kl": pytest.approx(0.6), "stderr": pytest.approx(se), "texts": 3, "tokens": 10,
                   "per_text": [[2.0, 4], [1.0, 1], [3.0, 5]]}  # kept in order, for paired comparisons
    assert se == pytest.approx(math.sqrt(0.32 / 6) * 0.3)
    assert summarize([])["kl"] is None and summarize([(1.0, 2)])["stderr"] is None
