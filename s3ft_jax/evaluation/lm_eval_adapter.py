"""lm-evaluation-harness model "s3ft_jax": the harness's tasks on this package's JAX model.

    import lm_eval
    from s3ft_jax.evaluation.lm_eval_adapter import S3FTJaxLM, run_harness
    lm = S3FTJaxLM(name="smollm2-135m-instruct", batch_size=32)
    lm_eval.simple_evaluate(model=lm, tasks=["arc_easy"])          # harness data from the hub
    run_harness(lm, "/work/shared/data", ["arc_easy", "mmlu"], "/tmp/lm_eval_local")  # offline

or from the shell (lm-eval has no plugin discovery, so the module registers the model and then
runs lm-eval's own command line; the batch size is lm-eval's own --batch_size, default 1):

    python -m s3ft_jax.evaluation.lm_eval_adapter run --model s3ft_jax \\
        --model_args name=smollm2-135m-instruct,dtype=bfloat16 --batch_size 32 --tasks arc_easy

Log-likelihoods go through `s3ft_jax.evaluation.loglikelihood.score_tokens` (the pure,
jitted, mesh-sharded forward pass), tokenized by the harness's own `TemplateLM` code with
`HFLM`'s `tok_encode`; generation through `s3ft_jax.sampling.generate`.

`harness_task_configs` writes the local benchmark files (the data directory's layout, see README "Data") in the
Hugging Face schemas the harness's task YAMLs expect, and returns those YAMLs as task configs
pointing at the local files, so the harness runs offline on exactly the data our own scorer
reads.

Needs `pip install lm-eval` (the `eval` extra); nothing else in s3ft_jax imports lm_eval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import model_registry, register_model

from s3ft_jax.evaluation.benchmarks import MMLU_SUBJECT_CATEGORY, TASKS
from s3ft_jax.evaluation.loglikelihood import DEFAULT_BATCH_TOKENS, prefix_token_id, score_tokens, tok_encode
from s3ft_jax.io import read_jsonl

def _int_or_none(value) -> int | None:
    if value is None or value == "" or value == "auto":
        return None
    return int(value)


def _register(cls):
    # Once per process: `python -m` runs this file as __main__ besides any normal import.
    return cls if "s3ft_jax" in model_registry else register_model("s3ft_jax")(cls)


@_register
class S3FTJaxLM(TemplateLM):
    """An lm-eval `LM` backed by s3ft_jax's JAX model.

    Either pass a loaded `model` and `tokenizer`, or `name`/`pretrained` (an embedded model
    name, a local HF directory or a hub id) with `dtype`. `data`, `fsdp`, `tensor` set the
    mesh (default with several devices: all on fsdp). Every process of a multi-host run must
    run the same evaluation (the forward passes are SPMD); write results from process 0 only.
    """

    backend = "causal"

    def __init__(
        self,
        name: str | None = None,
        pretrained: str | None = None,
        model=None,
        tokenizer=None,
        dtype: str = "float32",
        batch_size: int | str | None = 32,
        max_length: int | str | None = None,
        batch_tokens: int | str = DEFAULT_BATCH_TOKENS,
        max_gen_toks: int | str = 256,
        seed: int | str = 0,
        data: int | str | None = None,
        fsdp: int | str | None = None,
        tensor: int | str | None = None,
        **_ignored: Any,  # lm-eval passes device / max_batch_size etc. to every model
    ):
        super().__init__()
        if model is None:
            from s3ft_jax.models import from_pretrained, load_tokenizer
            from s3ft_jax.sharding import make_mesh

            path = name or pretrained
            if path is None:
                raise ValueError("S3FTJaxLM needs model_args name=... (or pretrained=...), or a loaded model")
            sizes = {k: int(v) for k, v in {"data": data, "fsdp": fsdp, "tensor": tensor}.items() if v not in (None, "")}
            mesh = make_mesh(sizes or None) if sizes or jax.device_count() > 1 else None
            model = from_pretrained(path, dtype=dtype, mesh=mesh)
            tokenizer = tokenizer or load_tokenizer(path)
        elif tokenizer is None:
            raise ValueError("pass the tokenizer together with a loaded model")
        self.model = model
        self.tokenizer = tokenizer
        self._batch_size = _int_or_none(batch_size) or 32
        self._max_length = _int_or_none(max_length)
        self.batch_tokens = int(batch_tokens)
        self._max_gen_toks = int(max_gen_toks)
        self.seed = int(seed)

    # --- the TemplateLM interface -------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        return prefix_token_id(self.tokenizer)

    @property
    def max_length(self) -> int:
        return self._max_length or int(self.model.cfg.max_position_embeddings)

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None, **kwargs) -> list[int]:
        ids = tok_encode(self.tokenizer, string, add_special_tokens)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def _score(self, pairs) -> list[tuple[float, bool]]:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return score_tokens(
            self.model, pairs, batch_size=self.batch_size, max_length=self.max_length, batch_tokens=self.batch_tokens, pad_id=pad or 0
        )

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        results = self._score([(context, continuation) for _, context, continuation in requests])
        for (key, _, _), result in zip(requests, results):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Whole-text log-likelihood over disjoint windows of max_length tokens (as HFLM)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        windows, owner = [], []
        for index, (string,) in enumerate(req.args for req in requests):
            for window in get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1
            ):
                windows.append(make_disjoint_window(window))
                owner.append(index)
        totals = [0.0] * len(requests)
        for index, (ll, _) in zip(owner, self._score(windows)):
            totals[index] += ll
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy or sampled generation, cut at the first `until` string (or EOS)."""
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

        from s3ft_jax.sampling import SamplerEngine, SamplingOptions

        groups: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        out: list[str] = [""] * len(requests)
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        engine = SamplerEngine(self.model) if groups else None  # one copy of the weights for every group
        for indices in groups.values():
            kwargs = normalize_gen_kwargs(requests[indices[0]].args[1], self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen_toks = int(kwargs.pop("max_gen_toks"))
            max_ctx = self.max_length - max_gen_toks
            if max_ctx <= 0:
                raise ValueError(f"max_gen_toks {max_gen_toks} leaves no room for a prompt in max_length {self.max_length}")
            prompts = [self.tok_encode(requests[i].args[0], left_truncate_len=max_ctx) for i in indices]
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
            options = SamplingOptions(
                max_new_tokens=max_gen_toks,
                temperature=temperature,
                top_p=float(kwargs.get("top_p") or 1.0),
                top_k=int(kwargs.get("top_k") or 0),
                stop=tuple(s for s in until if s),
                seed=self.seed,
                batch_size=self.batch_size,
            )
            generations = engine.generate(self.tokenizer, prompts, options)
            for i, generation in zip(indices, generations):
                text = postprocess_generated_text(generation.text, until, None)
                out[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out


# ----------------------------------------------------------------------------------------
# The harness's own task YAMLs, pointed at the local data.


def _harness_yaml(relative: str) -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent / relative


def _write_jsonl(path: Path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(path)


def _hf_rows(data_dir: Path, task: str) -> tuple[str, list[dict]]:
    """(split, rows in the HF schema the harness YAML reads) for one non-MMLU task."""
    if task in ("arc_easy", "arc_challenge"):
        subset = "Easy" if task == "arc_easy" else "Challenge"
        rows = read_jsonl(data_dir / "arc" / f"ARC-{subset}" / f"ARC-{subset}-Test.jsonl")
        return "test", [
            {
                "id": r["id"],
                "question": r["question"]["stem"],
                "choices": {"text": [c["text"] for c in r["question"]["choices"]], "label": [c["label"] for c in r["question"]["choices"]]},
                "answerKey": r["answerKey"],
            }
            for r in rows
        ]
    if task == "piqa":
        labels = (data_dir / "piqa" / "valid-labels.lst").read_text().split()
        rows = read_jsonl(data_dir / "piqa" / "valid.jsonl")
        return "validation", [{**r, "label": int(label)} for r, label in zip(rows, labels)]
    if task == "hellaswag":  # HF keeps every field; the label is a string there
        return "validation", [{**r, "label": str(r["label"])} for r in read_jsonl(data_dir / "hellaswag" / "hellaswag_val.jsonl")]
    if task == "winogrande":
        return "validation", read_jsonl(data_dir / "winogrande" / "winogrande_1.1_dev.jsonl")
    if task == "boolq":  # SuperGLUE's BoolQ: "{title} -- {passage}", label 0/1
        rows = read_jsonl(data_dir / "boolq" / "dev.jsonl")
        return "validation", [
            {"question": r["question"], "passage": f"{r['title']} -- {r['passage']}", "idx": i, "label": int(bool(r["answer"]))}
            for i, r in enumerate(rows)
        ]
    if task in ("truthfulqa_mc1", "truthfulqa_mc2"):
        rows = json.loads((data_dir / "truthfulqa" / "v1_2021" / "mc_task.json").read_text(encoding="utf-8"))
        return "validation", [
            {
                "question": r["question"],
                **{key: {"choices": list(r[key]), "labels": list(r[key].values())} for key in ("mc1_targets", "mc2_targets")},
            }
            for r in rows
        ]
    raise ValueError(f"no harness config for {task!r}")


_YAMLS = {
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "piqa": "piqa/piqa.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "winogrande": "winogrande/default.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "truthfulqa_mc1": "truthfulqa/truthfulqa_mc1.yaml",
    "truthfulqa_mc2": "truthfulqa/truthfulqa_mc2.yaml",
}


def harness_task_configs(
    data_dir: str | Path,
    tasks: Sequence[str],
    work_dir: str | Path,
    *,
    mmlu_subjects: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[dict]:
    """lm-eval task configs (the harness's YAMLs, resolved) reading the local data files.

    Pass the result as `tasks=` to `lm_eval.simple_evaluate`. "mmlu"/"mmlu_5shot" expand to
    one task per subject ("mmlu_<subject>" / "mmlu_5shot_<subject>"; default all 57).
    `limit` writes only each task's (each subject's) first N documents: the same documents
    as the harness's own `limit`, without converting whole datasets.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    data_dir, work_dir = Path(data_dir), Path(work_dir)
    cache = str(work_dir / "hf_cache")
    configs = []
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"unknown benchmark {task!r}: choose from {', '.join(TASKS)}")
        if task in ("mmlu", "mmlu_5shot"):
            shots = 5 if task == "mmlu_5shot" else 0
            test = read_jsonl(data_dir / "mmlu" / "mmlu_test.jsonl")
            dev = read_jsonl(data_dir / "mmlu" / "mmlu_dev.jsonl")
            for subject in mmlu_subjects or sorted(MMLU_SUBJECT_CATEGORY):
                cfg = load_yaml(_harness_yaml(f"mmlu/default/mmlu_{subject}.yaml"))
                files = {
                    split: _write_jsonl(work_dir / "mmlu" / f"{subject}_{split}.jsonl", [r for r in rows if r["subject"] == subject][:n])
                    for split, rows, n in (("test", test, limit), ("dev", dev, None))
                }
                cfg.update(
                    task=f"{task}_{subject}",
                    dataset_path="json",
                    dataset_name=None,
                    dataset_kwargs={"data_files": files, "cache_dir": cache},
                    num_fewshot=shots,
                )
                cfg.pop("tag", None)
                configs.append(cfg)
            continue
        split, rows = _hf_rows(data_dir, task)
        rows = rows[:limit] if limit is not None else rows
        cfg = load_yaml(_harness_yaml(_YAMLS[task]))
        cfg.pop("tag", None)
        cfg.update(
            task=task,
            dataset_path="json",
            dataset_name=None,
            dataset_kwargs={"data_files": {split: _write_jsonl(work_dir / f"{task}.jsonl", rows)}, "cache_dir": cache},
            training_split=None,
            validation_split="validation" if split == "validation" else None,
            test_split="test" if split == "test" else None,
        )
        configs.append(cfg)
    return configs


def run_harness(
    lm,
    data_dir: str | Path,
    tasks: Sequence[str],
    work_dir: str | Path,
    *,
    limit: int | None = None,
    mmlu_subjects: Sequence[str] | None = None,
    **simple_evaluate_kwargs,
) -> dict:
    """`lm_eval.simple_evaluate` of `lm` on the local data: no hub, and no index of the
    harness's thousands of task files (only the configs made here are loaded)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    configs = harness_task_configs(data_dir, tasks, work_dir, mmlu_subjects=mmlu_subjects, limit=limit)
    return lm_eval.simple_evaluate(
        model=lm, tasks=configs, task_manager=TaskManager(include_defaults=False), limit=limit, **simple_evaluate_kwargs
    )


def main() -> None:
    """lm-eval's command line, with the "s3ft_jax" model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
