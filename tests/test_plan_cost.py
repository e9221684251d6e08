"""`s3ft plan`'s experiment cost: counts from the config, times from step times (no libtpu)."""

import json

import pytest

from s3ft_jax.cli import main, parse_config
from s3ft_jax.errors import ConfigError
from s3ft_jax.plan.cost import StepTimes, Workload, cost, print_cost, steps_from_rows, totals, workload_from_config
from s3ft_jax.plan import PlanRow

SMALL = Workload(
    methods=("base", "sft", "sdft", "s3ft"), seeds=1, n_train=10, n_test=4, max_new_tokens=8, epochs=2,
    max_length=16, train_batch=4, benchmarks=(("boolq", 3, 6), ("mmlu", 2, 8)),
)  # fmt: skip
STEPS = StepTimes(train=1.0, prefill=0.5, decode=0.1, score=2.0, decode_batch=4, prefill_group=2, score_rows=4)


def _by_stage(stages):
    return {c.stage: c for c in stages}


def test_small_config_counts_by_hand():
    s = _by_stage(cost(SMALL, STEPS, efficiency=0.5))
    # Generation: 10 training prompts x 8 tokens; ceil(10/4)=3 batches x 8 decode steps, ceil(10/2)=5 prefills.
    for stage in ("predict (train)", "paraphrase (s3ft)", "distill (sdft)"):
        assert (s[stage].tokens, s[stage].steps) == (80, 3 * 8 + 5)
        assert s[stage].roofline_seconds == pytest.approx(24 * 0.1 + 5 * 0.5)
    # Four models evaluated on 4 test prompts: 16 requests, 4 batches x 8 steps, 8 prefills.
    assert (s["evaluate in-domain"].tokens, s["evaluate in-domain"].steps) == (16 * 8, 32 + 8)
    # Training: 2 epochs x 10 examples x 16 tokens; 2 x ceil(10/4) = 6 steps of 1 s.
    for m in ("sft", "sdft", "s3ft"):
        assert (s[f"train ({m})"].tokens, s[f"train ({m})"].steps, s[f"train ({m})"].roofline_seconds) == (320, 6, 6.0)
    assert "train (base)" not in s
    # 14 requests, ceil(14/4)=4 batches, per model.
    assert s["benchmarks"].steps == 4 * 4
    # Drift: 4 responses + 5 benchmark questions = 9 texts, 3 batches, two models, 3 tuned.
    assert s["drift"].steps == 2 * 3 * 3
    # The efficiency divides every time.
    assert all(c.seconds == pytest.approx(c.roofline_seconds / 0.5) for c in s.values())
    t = totals(list(s.values()), chips=8)
    assert (t["tokens_generated"], t["tokens_trained"]) == (3 * 80 + 128, 3 * 320)
    assert t["chip_hours"] == pytest.approx(t["seconds"] * 8 / 3600)


def test_methods_seeds_and_failures_change_the_counts():
    sft_only = _by_stage(cost(Workload(**{**SMALL.__dict__, "methods": ("sft",), "seeds": 3}), STEPS, 1.0))
    assert set(sft_only) == {"evaluate in-domain", "train (sft)", "benchmarks", "drift"}
    assert sft_only["train (sft)"].tokens == 3 * 320 and sft_only["evaluate in-domain"].tokens == 3 * 4 * 8
    half = _by_stage(cost(Workload(**{**SMALL.__dict__, "failure_fraction": 0.5}), STEPS, 1.0))
    assert half["paraphrase (s3ft)"].tokens == 5 * 8 and half["predict (train)"].tokens == 80
    no_drift = _by_stage(cost(Workload(**{**SMALL.__dict__, "drift": False}), STEPS, 1.0))
    assert "drift" not in no_drift


@pytest.mark.parametrize("efficiency", [0.0, 1.5, -0.2])
def test_efficiency_outside_0_1_is_refused(efficiency):
    with pytest.raises(ConfigError, match="plan.efficiency"):
        cost(SMALL, STEPS, efficiency)


def test_compiled_rows_replace_analytic_step_times():
    rows = [PlanRow("decode", "", True, peak_seconds=0.01, roofline_seconds=0.3), PlanRow("train", "", True, peak_seconds=2.0)]
    steps = steps_from_rows(rows, STEPS)
    assert (steps.decode, steps.train, steps.score, steps.prefill) == (0.3, 2.0, 2.0, 0.5)
    assert steps.source != STEPS.source
    assert steps_from_rows([], STEPS) is STEPS


def test_workload_reads_config_limits_and_benchmark_sizes():
    config = parse_config(["--config=configs/paper.py:gsm8k", "--config.task.limit=100", "--config.eval.limit=10",
                           "--config.eval.benchmarks=('boolq','piqa')", "--config.eval.benchmark_limit=100"])
    w = workload_from_config(config, sizes=(7473, 1319))
    assert (w.n_train, w.n_test, w.max_new_tokens, w.epochs) == (100, 10, 512, 5)
    assert w.benchmarks == (("boolq", 100, 200), ("piqa", 100, 200))  # two choices each
    config.eval.benchmarks = ("nope",)
    with pytest.raises(ConfigError, match="nope"):
        workload_from_config(config, sizes=(1, 1))


def test_paper_gsm8k_on_v5e_8_matches_the_plan_tables_step_times():
    config = parse_config(["--config=configs/paper.py:gsm8k,v5e-8", "--config.plan.cost_only=True"])
    lines = []
    stages = _by_stage(print_cost(config, sizes=(7473, 1319), out=lines.append))
    # README plan table: the LoRA step at peak 151 ms, decode at the HBM roofline 36.4 ms.
    train = stages["train (sft)"]
    assert train.steps == 5 * 935 and train.roofline_seconds / train.steps == pytest.approx(0.151, rel=0.01)
    assert stages["predict (train)"].tokens == 7473 * 512
    assert "40% of roofline" in lines[0] and "chip-hours" in lines[0]


def test_cost_only_cli_prints_without_compiling_and_rejects_bad_input(capsys):
    args = ["plan", "--config=configs/paper.py:gsm8k", "--config.plan.topology=v6e-8", "--config.plan.cost_only=True",
            "--config.plan.efficiency=0.2", "--config.plan.efficiency_label=a test"]
    assert main(args) in (0, None)
    out = capsys.readouterr().out
    assert "Experiment cost on v6e-8" in out and "20% of roofline (a test)" in out and "chip-hours at 20%" in out
    assert main([*args[:-2], "--config.plan.efficiency=2"]) == 2
    assert "plan.efficiency" in capsys.readouterr().err
    assert main(["plan", "--config=configs/paper.py:gsm8k", "--config.plan.cost_only=True"]) == 2
