"""Tiny random Hugging Face checkpoints, one per supported family, built with torch.

Sizes are small but the shapes that catch mistakes are not: grouped-query attention,
a non-default rope_theta, sequences >= 64 tokens so RoPE errors show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VOCAB = 320

_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
)

FAMILIES = {
    # Llama 3.x: large theta and the llama3 frequency correction.
    "llama3": lambda: ("LlamaConfig", dict(
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
    )),
    # Mistral with a window shorter than the test sequences, so the window matters.
    "mistral": lambda: ("MistralConfig", dict(rope_theta=1000000.0, sliding_window=24)),
    # Qwen2: q/k/v biases; the second and third layers use a sliding window.
    "qwen2": lambda: ("Qwen2Config", dict(rope_theta=123456.0, use_sliding_window=True, sliding_window=20, max_window_layers=1)),
    # SmolLM2-like: tied embeddings, explicit head_dim, attention bias on all projections.
    "llama_tied": lambda: ("LlamaConfig", dict(rope_theta=100000.0, tie_word_embeddings=True, head_dim=16, attention_bias=True)),
    # Qwen3: per-head q/k norms, no biases, an explicit head_dim unlike hidden / heads.
    "qwen3": lambda: ("Qwen3Config", dict(rope_theta=54321.0, head_dim=24, tie_word_embeddings=False)),
    # Gemma 3 text, every option its config can set: local (window 20, own RoPE base) and
    # global (linear-scaled RoPE) layers, a query scale unlike head_dim, a final soft cap
    # small enough to bend these random logits. transformers' Gemma 3 ignores
    # attn_logit_softcapping (eager attention, the one kernel that could cap, is not passed
    # it): set here, it must change nothing in ours either.
    "gemma3": lambda: ("Gemma3TextConfig", dict(
        head_dim=16, sliding_window=20, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 200000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 7000.0}},
        query_pre_attn_scalar=24, attn_logit_softcapping=2.0, final_logit_softcapping=1.5, attn_implementation="eager",
    )),
}


def make_tiny_model(family: str, out_dir: Path, seed: int = 0):
    """Save a random tiny model of `family` into out_dir and return the torch model (eval)."""
    import torch
    import transformers

    config_cls, extra = FAMILIES[family]()
    config = getattr(transformers, config_cls)(**{**_COMMON, **extra})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    # Random init puts biases at zero and norms at one; perturb them so they are tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out_dir)
    return model


def random_batch(lengths, seq_len, seed=0):
    """Left-padded ids and mask: row i has lengths[i] real tokens at the end."""
    rng = np.random.RandomState(seed)
    ids = np.zeros((len(lengths), seq_len), np.int32)
    mask = np.zeros((len(lengths), seq_len), np.int32)
    for i, n in enumerate(lengths):
        ids[i, seq_len - n:] = rng.randint(3, VOCAB, n)
        mask[i, seq_len - n:] = 1
    return ids, mask


def torch_logits(model, ids_row) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor(np.asarray(ids_row)[None], dtype=torch.long)).logits[0].float().numpy()


class IdTokenizer:
    """A stand-in tokenizer for the tiny random models: token i is the word "t{i}"."""

    eos_token_id = 2
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [int(word[1:]) for word in text.split()]}

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(f"t{i}" for i in ids if not (skip_special_tokens and i == self.eos_token_id))


CHAT_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "generation_config.json")


def make_tiny_chat_model(out_dir: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama with a real chat tokenizer (copied from `tokenizer_dir`, e.g. the
    embedded SmolLM2): loadable by name like any HF directory, fast enough for CLI runs."""
    import json
    import shutil

    import torch
    import transformers

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in CHAT_TOKENIZER_FILES:
        if (Path(tokenizer_dir) / name).exists():
            shutil.copy(Path(tokenizer_dir) / name, out_dir / name)
    vocab = json.loads((Path(tokenizer_dir) / "config.json").read_text())["vocab_size"]
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, tie_word_embeddings=True, max_position_embeddings=2048,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    torch.manual_seed(seed)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(out_dir)
    return out_dir


def write_base_tokenizer(out_dir: Path) -> Path:
    """A tokenizer like a base model's: tokenizer.json and tokenizer_config.json, no chat
    template (word-level over a few words; anything else is [UNK])."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    words = ["[UNK]", "<s>", "</s>", "Answer", ":", "what", "is", "1", "+", "?", "2"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "[UNK]"}))
    return out_dir
