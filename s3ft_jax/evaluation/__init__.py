"""Generalization benchmarks scored by log-likelihood multiple choice, as lm-eval scores them.

`run_generalization(model, tokenizer, data_dir, tasks, limits)` -> {task: metrics}. The
lm-eval adapter (`s3ft_jax.evaluation.lm_eval_adapter`, needs the `eval` extra) runs the
harness itself on this model. Names are loaded on first use, so the benchmark readers
(`evaluation.benchmarks`) import without JAX.
"""

from s3ft_jax.lazy import lazy_exports

_EXPORTS = {
    "TASKS": "benchmarks",
    "MCItem": "benchmarks",
    "load_task": "benchmarks",
    "encode_pair": "loglikelihood",
    "loglikelihoods": "loglikelihood",
    "score_tokens": "loglikelihood",
    "evaluate_mc": "scoring",
    "run_generalization": "scoring",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
