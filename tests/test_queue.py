"""The generation work queue: incremental, resumable, and strict about its input."""

import json

import numpy as np
import pytest

from s3ft_jax import cli
from s3ft_jax.errors import S3FTError
from s3ft_jax.models import from_pretrained
from s3ft_jax.sampling import SamplingOptions
from s3ft_jax.sampling.queue import run_queue
from tests.tiny_models import VOCAB, IdTokenizer, make_tiny_model

TOK = IdTokenizer()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    make_tiny_model("llama3", path)
    return from_pretrained(path)


@pytest.fixture
def prompts_file(tmp_path):
    rng = np.random.RandomState(0)
    path = tmp_path / "prompts.jsonl"
    with open(path, "w") as f:
        for i in range(10):
            words = " ".join(f"t{t}" for t in rng.randint(3, VOCAB, rng.randint(2, 40)))
            f.write(json.dumps({"id": f"q{i}", "prompt": words}) + "\n")
    return path


OPTIONS = SamplingOptions(max_new_tokens=12, batch_size=4, temperature=0.8, seed=1, return_logprobs=True)


class Crash(Exception):
    pass


def test_resumed_run_writes_the_same_file(model, prompts_file, tmp_path):
    whole = tmp_path / "whole.jsonl"
    report = run_queue(model, TOK, prompts_file, whole, OPTIONS, progress=False)
    assert (report.total, report.generated) == (10, 10)
    rows = [json.loads(line) for line in whole.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(10)]  # input order
    assert all(r["finish_reason"] in ("eos", "length") and len(r["logprobs"]) == len(r["token_ids"]) for r in rows)

    resumed = tmp_path / "resumed.jsonl"

    def crash(n):
        if n == 1:
            raise Crash

    with pytest.raises(Crash):
        run_queue(model, TOK, prompts_file, resumed, OPTIONS, after_batch=crash, progress=False)
    assert len(resumed.read_text().splitlines()) == 8  # two batches of four survived the crash
    with open(resumed, "a") as f:
        f.write('{"id": "q3", "text": "torn')  # a write cut short by the crash
    report = run_queue(model, TOK, prompts_file, resumed, OPTIONS, progress=False)
    assert (report.already_done, report.generated) == (8, 2)
    assert resumed.read_bytes() == whole.read_bytes()

    again = run_queue(model, TOK, prompts_file, resumed, OPTIONS, progress=False)
    assert again.generated == 0 and resumed.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": 1, "prompt": "t5"}', '{"id": 1, "prompt": "t6"}'], ":2: duplicate id 1"),
        (['{"prompt": "t5"}'], ":1: each row needs an 'id'"),
        (['{"id": 1, "prompt": ""}'], "needs a non-empty 'prompt'"),
        (['{"id": 1, "prompt": "t5"', ""], ":1: not valid JSON"),
    ],
)
def test_bad_prompt_files(model, tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(S3FTError, match=message):
        run_queue(model, TOK, path, tmp_path / "out.jsonl", OPTIONS, progress=False)
    assert not (tmp_path / "out.jsonl").exists()


def test_output_from_another_input_is_refused(model, prompts_file, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": "other", "text": "x"}) + "\n")
    with pytest.raises(S3FTError, match="ids not in"):
        run_queue(model, TOK, prompts_file, out, OPTIONS, progress=False)
    assert json.loads(out.read_text())["id"] == "other"  # left untouched


def test_cli_generate_on_the_embedded_model(embedded_home, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"id": "a", "messages": [{"role": "user", "content": "What is 2+3?"}]}) + "\n"
        + json.dumps({"id": "b", "prompt": "<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n"}) + "\n"
    )
    args = ["generate", f"--config.generate.input={prompts}", f"--config.workdir={tmp_path}", "--config.sampling.max_new_tokens=8"]
    assert cli.main(args) == 0
    assert "2 prompts: 0 already done, 2 generated" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and all(r["text"] for r in rows)
    assert cli.main(args) == 0
    assert "2 already done, 0 generated" in capsys.readouterr().out
