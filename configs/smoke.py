"""The smallest end-to-end `s3ft run`: every method, every stage, on the embedded SmolLM2-135M.

    s3ft run --config=configs/smoke.py --config.workdir=/tmp/smoke

What `.ci/run` runs first, in the environment `make demo` installs (no test extras), so that a
runtime dependency missing from setup.cfg fails CI before the test suite can hide it. Sized
for a few minutes on 2 CPU cores: 4 training examples, one optimizer step per method, 2 test
questions, 2 questions on 2 benchmarks. Its numbers mean nothing.
"""

from s3ft_jax.config import base_config


def get_config():
    config = base_config()
    config.workdir = "runs/smoke"
    config.task.name = "gsm8k"
    config.task.limit = 4
    config.sampling.max_new_tokens = 24
    config.sampling.batch_size = 4
    config.run.methods = ("base", "sft", "sdft", "s3ft")
    config.train.batch_size = 4
    config.train.max_steps = 1
    config.train.max_length = 256
    config.train.checkpoint_every = 1
    config.eval.limit = 2
    config.eval.benchmarks = ("arc_easy", "boolq")
    config.eval.benchmark_limit = 2
    return config
