"""`make demo`: the embedded model on this machine's CPU, first GSM8K test question."""

from s3ft_jax.config import base_config


def get_config():
    config = base_config()
    config.workdir = "runs/demo"
    config.task.name = "gsm8k"
    config.task.split = "test"
    config.task.index = 0
    config.sampling.max_new_tokens = 256
    return config
