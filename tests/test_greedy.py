"""Greedy KV-cache decoding equals transformers' greedy `generate`."""

import numpy as np
import pytest
import torch

from s3ft_jax.models import from_pretrained
from s3ft_jax.sampling import greedy_generate
from tests.tiny_models import VOCAB, make_tiny_model


@pytest.mark.parametrize("family", ["mistral", "qwen2"])  # both have sliding windows
def test_batched_greedy_matches_torch(family, tmp_path):
    torch_model = make_tiny_model(family, tmp_path)
    rng = np.random.RandomState(0)
    prompts = [rng.randint(3, VOCAB, n).tolist() for n in (5, 33, 17, 64)]
    ours = greedy_generate(from_pretrained(tmp_path), prompts, max_new_tokens=40, eos_ids=[2])
    for prompt, got in zip(prompts, ours):
        with torch.no_grad():
            ref = torch_model.generate(
                torch.tensor([prompt]), max_new_tokens=40, do_sample=False, eos_token_id=2, pad_token_id=0
            )[0, len(prompt):].tolist()
        assert got == ref


def test_stops_at_eos(tmp_path):
    make_tiny_model("llama3", tmp_path)
    model = from_pretrained(tmp_path)
    (free,) = greedy_generate(model, [[5, 6, 7]], max_new_tokens=12, eos_ids=[2])
    # Make the third generated token an EOS: generation must end right there.
    (stopped,) = greedy_generate(model, [[5, 6, 7]], max_new_tokens=12, eos_ids=[free[2]])
    assert stopped == free[: free.index(free[2]) + 1]
