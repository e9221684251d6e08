"""Flax NNX ports of Llama-family causal LMs that load and export Hugging Face checkpoints.

The names below are loaded on first use, so that light submodules (`embedded`, `config`) can
be imported without JAX: the CLI's first-second checks need them and nothing else.
"""

from s3ft_jax.lazy import lazy_exports

_EXPORTS = {
    "ModelConfig": "config",
    "ForwardSpec": "llama",
    "LlamaForCausalLM": "llama",
    "forward": "llama",
    "DEFAULT_MODEL": "loading",
    "flat_params": "loading",
    "from_pretrained": "loading",
    "load_tokenizer": "loading",
    "resolve_model_path": "loading",
    "save_pretrained": "loading",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
