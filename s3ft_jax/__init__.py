"""s3ft-jax: Selective Self-to-Supervised Fine-Tuning (S3FT) in JAX."""

__version__ = "0.1.0"
