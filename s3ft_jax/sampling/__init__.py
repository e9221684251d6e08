"""Generation with the JAX model: jitted prefill, then a decode loop over a KV cache.

Names are loaded on first use, so the settings (`sampling.options`) import without JAX.
"""

from s3ft_jax.lazy import lazy_exports

_EXPORTS = {
    "Generation": "sampler",
    "SamplingOptions": "options",
    "SamplingParams": "params",
    "generate": "sampler",
    "generate_batches": "sampler",
    "render_chat": "chat",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
