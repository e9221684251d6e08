"""`make demo`: all four methods on the embedded SmolLM2-135M, GSM8K, on this machine's CPU.

Small on purpose (about 23 minutes on 2 idle CPU cores from a fresh clone, setup included;
the run itself 21, a third of it drift): 24 training examples, LoRA for a few steps, 16 test
questions and 8 questions per generalization benchmark. The
numbers it prints show the pipeline works end to end; they are far too small to rank the
methods. configs/paper.py has the paper's settings.
"""

from s3ft_jax.config import base_config


def get_config():
    config = base_config()
    config.workdir = "runs/demo"
    config.task.name = "gsm8k"
    config.task.limit = 24
    config.task.split = "test"  # the `answer` command's example
    config.sampling.max_new_tokens = 192
    config.sampling.batch_size = 24
    config.run.methods = ("base", "sft", "sdft", "s3ft")
    config.train.batch_size = 8
    config.train.num_epochs = 1
    config.train.max_length = 512
    config.train.learning_rate = 3e-4
    config.train.warmup_steps = 1
    config.train.checkpoint_every = 2
    config.lora.enabled = True
    config.eval.limit = 16
    config.eval.benchmarks = ("mmlu", "truthfulqa_mc1", "hellaswag", "arc_easy", "arc_challenge", "winogrande", "piqa", "boolq")
    config.eval.benchmark_limit = 8
    return config
