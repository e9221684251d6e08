"""Multiple-choice evaluation: log-likelihoods against torch, readers and prompts against
lm-evaluation-harness, our scorer against the harness running our model, and meshes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s3ft_jax.evaluation import loglikelihoods, run_generalization
from s3ft_jax.evaluation.benchmarks import TASKS, load_task
from s3ft_jax.evaluation.loglikelihood import encode_pair, tok_encode
from s3ft_jax.models import from_pretrained, load_tokenizer
from s3ft_jax.sampling.sampler import TRACE_COUNTS
from s3ft_jax.sharding import make_mesh
from tests.conftest import shared_data_dir
from tests.tiny_models import VOCAB, IdTokenizer, make_tiny_model

# ----------------------------------------------------------------------------------------
# (a) loglikelihoods on a tiny random model equals torch


def _text(ids) -> str:
    return " ".join(f"t{i}" for i in ids)


def _torch_loglikelihood(model, context: list[int], continuation: list[int], max_length: int):
    full = (context + continuation)[-(max_length + 1) :]
    with torch.no_grad():
        logits = model(torch.tensor([full[:-1]])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)[-len(continuation) :]
    target = torch.tensor(continuation)
    total = float(logprobs[torch.arange(len(continuation)), target].sum())
    return total, bool((logprobs.argmax(-1) == target).all())


def _greedy(model, context: list[int], n: int) -> list[int]:
    ids = list(context)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(context) :]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llama3")
    reference = make_tiny_model("llama3", path, seed=3)
    rng = np.random.RandomState(0)
    requests, pairs = [], []
    for n_ctx, n_cont in [(5, 1), (100, 3), (17, 12), (40, 2), (60, 7), (2, 2), (44, 1), (33, 5), (90, 9), (8, 4), (50, 3), (25, 1)]:
        context = rng.randint(3, VOCAB, n_ctx).tolist()
        continuation = rng.randint(3, VOCAB, n_cont).tolist()
        pairs.append((context, continuation))
    # Greedy continuations, so is_greedy is exercised both ways.
    for n_ctx, n_cont in [(20, 3), (67, 1), (9, 5)]:
        context = rng.randint(3, VOCAB, n_ctx).tolist()
        pairs.append((context, _greedy(reference, context, n_cont)))
    pairs.append(pairs[3])  # a duplicate request
    shared = rng.randint(3, VOCAB, 30).tolist()  # choices that differ only in the last token
    pairs += [(shared, [5]), (shared, [6]), (shared, _greedy(reference, shared, 1)), (shared, [9, 10]), (shared, [9, 11])]
    pairs.append((pairs[3][0][:-1], pairs[3][0][-1:] + pairs[3][1]))  # same tokens, split elsewhere
    requests = [(_text(c), " " + _text(x)) for c, x in pairs]
    requests.append(("", _text([7, 8, 9])))  # empty context: scored after the EOS token
    pairs.append(([IdTokenizer.eos_token_id], [7, 8, 9]))
    return from_pretrained(path), reference, requests, pairs, path


def test_loglikelihoods_match_torch(tiny):
    model, reference, requests, pairs, _ = tiny
    traces = TRACE_COUNTS["loglikelihood"]
    got = loglikelihoods(model, IdTokenizer(), requests, batch_size=4)
    expected = [_torch_loglikelihood(reference, c, x, 10**6) for c, x in pairs]
    np.testing.assert_allclose([g[0] for g in got], [e[0] for e in expected], atol=1e-4, rtol=0)
    assert [g[1] for g in got] == [e[1] for e in expected]
    assert sum(e[1] for e in expected) >= 3 and not all(e[1] for e in expected)
    # Sorted into 4-row batches over several length buckets: few compiled shapes.
    assert TRACE_COUNTS["loglikelihood"] - traces <= 6


def test_loglikelihoods_truncate_from_the_left(tiny):
    model, reference, requests, pairs, _ = tiny
    got = loglikelihoods(model, IdTokenizer(), requests, batch_size=8, max_length=32)
    expected = [_torch_loglikelihood(reference, c, x, 32) for c, x in pairs]
    np.testing.assert_allclose([g[0] for g in got], [e[0] for e in expected], atol=1e-4, rtol=0)
    assert [g[1] for g in got] == [e[1] for e in expected]
    with pytest.raises(ValueError, match="exceeds max_length"):
        loglikelihoods(model, IdTokenizer(), [("t5", " " + _text(range(3, 40)))], max_length=32)


def test_mesh_gives_the_same_loglikelihoods(tiny):
    model, _, requests, _, path = tiny
    requests = requests[:8]
    single = loglikelihoods(model, IdTokenizer(), requests, batch_size=8)
    for shape in ({"data": 2, "fsdp": 4}, {"fsdp": 2, "tensor": 4}):
        sharded = from_pretrained(path, mesh=make_mesh(shape))
        got = loglikelihoods(sharded, IdTokenizer(), requests, batch_size=8)
        np.testing.assert_allclose([g[0] for g in got], [s[0] for s in single], atol=2e-5, rtol=0)
        assert [g[1] for g in got] == [s[1] for s in single]


def test_adapter_generate_until_matches_torch_greedy(tiny):
    from lm_eval.api.instance import Instance

    from s3ft_jax.evaluation.lm_eval_adapter import S3FTJaxLM

    model, reference, _, pairs, _ = tiny
    tokenizer = IdTokenizer()
    lm = S3FTJaxLM(model=model, tokenizer=tokenizer, batch_size=4)
    contexts = [pairs[0][0], pairs[2][0], pairs[5][0]]
    greedy = [_greedy(reference, c, 6) for c in contexts]
    assert not any(tokenizer.eos_token_id in g for g in greedy)
    stop = _text(greedy[1][3:4])
    requests = [Instance("generate_until", {}, (_text(c), {"until": [stop], "max_gen_toks": 6, "do_sample": False}), 0) for c in contexts]
    got = lm.generate_until(requests)
    for text, ids in zip(got, greedy):
        expected = _text(ids)
        for s in (stop, "t2"):  # the harness's stop strings: `until` plus the decoded EOS
            expected = expected.split(s)[0]
        assert text == expected
    assert len(got[1]) < len(_text(greedy[1]))


# ----------------------------------------------------------------------------------------
# (b) readers: sizes, and prompts equal to what the harness builds from the same files

COUNTS = {
    "mmlu": 14042,
    "mmlu_5shot": 14042,
    "truthfulqa_mc1": 817,
    "truthfulqa_mc2": 817,
    "hellaswag": 10042,
    "arc_easy": 2376,
    "arc_challenge": 1172,
    "winogrande": 1267,
    "piqa": 1838,
    "boolq": 3270,
}


def test_reader_counts_and_limits():
    data = shared_data_dir()
    assert set(COUNTS) == set(TASKS)
    for task, count in COUNTS.items():
        items = load_task(data, task)
        assert len(items) == count, task
        assert all(0 < len(item.choices) and item.requests() for item in items)
    subset = load_task(data, "mmlu", mmlu_per_subject=3)
    assert len(subset) == 57 * 3 and len({i.subtask for i in subset}) == 57
    assert [i.id for i in subset[:4]] == ["abstract_algebra/0", "abstract_algebra/1", "abstract_algebra/2", "anatomy/0"]
    assert len(load_task(data, "piqa", limit=7)) == 7
    mc2 = load_task(data, "truthfulqa_mc2", limit=1)[0]
    assert isinstance(mc2.gold, list) and len(mc2.gold) == len(mc2.choices) and 0 < sum(mc2.gold) < len(mc2.gold)


def test_known_first_prompts():
    """First items, checked against the harness YAMLs and a published harness prompt dump."""
    data = shared_data_dir()
    arc = load_task(data, "arc_easy", limit=1)[0]
    assert arc.requests()[0] == (
        "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:",
        " Sunlight is the source of energy for nearly all ecosystems.",
    )
    assert load_task(data, "hellaswag", limit=1)[0].requests()[3] == (
        "Roof shingle removal: A man is sitting on a roof. He",
        " starts pulling up roofing on a roof.",
    )
    assert load_task(data, "winogrande", limit=1)[0].requests() == [
        ("Sarah was a much better surgeon than Maria so Sarah", " always got the easier cases."),
        ("Sarah was a much better surgeon than Maria so Maria", " always got the easier cases."),
    ]
    boolq = load_task(data, "boolq", limit=1)[0]
    assert boolq.context.startswith("Ethanol fuel -- All biomass goes through at least some of these steps")
    assert boolq.context.endswith("\nQuestion: does ethanol take more energy make that produces?\nAnswer:")
    assert boolq.requests()[0][1] == " no" and boolq.gold == 0
    mmlu = load_task(data, "mmlu", limit=1)[0]
    assert mmlu.context == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )
    assert [c for _, c in mmlu.requests()] == [" A", " B", " C", " D"] and mmlu.gold == 1
    five = load_task(data, "mmlu_5shot", limit=1)[0].context
    assert five.count("\nAnswer: ") == 5 and five.endswith(mmlu.context.split("\n\n", 1)[1])


@pytest.fixture(scope="module")
def harness_tasks(tmp_path_factory):
    from lm_eval.tasks import TaskManager

    from s3ft_jax.evaluation.lm_eval_adapter import harness_task_configs

    work = tmp_path_factory.mktemp("harness_prompts")
    configs = harness_task_configs(shared_data_dir(), TASKS, work, mmlu_subjects=["abstract_algebra", "high_school_us_history"], limit=6)
    return TaskManager(include_defaults=False).load(configs)["tasks"]


def test_prompts_equal_the_harness(harness_tasks):
    """Every (context, continuation) and gold of the first documents, as the harness makes them
    from its own task YAMLs. (Run once over every document of every task: no difference.)"""
    data = shared_data_dir()
    assert len(harness_tasks) == 8 + 2 * 2
    for name, task in harness_tasks.items():
        ours_task = "mmlu_5shot" if name.startswith("mmlu_5shot_") else "mmlu" if name.startswith("mmlu_") else name
        items = load_task(data, ours_task)
        if ours_task.startswith("mmlu"):
            items = [i for i in items if i.subtask == "mmlu_" + name.removeprefix(ours_task + "_")]
        task.build_all_requests(limit=6)
        docs: dict[int, list] = {}
        for instance in task.instances:
            docs.setdefault(instance.doc_id, []).append(instance)
        assert sorted(docs) == list(range(6)), name
        for doc_id, instances in docs.items():
            instances.sort(key=lambda i: i.idx)
            item = items[doc_id]
            assert [tuple(i.arguments) for i in instances] == item.requests(), (name, doc_id)
            doc = instances[0].doc
            if name == "truthfulqa_mc2":
                assert list(doc["mc2_targets"]["labels"]) == item.gold
            else:
                gold = task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)
                assert gold == item.gold, (name, doc_id)
            assert task.doc_to_choice(doc) == item.choice_strings(), (name, doc_id)


def test_stderr_helpers_match_the_harness():
    from lm_eval.api.metrics import mean_stderr as harness_mean_stderr
    from lm_eval.api.metrics import pooled_sample_stderr

    from s3ft_jax.evaluation.scoring import mean_stderr, pooled_stderr

    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert mean_stderr(values) == pytest.approx(harness_mean_stderr(values))
    stderrs, sizes = [0.1, 0.2, 0.15], [10, 30, 7]
    assert pooled_stderr(stderrs, sizes) == pytest.approx(float(pooled_sample_stderr(stderrs, sizes)))


# ----------------------------------------------------------------------------------------
# (c) our scorer against the harness (through the adapter) and against HFLM (torch)

AGREE_LIMITS = {"arc_easy": 6, "piqa": 6, "winogrande": 6, "truthfulqa_mc2": 1, "mmlu": 4}
HARNESS_NAMES = {"mmlu": "mmlu_abstract_algebra"}  # the first 4 MMLU questions are from it


@pytest.fixture(scope="module")
def embedded(embedded_home, tmp_path_factory):
    path = embedded_home / "models" / "smollm2-135m-instruct"
    model, tokenizer = from_pretrained(path), load_tokenizer(path)
    records_dir = tmp_path_factory.mktemp("records")
    ours = run_generalization(
        model, tokenizer, shared_data_dir(), list(AGREE_LIMITS), AGREE_LIMITS, batch_size=32, records_dir=records_dir, return_records=True
    )
    return path, model, tokenizer, ours, records_dir


def test_scorer_agrees_with_the_harness(embedded, tmp_path):
    from s3ft_jax.evaluation.lm_eval_adapter import S3FTJaxLM, run_harness

    _, model, tokenizer, ours, records_dir = embedded
    for task, limit in AGREE_LIMITS.items():
        lines = (records_dir / f"{task}.jsonl").read_text().splitlines()
        assert len(lines) == limit == ours[task]["n"]
    lm = S3FTJaxLM(model=model, tokenizer=tokenizer, batch_size=32)
    worst = 0.0
    for task, limit in AGREE_LIMITS.items():
        name = HARNESS_NAMES.get(task, task)
        result = run_harness(
            lm, shared_data_dir(), [task], tmp_path, limit=limit, mmlu_subjects=["abstract_algebra"], log_samples=True, bootstrap_iters=0
        )
        records = ours[task]["records"]
        samples = sorted(result["samples"][name], key=lambda s: s["doc_id"])
        assert len(samples) == limit
        for sample, record in zip(samples, records):
            lls = [resp[0] for resp in sample["filtered_resps"]]
            worst = max(worst, float(np.max(np.abs(np.asarray(lls) - record["loglikelihoods"]))))
            np.testing.assert_allclose(lls, record["loglikelihoods"], atol=1e-4, rtol=0)
            assert [bool(resp[1]) for resp in sample["filtered_resps"]] == record["is_greedy"]
            for metric in ("acc", "acc_norm"):
                if metric in sample:
                    assert sample[metric] == pytest.approx(record[metric], abs=1e-4), (task, metric)
        harness = result["results"][name]
        for metric in ("acc", "acc_norm"):
            if f"{metric},none" in harness:
                assert harness[f"{metric},none"] == pytest.approx(ours[task][metric], abs=1e-4), (task, metric)
    print(f"max |ours - harness(adapter)| loglikelihood: {worst:.2e}")


def test_scorer_agrees_with_hflm_in_torch(embedded):
    """The harness's reference HF backend on the same checkpoint: its own tokenization and
    torch forward pass give the same log-likelihoods (float32 noise) and greedy flags."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    from s3ft_jax.evaluation.lm_eval_adapter import S3FTJaxLM

    path, model, tokenizer, ours, _ = embedded
    torch_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    hf = HFLM(pretrained=torch_model, tokenizer=tokenizer, batch_size=16, device="cpu")
    for text in ["Question: Is it?\nAnswer:", "<|im_start|>user\nhi", "  two  spaces ", "naïve café — ok"]:
        assert tok_encode(tokenizer, text) == hf.tok_encode(text)
        assert encode_pair(tokenizer, text, " yes") == hf._encode_pair(text, " yes")
    requests, mine, greedy = [], [], []
    for task, limit in AGREE_LIMITS.items():
        for item, record in zip(load_task(shared_data_dir(), task, limit=limit), ours[task]["records"]):
            requests += item.requests()
            mine += record["loglikelihoods"]
            greedy += record["is_greedy"]
    theirs = hf.loglikelihood([Instance("loglikelihood", {}, request, 0) for request in requests], disable_tqdm=True)
    diff = np.abs(np.asarray([t[0] for t in theirs]) - mine)
    print(f"max |ours - HFLM(torch)| loglikelihood: {diff.max():.2e} (relative {np.max(diff / np.abs(mine)):.1e})")
    np.testing.assert_allclose(mine, [t[0] for t in theirs], rtol=5e-5, atol=1e-4)
    assert greedy == [bool(t[1]) for t in theirs]

    # Rolling log-likelihood over several windows.
    text = [Instance("loglikelihood_rolling", {}, ("The quick brown fox jumps over the lazy dog. " * 4,), 0)]
    hf_short = HFLM(pretrained=torch_model, tokenizer=tokenizer, batch_size=4, device="cpu", max_length=16)
    ours_short = S3FTJaxLM(model=model, tokenizer=tokenizer, max_length=16)
    expected = hf_short.loglikelihood_rolling(text, disable_tqdm=True)
    np.testing.assert_allclose(ours_short.loglikelihood_rolling(text), expected, rtol=5e-5, atol=1e-4)
