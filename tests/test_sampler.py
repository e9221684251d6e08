"""The sampler against transformers' `generate`, across meshes, and its compile budget."""

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from s3ft_jax.models import from_pretrained
from s3ft_jax.sampling import SamplerEngine, SamplingOptions, SamplingParams, generate
from s3ft_jax.sampling.params import greedy_token, next_token, row_keys
from s3ft_jax.sampling.sampler import TRACE_COUNTS
from s3ft_jax.sampling.scheduler import bucket
from s3ft_jax.sharding import make_mesh
from tests.tiny_models import VOCAB, IdTokenizer, make_tiny_model

TOK = IdTokenizer()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("mistral")
    return path, make_tiny_model("mistral", path)  # sliding window 24: decode crosses it


def _prompts(n, seed=0, lo=3, hi=70):
    rng = np.random.RandomState(seed)
    return [rng.randint(3, VOCAB, rng.randint(lo, hi)).tolist() for _ in range(n)]


def _hf_generate(torch_model, prompt, max_new_tokens):
    with torch.no_grad():
        out = torch_model.generate(
            torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=2,
            pad_token_id=0, output_logits=True, return_dict_in_generate=True,
        )
    tokens = out.sequences[0, len(prompt):].tolist()
    logprobs = [torch.log_softmax(step[0].float(), -1)[t].item() for step, t in zip(out.logits, tokens)]
    return tokens, logprobs


@pytest.mark.parametrize("batch_size", [1, 8])
def test_greedy_tokens_and_logprobs_equal_transformers(tiny, batch_size):
    path, torch_model = tiny
    prompts = _prompts(8, seed=1)
    ours = generate(from_pretrained(path), TOK, prompts, SamplingOptions(max_new_tokens=64, batch_size=batch_size, return_logprobs=True))
    for prompt, got in zip(prompts, ours):
        tokens, logprobs = _hf_generate(torch_model, prompt, 64)
        assert got.token_ids == tokens
        assert got.finish_reason == ("eos" if tokens[-1] == 2 else "length")
        np.testing.assert_allclose(got.logprobs, logprobs, atol=1e-3)


@pytest.mark.parametrize("shape", [{"data": 2, "tensor": 4}, {"fsdp": 8}])
def test_mesh_outputs_equal_single_device(tiny, shape):
    path, _ = tiny
    prompts = _prompts(11, seed=2)  # not a multiple of 8: filler rows pad the last batch
    options = SamplingOptions(max_new_tokens=20, batch_size=8, return_logprobs=True, temperature=0.7, top_p=0.9, seed=3)
    single = generate(from_pretrained(path), TOK, prompts, options)
    sharded = generate(from_pretrained(path, mesh=make_mesh(shape)), TOK, prompts, options)
    assert [g.token_ids for g in sharded] == [g.token_ids for g in single]
    for a, b in zip(sharded, single):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_compiles_once_per_bucket_and_not_per_temperature(tiny):
    path, _ = tiny
    model = from_pretrained(path)
    prompts = [list(range(3, 3 + n)) for n in range(1, 81, 2)]  # 40 distinct lengths, 1..79
    buckets = {bucket(len(p)) for p in prompts}
    before = TRACE_COUNTS.copy()
    generate(model, TOK, prompts, SamplingOptions(max_new_tokens=8, batch_size=4))
    # One compiled prefill per prompt bucket, one decode loop and one empty batch for the call.
    assert len(buckets) <= 6
    assert TRACE_COUNTS["prefill"] - before["prefill"] <= len(buckets)
    assert TRACE_COUNTS["decode"] - before["decode"] == 1
    assert TRACE_COUNTS["empty"] - before["empty"] == 1
    generate(model, TOK, prompts[:4], SamplingOptions(max_new_tokens=8, batch_size=4))  # a smaller cache: new shapes
    traced = TRACE_COUNTS.copy()
    for temperature, top_p, top_k in [(0.5, 0.9, 0), (1.3, 1.0, 5), (0.0, 1.0, 0)]:
        generate(model, TOK, prompts[:4], SamplingOptions(max_new_tokens=8, batch_size=4, temperature=temperature, top_p=top_p, top_k=top_k, seed=7))
    assert TRACE_COUNTS == traced


