"""The sampler on the real embedded model against transformers' greedy `generate`."""


import pytest
import torch

from s3ft_jax.models import from_pretrained, load_tokenizer
from s3ft_jax.sampling import SamplingOptions, generate, render_chat
from s3ft_jax.tasks import gsm8k
from tests.conftest import shared_data_dir


@pytest.fixture(scope="module")
def setup(embedded_home):
    from transformers import AutoModelForCausalLM

    path = embedded_home / "models" / "smollm2-135m-instruct"
    tokenizer = load_tokenizer(path)
    rows = gsm8k.load_split(shared_data_dir(), "test")
    # Eight questions of clearly different lengths.
    picked = sorted(rows[:200], key=lambda r: len(r["question"]))[::25][:8]
    prompts = [render_chat(tokenizer, [{"role": "user", "content": gsm8k.PREDICTION_PROMPT.format(question=r["question"])}]) for r in picked]
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    references = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = hf.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False, eos_token_id=2, pad_token_id=2)
        references.append(out[0, len(ids):].tolist())
    return from_pretrained(path), tokenizer, prompts, references


@pytest.mark.parametrize("batch_size", [1, 8])
def test_embedded_greedy_equals_transformers(setup, batch_size):
    model, tokenizer, prompts, references = setup
    assert len({len(tokenizer(p)["input_ids"]) for p in prompts}) == 8
    ours = generate(model, tokenizer, prompts, SamplingOptions(max_new_tokens=64, batch_size=batch_size))
    same = [g.token_ids == ref for g, ref in zip(ours, references)]
    assert all(same), f"token mismatch in prompts {[i for i, s in enumerate(same) if not s]}"
    for g, ref in zip(ours, references):
        assert g.text == tokenizer.decode(ref, skip_special_tokens=True)
