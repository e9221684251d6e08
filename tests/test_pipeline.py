"""`s3ft run`: every method end to end on a tiny model, a report, and a rerun that redoes nothing."""

import json

from s3ft_jax import cli
from tests.conftest import shared_data_dir
from tests.tiny_models import make_tiny_chat_model


def tiny_run_args(tmp_path, *extra: str) -> tuple[list[str], object]:
    """`s3ft run` on a tiny model of SmolLM2's shape and vocabulary, a few examples and steps."""
    from s3ft_jax.models import resolve_model_path

    model_dir = make_tiny_chat_model(tmp_path / "tiny", resolve_model_path("smollm2-135m-instruct"))
    workdir = tmp_path / "run"
    return ["run", f"--config.model.name={model_dir}", f"--config.workdir={workdir}", f"--config.data.data_dir={shared_data_dir()}",
            "--config.task.limit=4", "--config.eval.limit=3", "--config.sampling.max_new_tokens=8", "--config.sampling.batch_size=4",
            "--config.train.max_steps=2", "--config.train.batch_size=2", "--config.train.progress=False", *extra], workdir


def test_run_all_methods_then_rerun_is_a_no_op(embedded_home, tmp_path, capsys):
    args, workdir = tiny_run_args(tmp_path, "--config.eval.benchmarks=('arc_easy','boolq')", "--config.eval.benchmark_limit=2")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    for title in ("Training targets (D' mix)", "In-domain accuracy (%)", "Generalization (%)", "Drop from base", "Wall time per stage",
                  "Judge audit: gsm8k (numeric judge, train split)"):
        assert title in out
    audit = json.loads((workdir / "build" / "judge_audit.json").read_text())
    assert audit["gold"]["n"] == 4 and audit["build"]["predictions"]["n"] == audit["build"]["sdft paraphrases"]["n"] == 4

    for method in ("sft", "sdft", "s3ft"):
        rows = [json.loads(line) for line in (workdir / method / "dataset.jsonl").read_text().splitlines()]
        stats = json.loads((workdir / method / "stats.json").read_text())
        assert len(rows) == 4 and sum(stats["counts"].values()) == 4
        metrics = [json.loads(line) for line in (workdir / method / "train" / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == [1, 2]
    assert all(json.loads(l)["source"] == "gold" for l in (workdir / "sft" / "dataset.jsonl").read_text().splitlines())
    for method in ("base", "sft", "sdft", "s3ft"):
        indomain = json.loads((workdir / method / "eval" / "indomain.json").read_text())
        assert indomain["examples"] == 3 and 0 <= indomain["accuracy"] <= 1
        generalization = json.loads((workdir / method / "eval" / "generalization.json").read_text())
        assert set(generalization) == {"arc_easy", "boolq"} and generalization["boolq"]["n"] == 2
    for method in ("sft", "sdft", "s3ft"):
        drift = json.loads((workdir / method / "eval" / "drift.json").read_text())
        assert drift["responses"]["texts"] == 3 and drift["responses"]["kl"] >= 0
        assert set(drift["benchmarks"]) == {"arc_easy", "boolq"} and drift["benchmarks_all"]["texts"] == 4
    for method in ("sdft", "s3ft"):  # D' targets: length and per-token log p by source
        targets = json.loads((workdir / method / "stats.json").read_text())["targets"]
        counts = json.loads((workdir / method / "stats.json").read_text())["counts"]
        assert {k: v["count"] for k, v in targets.items()} == counts
        assert all(v["mean_tokens"] > 0 and v["mean_per_token"] < 0 for v in targets.values() if v["count"])
    report = (workdir / "report.md").read_text()
    assert "Drift from base" in report and " ± " in report and "within noise" in report
    # The run records eval.headline (the paper's set) for `s3ft report`; it evaluated none of it.
    assert json.loads((workdir / "headline.json").read_text()) == {"headline": ["mmlu:acc", "truthfulqa:acc", "hellaswag:acc", "winogrande:acc"]}
    assert "Drop from base, extended: average over arc_easy (acc), boolq (acc)" in report and "there is no headline average" in report
    for image in ("accuracy.png", "generalization_drop.png", "loss.png", "logprobs.png", "drift.png"):
        assert (workdir / image).stat().st_size > 1000 and image in report
    assert "<table>" in (workdir / "report.html").read_text()

    # A rerun finds every stage done: nothing is generated, trained or scored again.
    watched = [workdir / "build" / "predict.jsonl", workdir / "s3ft" / "train" / "metrics.jsonl",
               workdir / "base" / "eval" / "predict.jsonl", workdir / "sdft" / "eval" / "bench_boolq.json",
               workdir / "s3ft" / "eval" / "drift.json", workdir / "build" / "judge_audit.jsonl"]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched}
    assert cli.main(args) == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in watched} == before
    assert "Generalization (%)" in capsys.readouterr().out


def test_every_method_is_judged_by_the_same_model():
    """In-domain answers of a fine-tuned model are judged by the base model (or judge.model),
    never by the fine-tuned model itself: the methods' accuracies must share one judge."""
    from s3ft_jax.loader import LazyModel
    from s3ft_jax.pipeline import evaluation_judge

    base, named = LazyModel(lambda: ("base", None)), LazyModel(lambda: ("judge", None))
    assert evaluation_judge(None, base, {"digest": "b"}) == (base, {"digest": "b"})
    assert evaluation_judge(named, base, {"digest": "b"}) == (named, None)


def test_run_seeds_trains_and_evaluates_each_method_once_per_seed(embedded_home, tmp_path, capsys):
    from s3ft_jax.report import OVER_SEEDS

    args, workdir = tiny_run_args(tmp_path, "--config.run.methods=('base','sft')", "--config.run.seeds=(0,1)",
                                  "--config.eval.benchmarks=()")
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert OVER_SEEDS in out and "sft seed 1" in out
    # One D' for every seed; one training, evaluation and drift per seed, with different weights.
    assert (workdir / "sft" / "dataset.jsonl").is_file() and not (workdir / "sft" / "train").exists()
    losses = []
    for k in (0, 1):
        unit = workdir / "sft" / f"seed{k}"
        metrics = [json.loads(line) for line in (unit / "train" / "metrics.jsonl").read_text().splitlines()]
        losses.append([m["loss"] for m in metrics])
        assert json.loads((unit / "eval" / "indomain.json").read_text())["examples"] == 3
        assert json.loads((unit / "eval" / "drift.json").read_text())["responses"]["texts"] == 3
    assert losses[0] != losses[1]  # the seed changes the LoRA init and the data order
    timings = json.loads((workdir / "timings.json").read_text())
    assert {"train sft seed 0", "train sft seed 1", "eval sft seed 1", "drift sft seed 0"} <= set(timings)
    # A rerun redoes nothing; adding a seed trains only that one.
    watched = [workdir / "sft" / f"seed{k}" / "train" / "metrics.jsonl" for k in (0, 1)]
    before = {p: p.read_bytes() for p in watched}
    assert cli.main([a if not a.startswith("--config.run.seeds=") else "--config.run.seeds=(0,1,2)" for a in args]) == 0
    assert {p: p.read_bytes() for p in watched} == before
    assert (workdir / "sft" / "seed2" / "eval" / "indomain.json").is_file()
    assert "| sft | 3 |" in (workdir / "report.md").read_text()
