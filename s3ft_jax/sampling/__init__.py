"""Generation with the JAX model: jitted prefill, then a decode loop over a KV cache."""

from s3ft_jax.sampling.greedy import greedy_generate

__all__ = ["greedy_generate"]