def test_top_k_one_equals_greedy_and_seeds_are_deterministic(tiny):
    path, _ = tiny
    model = from_pretrained(path)
    prompts = _prompts(4, seed=4)
    greedy = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=16))
    top1 = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=16, temperature=1.0, top_k=1, seed=5))
    assert [g.token_ids for g in top1] == [g.token_ids for g in greedy]
    a = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=16, temperature=1.0, seed=11, batch_size=4))
    c = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=16, temperature=1.0, seed=12, batch_size=4))
    assert [g.token_ids for g in a] != [g.token_ids for g in c]
    assert [g.token_ids for g in a] != [g.token_ids for g in greedy]
    # Each prompt's randomness depends on (seed, its index) only, not on how it was batched.
    again = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=16, temperature=1.0, seed=11, batch_size=2))
    assert [g.token_ids for g in again] == [g.token_ids for g in a]


def test_stop_strings_cut_text_and_set_reason(tiny):
    path, _ = tiny
    model = from_pretrained(path)
    prompt = _prompts(1, seed=6)[0]
    (free,) = generate(model, TOK, [prompt], SamplingOptions(max_new_tokens=40))
    stop_word = f"t{free.token_ids[5]}"
    (stopped,) = generate(model, TOK, [prompt], SamplingOptions(max_new_tokens=40, stop=[stop_word], chunk=4))
    first = free.text.split().index(stop_word)
    assert stopped.finish_reason == "stop"
    assert stopped.text == " ".join(free.text.split()[:first]) + " "
    assert stopped.token_ids == free.token_ids[: first + 1]
    assert stop_word not in stopped.text


@pytest.mark.fast
def test_top_k_and_top_p_cut_the_distribution():
    logits = jnp.log(jnp.asarray([[0.4, 0.3, 0.2, 0.1]] * 512, jnp.float32))
    keys = row_keys(0, jnp.arange(512))
    draw = lambda **kw: np.asarray(next_token(logits, SamplingParams.make(temperature=1.0, **kw), keys, jnp.int32(3)))  # noqa: E731
    assert set(draw(top_k=2)) == {0, 1}
    assert set(draw(top_p=0.5)) == {0, 1}  # 0.4 < 0.5, so the second token is needed
    assert set(draw(top_p=0.4)) == {0}
    assert set(draw()) == {0, 1, 2, 3}
    with pytest.raises(ValueError):
        SamplingParams.make(top_p=0.0)


@pytest.mark.fast
@pytest.mark.parametrize("vocab", [384, 300, 7])
def test_greedy_token_equals_argmax_with_ties_first(vocab):
    rng = np.random.default_rng(vocab)
    # Few distinct values, so most rows have ties, in the same block and across blocks.
    logits = rng.integers(0, 6, (64, vocab)).astype(np.float32)
    logits[1, :] = -np.inf  # a fully masked row: argmax says 0
    logits[2, :] = 5.0
    logits[3, -1] = 9.0  # the maximum in the last, partial block
    if vocab > 200:
        logits[4, 130] = logits[4, 200] = 9.0  # a tie between two blocks
    got = np.asarray(jax.jit(greedy_token)(jnp.asarray(logits)))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.argmax(logits, axis=-1))


@pytest.mark.fast
def test_bucket_sizes():
    assert [bucket(n) for n in (1, 16, 17, 33, 49, 65, 100, 129, 200, 300, 1000)] == [16, 16, 24, 48, 64, 96, 128, 192, 256, 384, 1024]


def test_stops_at_eos(tiny):
    path, _ = tiny
    model = from_pretrained(path)
    (free,) = generate(model, TOK, [[5, 6, 7]], SamplingOptions(max_new_tokens=12))
    # Make the third generated token an end-of-sequence token: generation must end there.
    (stopped,) = generate(model, TOK, [[5, 6, 7]], SamplingOptions(max_new_tokens=12), eos_ids=[free.token_ids[2]])
    assert stopped.token_ids == free.token_ids[: free.token_ids.index(free.token_ids[2]) + 1]
    assert stopped.finish_reason == "eos"


