"""Generalization benchmarks scored by log-likelihood multiple choice, as lm-eval scores them.

`run_generalization(model, tokenizer, data_dir, tasks, limits)` -> {task: metrics}. The
lm-eval adapter (`s3ft_jax.evaluation.lm_eval_adapter`, needs the `eval` extra) runs the
harness itself on this model.
"""

from s3ft_jax.evaluation.benchmarks import TASKS, MCItem, load_task
from s3ft_jax.evaluation.loglikelihood import encode_pair, loglikelihoods, score_tokens
from s3ft_jax.evaluation.scoring import evaluate_mc, run_generalization

__all__ = ["TASKS", "MCItem", "encode_pair", "evaluate_mc", "load_task", "loglikelihoods", "run_generalization", "score_tokens"]
