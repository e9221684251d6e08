"""Generation with the JAX model: jitted prefill, then a decode loop over a KV cache.

Names are loaded on first use, so the settings (`sampling.options`) import without JAX: the
config module checks its sampling section while parsing the command line.
"""

from s3ft_jax.lazy import lazy_exports

_EXPORTS = {
    "Generation": "engine",
    "SamplerEngine": "engine",
    "generate": "engine",
    "generate_batches": "engine",
    "SamplingOptions": "options",
    "SamplingParams": "params",
    "render_chat": "chat",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