def test_compaction_keeps_results_identical(tiny):
    # Rows finish at very different times when one token id is declared end-of-sequence;
    # with compaction the live rows move into smaller batches, and nothing may change.
    path, _ = tiny
    model = from_pretrained(path)
    prompts = _prompts(16, seed=9)
    free = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=48, batch_size=16))
    # The token that ends the most rows early becomes an extra end-of-sequence id.
    counts = {}
    for g in free:
        for t in set(g.token_ids[:24]):
            counts[t] = counts.get(t, 0) + 1
    eos = [2, max(counts, key=counts.get)]
    before = TRACE_COUNTS["compact"]
    compacted = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=48, batch_size=16, chunk=4, min_compact=2, return_logprobs=True), eos_ids=eos)
    plain = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=48, batch_size=16, chunk=4, min_compact=16, return_logprobs=True), eos_ids=eos)
    assert TRACE_COUNTS["compact"] > before
    assert len({len(g.token_ids) for g in compacted}) > 3  # rows really ended at different steps
    assert [g.token_ids for g in compacted] == [g.token_ids for g in plain]
    assert [g.finish_reason for g in compacted] == [g.finish_reason for g in plain]
    for a, b in zip(compacted, plain):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_shared_prefix_is_computed_once_and_changes_nothing(tiny):
    # Prompts that open with the same 30 tokens (a chat template's system prompt, say): the
    # prefix is prefilled once, and every row must still decode what transformers decodes.
    path, torch_model = tiny
    head = _prompts(1, seed=11, lo=30, hi=31)[0]
    prompts = [head + tail for tail in _prompts(6, seed=12, lo=1, hi=40)]
    model = from_pretrained(path)
    before = TRACE_COUNTS.copy()
    shared = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=32, batch_size=4, return_logprobs=True))
    assert TRACE_COUNTS["prefix"] == before["prefix"] + 1
    unshared = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=32, batch_size=4, return_logprobs=True, share_prefix=0))
    assert TRACE_COUNTS["prefix"] == before["prefix"] + 1
    for prompt, a, b in zip(prompts, shared, unshared):
        tokens, logprobs = _hf_generate(torch_model, prompt, 32)
        assert a.token_ids == b.token_ids == tokens
        np.testing.assert_allclose(a.logprobs, logprobs, atol=1e-3)
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
    sharded = generate(from_pretrained(path, mesh=make_mesh({"data": 2, "tensor": 4})), TOK, prompts, SamplingOptions(max_new_tokens=32, batch_size=4))
    assert [g.token_ids for g in sharded] == [g.token_ids for g in shared]


def test_refilled_rows_change_nothing(tiny):
    # Sixteen prompts through a batch of two: rows are refilled as they finish, over the slots
    # of longer prompts and generations before them, and every prompt must still decode
    # exactly what it decodes alone in a batch of the same size, bit for bit (a resumed work
    # queue relies on it), and what transformers decodes.
    path, torch_model = tiny
    model = from_pretrained(path)
    prompts = _prompts(16, seed=13, lo=3, hi=40)
    free = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=30, batch_size=2))
    # Two frequent tokens become extra end-of-sequence ids: rows end at different steps.
    counts = Counter(t for g in free for t in set(g.token_ids[3:20]))
    eos = [2] + [t for t, _ in counts.most_common(2)]
    before = TRACE_COUNTS.copy()
    refilled = generate(model, TOK, prompts, SamplingOptions(max_new_tokens=30, batch_size=2, group=1, return_logprobs=True), eos_ids=eos)
    assert TRACE_COUNTS["prefill"] - before["prefill"] <= len({bucket(len(p)) for p in prompts})  # groups of one
    # layout_from=prompts: the same cache length (and shared prefix, none here) as the full run.
    # One engine for every call: its weights, made once, serve them all alike.
    engine = SamplerEngine(model)
    alone = [
        engine.generate(TOK, [p], SamplingOptions(max_new_tokens=30, batch_size=2, group=1, fixed_batch=True, return_logprobs=True), layout_from=prompts, eos_ids=eos)[0]
        for p in prompts
    ]
    assert len({len(g.token_ids) for g in refilled}) > 2
    for prompt, a, b in zip(prompts, refilled, alone):
        assert (a.token_ids, a.finish_reason, a.logprobs) == (b.token_ids, b.finish_reason, b.logprobs)
        with torch.no_grad():
            out = torch_model.generate(torch.tensor([prompt]), max_new_tokens=30, do_sample=False, eos_token_id=eos, pad_token_id=0)
        assert a.token_ids == out[0, len(prompt):].tolist()
