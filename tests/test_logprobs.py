"""`s3ft logprobs`: log p(target | prompt) equals a direct computation with transformers."""

import json

import numpy as np
import torch
import transformers

from s3ft_jax import cli
from s3ft_jax.models import load_tokenizer
from s3ft_jax.sampling.chat import render_chat
from tests.tiny_models import make_tiny_chat_model


def test_target_logprobs_match_torch(embedded_home, tmp_path, capsys):
    from s3ft_jax.models import resolve_model_path

    model_dir = make_tiny_chat_model(tmp_path / "tiny", resolve_model_path("smollm2-135m-instruct"))
    rows = [
        {"id": "a", "prompt": "What is 2 + 3?", "target": "2 + 3 = 5.\nThe answer is 5.", "source": "own", "gold": "The answer is 5.",
         "prediction": "2 + 3 = 5.\nThe answer is 5.", "prediction_correct": True, "paraphrase": None, "paraphrase_correct": None},
        {"id": "b", "prompt": "Name a prime above 10.", "target": "Eleven is prime. The answer is 11.", "source": "paraphrase",
         "gold": "The answer is 13.", "prediction": "9", "prediction_correct": False,
         "paraphrase": "Eleven is prime. The answer is 11.", "paraphrase_correct": True},
        {"id": "c", "prompt": "How many legs has a cat?", "target": "The answer is 4.", "source": "gold", "gold": "The answer is 4.",
         "prediction": "3", "prediction_correct": False, "paraphrase": "x", "paraphrase_correct": False},
    ]
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["logprobs", f"--config.model.name={model_dir}", f"--config.workdir={tmp_path}", "--config.logprobs.batch_size=2"]
    assert cli.main(args) == 0
    assert "mean log p(target | prompt)" in capsys.readouterr().out
    result = json.loads((tmp_path / "logprobs.json").read_text())
    assert (tmp_path / "logprobs.png").stat().st_size > 1000
    assert {k: v["count"] for k, v in result["sources"].items()} == {"own": 1, "paraphrase": 1, "gold": 3}

    tokenizer = load_tokenizer(model_dir)
    torch_model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def reference(prompt: str, target: str) -> float:
        context = tokenizer(render_chat(tokenizer, [{"role": "user", "content": prompt}]), add_special_tokens=False)["input_ids"]
        continuation = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([context + continuation])
        with torch.no_grad():
            logp = torch.log_softmax(torch_model(ids).logits[0, :-1].double(), -1)
        return float(sum(logp[len(context) - 1 + i, t] for i, t in enumerate(continuation)))

    expected = {("a", "own"): (rows[0]["prompt"], rows[0]["target"]), ("b", "paraphrase"): (rows[1]["prompt"], rows[1]["target"])}
    expected |= {(r["id"], "gold"): (r["prompt"], r["gold"]) for r in rows}
    for (rid, source), (prompt, target) in expected.items():
        got = result["per_example"][rid][source]["logprob"]
        np.testing.assert_allclose(got, reference(prompt, target), rtol=1e-4, atol=1e-3)
    gold = [result["per_example"][r]["gold"]["logprob"] for r in "abc"]
    assert abs(result["sources"]["gold"]["mean"] - np.mean(gold)) < 1e-6
