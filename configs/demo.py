"""`make demo`: all four methods on the embedded SmolLM2-135M, on this machine's CPU.

    s3ft run --config=configs/demo.py          # arith: generated one-step word problems (default)
    s3ft run --config=configs/demo.py:gsm8k    # GSM8K, the paper's task
    s3ft run --config=configs/demo.py:base     # arith, prompted as a base model is (no chat turns)

arith (s3ft_jax/tasks/arith.py) is within the small model's reach: it solves about a third of
these problems (33 of the first 100 training problems; 13 of the demo's 24), and its wordy
answers differ from the terse gold solutions, so S3FT's D' mixes the model's own answers,
paraphrases and golds (13/7/4; SDFT's: 0/20/4). On GSM8K it solves none of the 24 training
questions, so S3FT keeps no own answer there.

Small on purpose: 24 training examples, LoRA for a few steps, 16 test questions and 8
questions per generalization benchmark: 11.4-12.8 minutes from a fresh clone on 2 AMD EPYC
cores, setup included (10.3-11.7 for the run). The numbers it prints show the pipeline works end to end;
they are far too small to rank the methods.
configs/paper.py has the paper's settings.

base: the arith demo with `model.chat_template=plain` (models/chat_templates.py), the setting a
base checkpoint needs because it ships no chat template: every prompt is the question, a blank
line and "Answer:", and every training target "Answer: ..." + EOS. The embedded model is an
instruct model, so this shows the path a base model takes, on weights that were tuned for
chat; for a real base checkpoint, add --config.model.name=DIR (and its context and memory).
"""

from s3ft_jax.config import base_config
from s3ft_jax.tasks.arith import SMALL_MODEL_REACH

PRESETS = ("arith", "gsm8k", "base")  # tests/test_cli.py builds each


def get_config(variant="arith"):
    if variant not in PRESETS:
        raise ValueError(f"unknown demo variant {variant!r}; known: {', '.join(PRESETS)}")
    config = base_config()
    config.workdir = "runs/demo" if variant == "arith" else f"runs/demo-{variant}"
    config.task.name = "gsm8k" if variant == "gsm8k" else "arith"
    if variant == "base":
        config.model.chat_template = "plain"
    if config.task.name == "arith":
        config.task.arith.update(SMALL_MODEL_REACH)  # the difficulty the embedded model half-masters
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
