"""Model presets on top of the base config, chosen after a colon:

    s3ft answer --config=configs/models.py:mistral-7b-instruct --config.mesh.tensor=4

A preset only names a checkpoint (a local directory or a hub id) and sensible dtypes; sizes
always come from the checkpoint's own config.json.
"""

from s3ft_jax.config import base_config

PRESETS = {
    "smollm2-135m-instruct": dict(name="smollm2-135m-instruct", dtype="float32"),
    "mistral-7b-instruct": dict(name="mistralai/Mistral-7B-Instruct-v0.2", dtype="bfloat16"),
    "llama-3.2-1b-instruct": dict(name="meta-llama/Llama-3.2-1B-Instruct", dtype="bfloat16"),
    "llama-3.1-8b-instruct": dict(name="meta-llama/Llama-3.1-8B-Instruct", dtype="bfloat16"),
    "qwen2.5-0.5b-instruct": dict(name="Qwen/Qwen2.5-0.5B-Instruct", dtype="bfloat16"),
    "qwen2.5-7b-instruct": dict(name="Qwen/Qwen2.5-7B-Instruct", dtype="bfloat16"),
    "qwen3-8b": dict(name="Qwen/Qwen3-8B", dtype="bfloat16"),
    # Gemma 3's text-only checkpoints (270M, 1B); 4B and up are multimodal, not loadable yet.
    "gemma-3-1b-it": dict(name="google/gemma-3-1b-it", dtype="bfloat16"),
}


def get_config(preset="smollm2-135m-instruct"):
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; known: {', '.join(PRESETS)}")
    config = base_config()
    config.model.update(PRESETS[preset])
    return config
