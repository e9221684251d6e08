"""The defaults: the embedded SmolLM2 model on whatever devices are present.

    s3ft answer --config=configs/base.py --config.model.dtype=bfloat16
"""

from s3ft_jax.config import base_config


def get_config():
    return base_config()
