"""Flax NNX ports of Llama-family causal LMs that load and export Hugging Face checkpoints."""

from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.llama import ForwardSpec, LlamaForCausalLM, forward
from s3ft_jax.models.loading import (
    DEFAULT_MODEL,
    flat_params,
    from_pretrained,
    load_tokenizer,
    resolve_model_path,
    save_pretrained,
)

__all__ = [
    "DEFAULT_MODEL",
    "ForwardSpec",
    "LlamaForCausalLM",
    "ModelConfig",
    "flat_params",
    "forward",
    "from_pretrained",
    "load_tokenizer",
    "resolve_model_path",
    "save_pretrained",
]
