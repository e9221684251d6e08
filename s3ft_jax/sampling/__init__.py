"""Generation with the JAX model: jitted prefill, then a decode loop over a KV cache."""

from s3ft_jax.sampling.chat import render_chat
from s3ft_jax.sampling.params import SamplingParams
from s3ft_jax.sampling.sampler import Generation, generate, generate_batches

__all__ = ["Generation", "SamplingParams", "generate", "generate_batches", "render_chat"]
