"""What the first-second checks need to know about a checkpoint, read from its small files
alone (config.json, tokenizer_config.json, tokenizer.json): no weights, no JAX, no
transformers, no download. A hub id is looked up in the local hub cache only; what cannot be
read is None ("unknown"), and the check that needs it is skipped rather than guessed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    context: int | None = None  # max_position_embeddings
    tokenizer_file: Path | None = None  # tokenizer.json, for counting tokens with `tokenizers`
    has_chat_template: bool | None = None


def checkpoint_info(name: str) -> CheckpointInfo:
    from s3ft_jax.models.embedded import EMBEDDED_MODELS, is_embedded
    from s3ft_jax.paths import s3ft_home

    if is_embedded(name):
        built = s3ft_home() / "models" / name
        if (built / "config.json").is_file():
            return _read(built.joinpath)
        # Not converted yet: the shipped GGUF's known context; its tokenizer comes with the build.
        return CheckpointInfo(context=EMBEDDED_MODELS[name].context_length or None, has_chat_template=True)
    path = Path(name).expanduser()
    if path.is_dir():
        return _read(path.joinpath)
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        info = _read(lambda file: _hub_cached(name, file))
        # The cache may hold some files of a repo and not others (its chat_template.jinja):
        # "no template" is never concluded from it.
        return dataclasses.replace(info, has_chat_template=info.has_chat_template or None)
    return CheckpointInfo()


def _hub_cached(repo: str, file: str) -> Path:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, file)
    except Exception:  # no hub library, a bad repo id: nothing known
        found = None
    return Path(found) if isinstance(found, str) else Path("/nonexistent") / file


def _json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _read(file) -> CheckpointInfo:
    config = _json(file("config.json"))
    context = None
    if config is not None:
        # Multimodal configs nest the language model's settings.
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
        value = text.get("max_position_embeddings")
        context = int(value) if isinstance(value, int) and value > 0 else None
    tokenizer_file = file("tokenizer.json")
    tokenizer_config = _json(file("tokenizer_config.json"))
    has_template = None
    if tokenizer_config is not None or file("chat_template.jinja").is_file() or file("chat_template.json").is_file():
        has_template = bool(
            (tokenizer_config or {}).get("chat_template") or file("chat_template.jinja").is_file() or file("chat_template.json").is_file()
        )
    return CheckpointInfo(context=context, tokenizer_file=tokenizer_file if tokenizer_file.is_file() else None,
                          has_chat_template=has_template)
