"""A tiny trainable model directory: a random tiny HF model plus a word-level tokenizer with a
chat template, and small prompt/target datasets written in its vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.tiny_models import VOCAB, make_tiny_model

SPECIALS = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tokenizer(out_dir: Path):
    """Words "w7" are token ids; special tokens come first. EOS is </s> (id 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for i in range(len(SPECIALS), VOCAB):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", bos_token="<s>", unk_token="<unk>",
        chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    fast.save_pretrained(str(out_dir))
    return fast


def make_tiny_dir(out_dir: Path, family: str = "llama_tied", seed: int = 0) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    make_tiny_model(family, out_dir, seed=seed)
    make_tokenizer(out_dir)
    config = json.loads((out_dir / "config.json").read_text())
    config.update(eos_token_id=2, pad_token_id=0, bos_token_id=1)
    (out_dir / "config.json").write_text(json.dumps(config))
    return out_dir


def words(ids) -> str:
    return " ".join(f"w{i}" for i in ids)


def write_dataset(path: Path, n: int, *, seed: int = 0, prompt_len=(2, 6), target_len=(3, 8)) -> list[dict]:
    rng = np.random.RandomState(seed)
    rows = []
    for i in range(n):
        p = rng.randint(len(SPECIALS), VOCAB, rng.randint(*prompt_len))
        t = rng.randint(len(SPECIALS), VOCAB, rng.randint(*target_len))
        rows.append({"id": i, "prompt": words(p), "target": words(t), "source": "gold"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def train_run(model_dir: Path, workdir: Path, dataset: Path, **overrides) -> tuple:
    """(TrainSettings, LoraSettings or None, workdir) of a tiny run, the leading arguments of
    `train` and `load_trained`: the base config, float32, no progress bar, every override
    ("train.max_steps": 5) applied, made as the command line makes them."""
    from s3ft_jax.config import base_config, lora_settings, train_settings, validate

    c = base_config()
    c.model.name = str(model_dir)
    c.workdir = str(workdir)
    c.train.dataset = str(dataset)
    c.train.progress = False
    c.train.async_checkpoints = False
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    c = validate(c)
    return train_settings(c), lora_settings(c), Path(workdir)


def check_export_matches(run: tuple, model_dir: Path, out: Path, mesh, *, note: str = "") -> np.ndarray:
    """The trained model (`run`, restored from its workdir) differs from the base model at
    `model_dir`, and the HF export at `out` gives its logits under `transformers`. Returns our
    logits on the probe ids."""
    import jax.numpy as jnp
    import torch
    from transformers import AutoModelForCausalLM

    from s3ft_jax.models.loading import from_pretrained
    from s3ft_jax.training.export import load_trained
    from tests.tiny_models import torch_logits

    ours, _ = load_trained(*run, mesh=mesh)
    ids = np.random.RandomState(0).randint(3, 300, (1, 80))
    logits = np.asarray(ours(jnp.asarray(ids)))[0]
    base = np.asarray(from_pretrained(model_dir)(jnp.asarray(ids)))[0]
    assert np.abs(logits - base).max() > 1e-3, note  # training changed the model
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert np.abs(torch_logits(hf, ids[0]) - logits).max() < 1e-4, note
    return logits
