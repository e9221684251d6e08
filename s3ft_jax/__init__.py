"""s3ft-jax: Selective Self-to-Supervised Fine-Tuning (S3FT) in JAX."""

__version__ = "0.1.0"

# Before any JAX backend starts: keep libtpu quiet on a host without a TPU (hostenv).
from s3ft_jax import hostenv as _hostenv  # noqa: E402

_hostenv.quiet_libtpu()
