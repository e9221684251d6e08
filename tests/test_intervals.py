"""Error bars: interval math against hand-computed values and lm-eval, and a report that shows
them (stderrs, paired intervals, the words "within noise", the drift and target tables)."""

import json
import math

import pytest

from s3ft_jax.evaluation.intervals import mean_stderr, paired_difference, ratio_mean, wilson_interval, within_noise
from s3ft_jax.report import SEED_CAVEAT, write_report

pytestmark = pytest.mark.fast  # `make test-fast`


def test_mean_stderr_is_the_sample_proportion_stderr_and_the_harness():
    from lm_eval.api.metrics import mean_stderr as harness

    values = [1.0, 1.0, 1.0, 0.0]
    p, n = 0.75, 4
    assert mean_stderr(values) == pytest.approx(math.sqrt(p * (1 - p) / (n - 1))) == pytest.approx(0.25)
    assert mean_stderr(values) == pytest.approx(harness(values))
    assert mean_stderr([1.0]) is None


def test_wilson_interval_known_values():
    low, high = wilson_interval(0, 16)  # 0 of 16 right: still up to ~19% plausible
    assert low == 0.0 and high == pytest.approx(0.1936, abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(16, 16)[1] == 1.0 and wilson_interval(0, 0) is None


def test_paired_difference_by_hand():
    d = paired_difference([1, 1, 0, 1], [0, 1, 0, 0])  # differences 1 0 0 1
    se = math.sqrt(1 / 3) / 2
    assert d["diff"] == 0.5 and d["n"] == 4 and d["stderr"] == pytest.approx(se)
    assert (d["low"], d["high"]) == pytest.approx((0.5 - 1.959964 * se, 0.5 + 1.959964 * se))
    assert within_noise(d["low"], d["high"])
    every = paired_difference([1, 1, 1], [0, 0, 0])  # lost on every question: no noise at all
    assert every["stderr"] == 0 and not within_noise(every["low"], every["high"])
    with pytest.raises(ValueError):
        paired_difference([1], [1, 0])
    assert ratio_mean([1.0, 3.0], [1, 3])["mean"] == 1.0 and ratio_mean([1.0, 3.0], [1, 3])["stderr"] == 0.0


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, list) else "".join(json.dumps(r) + "\n" for r in obj))


def test_report_shows_stderrs_paired_intervals_and_noise(tmp_path):
    for method, right in (("base", [1, 0, 0, 0]), ("sft", [1, 1, 1, 0])):
        _write(tmp_path / method / "eval" / "indomain.json", {"task": "gsm8k", "examples": 4, "accuracy": sum(right) / 4})
        _write(tmp_path / method / "eval" / "judge_predict.jsonl", [{"id": f"q{i}", "correct": bool(r)} for i, r in enumerate(right)])
    bench = {"base": {"boolq": [1] * 6, "arc_easy": [1, 0, 1, 0, 1]}, "sft": {"boolq": [0] * 5 + [1], "arc_easy": [1, 1, 0, 0, 1]}}
    for method, scores in bench.items():
        gen = {}
        for name, values in scores.items():
            other = {"acc_norm": 0.5} if name == "arc_easy" else {}  # shown, never averaged: acc counts (SDFT's metric)
            gen[name] = {"n": len(values), "acc": sum(values) / len(values), "acc_stderr": mean_stderr(values), **other}
            _write(tmp_path / method / "eval" / "records" / f"{name}.jsonl", [{"id": i, "acc": v, **other} for i, v in enumerate(values)])
        _write(tmp_path / method / "eval" / "generalization.json", gen)
    _write(tmp_path / "sft" / "eval" / "drift.json", {"responses": {"kl": 0.0123, "stderr": 0.0021, "texts": 4, "tokens": 300},
                                                      "benchmarks": {"boolq": {"kl": 0.5, "stderr": None, "texts": 1, "tokens": 9}},
                                                      "benchmarks_all": {"kl": 0.5, "stderr": None, "texts": 1, "tokens": 9}})
    _write(tmp_path / "sft" / "stats.json", {"examples": 4, "counts": {"own": 0, "paraphrase": 0, "gold": 4},
                                             "share": {"own": 0, "paraphrase": 0, "gold": 1}, "paraphrase_dropped_solution": 0,
                                             "targets": {"gold": {"count": 4, "mean": -100.0, "median": -90.0, "mean_per_token": -1.25,
                                                                  "mean_tokens": 80.0}}})
    report = write_report(tmp_path, ["base", "sft"]).read_text()

    # In-domain: 25% of 4 (stderr sqrt(.25 * .75 / 3) = 25.0), Wilson 4.6-69.9; sft - base on
    # the same questions: differences 0 1 1 0 -> +50 points, stderr 28.9 -> [-6.6, +106.6].
    assert "| base | gsm8k | 4 | 25.0 ± 25.0 | 4.6-69.9 |" in report
    assert "+50.0 [-6.6, +106.6]" in report
    assert "sft: +50.0 points against base on the same 4 questions, within noise" in report
    # Benchmarks: score ± stderr; boolq lost 5 of 6 (drop 83.3, stderr 16.7 -> [+50.7, +116.0]),
    # arc_easy: differences 0 -1 1 0 0 -> drop 0.0, stderr sqrt(2/4)/sqrt(5) -> [-62.0, +62.0].
    assert "16.7 ± 16.7" in report and "100.0 ± 0.0" in report  # sqrt((1/6)(5/6)/5) = 1/6
    assert "+83.3 [+50.7, +116.0]" in report and "+0.0 [-62.0, +62.0]" in report
    # Average over disjoint question sets: stderrs add in quadrature, sqrt(16.67^2 + 31.62^2) / 2.
    assert "+41.7 [+6.6, +76.7]" in report
    assert "sft: drops outside noise on boolq (acc) (+83.3); every other drop is within noise." in report
    # Neither is in the paper's headline set: the report says so, and both go to the extended average.
    assert "extended: average over boolq (acc), arc_easy (acc)" in report and "there is no headline average" in report
    # Drift and target quality tables.
    assert "| sft | 0.0123 ± 0.0021 | 0.5 | 0.5 |" in report
    assert "| sft | gold | 4 | 80.0 | -100.0 | -1.250 |" in report
    assert (tmp_path / "drift.png").stat().st_size > 1000 and "drift.png" in report


def test_report_compares_each_method_with_sft_on_the_same_questions_and_texts(tmp_path):
    """The paper's question is whether s3ft moved less than sft, not whether it moved at all:
    the comparison table pairs the two on the same questions and the same drift texts."""
    indomain = {"base": [0, 0, 0, 0], "sft": [1, 1, 1, 0], "s3ft": [1, 1, 0, 0]}
    boolq = {"base": [1] * 6, "sft": [0] * 5 + [1], "s3ft": [1] * 6}
    drift = {"sft": ([[1.0, 10], [2.0, 10], [3.0, 20]], [[1.0, 5]]), "s3ft": ([[0.5, 10], [1.0, 10], [1.0, 20]], [[1.0, 6]])}
    for method in ("base", "sft", "s3ft"):
        right = indomain[method]
        _write(tmp_path / method / "eval" / "indomain.json", {"task": "gsm8k", "examples": 4, "accuracy": sum(right) / 4})
        _write(tmp_path / method / "eval" / "judge_predict.jsonl", [{"id": f"q{i}", "correct": bool(r)} for i, r in enumerate(right)])
        values = boolq[method]
        _write(tmp_path / method / "eval" / "generalization.json",
               {"boolq": {"n": 6, "acc": sum(values) / 6, "acc_stderr": mean_stderr(values)}})
        _write(tmp_path / method / "eval" / "records" / "boolq.jsonl", [{"id": i, "acc": v} for i, v in enumerate(values)])
        if method in drift:
            responses, bench = drift[method]
            _write(tmp_path / method / "eval" / "drift.json", {
                "responses": {"kl": 0.1, "stderr": 0.01, "texts": 3, "tokens": 40, "per_text": responses},
                "benchmarks": {"boolq": {"kl": 0.2, "stderr": None, "texts": 1, "tokens": 5, "per_text": bench}},
                "benchmarks_all": {"kl": 0.2, "stderr": None, "texts": 1, "tokens": 5, "per_text": bench}})
    report = write_report(tmp_path, ["base", "sft", "s3ft"]).read_text()

    # In-domain s3ft - sft: differences 0 0 -1 0 -> -25 points, stderr 25 -> [-74.0, +24.0].
    # Drop difference = sft - s3ft per boolq question: -1 x5, 0 -> -83.3, stderr 16.7.
    # Drift on responses: per-text differences -0.5 -1 -2 over 10 10 20 tokens -> -0.0875 per
    # token, ratio stderr 0.01432 -> [-0.116, -0.059]. The benchmark texts' token counts differ
    # (not the same texts): no paired number.
    # boolq is outside the paper's headline set: its drop is the extended average's, the headline's is "-".
    assert "| s3ft - sft | -25.0 [-74.0, +24.0] | - | -83.3 [-116.0, -50.7] | -0.0875 [-0.12, -0.059] | - |" in report
    assert ("## Against sft (paired differences [95% interval]; headline: none of its benchmarks evaluated; "
            "extended: average over boolq (acc); drift in nats per token)") in report
    assert ("s3ft against sft, paired on the same questions and texts: in-domain accuracy: no difference beyond noise; "
            "extended average drop: smaller than sft's (better); drift on base's responses: smaller than sft's (better).") in report
    assert report.index("drift on base's responses: smaller than sft's (better).") < report.index(SEED_CAVEAT)
    assert "| sft - sft |" not in report and "| base - sft |" not in report


def test_between_seed_intervals_use_student_t():
    from scipy import stats

    from s3ft_jax.evaluation.intervals import seed_difference, seed_interval, t_quantile_975

    for df in (1, 2, 5, 30, 31, 60, 500):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-4)
    one = seed_interval([0.25])
    assert one["mean"] == 0.25 and one["low"] is None and one["n"] == 1
    three = seed_interval([1.0, 2.0, 3.0])  # sd 1: half-width t(2) / sqrt(3)
    assert three["mean"] == 2.0 and three["sd"] == pytest.approx(1.0)
    assert three["high"] - three["mean"] == pytest.approx(4.3026527 / 3 ** 0.5)
    assert seed_interval([]) is None
    # Welch: a = 1,2,3 and b = 4,6,8; se^2 = 1/3 + 4/3, df = 2.94 (rounded down to 2, conservative)
    diff = seed_difference([1.0, 2.0, 3.0], [4.0, 6.0, 8.0])
    assert diff["diff"] == -4.0 and diff["stderr"] == pytest.approx((5 / 3) ** 0.5)
    assert diff["high"] - diff["diff"] == pytest.approx(4.3026527 * (5 / 3) ** 0.5)
    assert seed_difference([1.0], [2.0, 3.0])["low"] is None
    same = seed_difference([1.0, 1.0], [1.0, 1.0])
    assert same["low"] == same["high"] == 0.0


def test_report_with_seeds_gives_means_over_seeds_and_welch_against_sft(tmp_path):
    """run.seeds: each seed a row with its per-question intervals, then the means over seeds
    with Student's t interval, and each method against sft on those means (Welch)."""
    from s3ft_jax.evaluation.seeds import against, over_seeds
    from s3ft_jax.report import AGAINST_SFT_SEEDS, OVER_SEEDS, collect, tables

    accuracy = {"base": [0.5], "sft": [0.25, 0.5, 0.75], "s3ft": [0.5, 0.75, 1.0]}
    drift = {"sft": [0.03, 0.02, 0.04], "s3ft": [0.01, 0.02, 0.03]}
    for method, values in accuracy.items():
        for k, acc in enumerate(values):
            unit = tmp_path / method if method == "base" else tmp_path / method / f"seed{k}"
            _write(unit / "eval" / "indomain.json", {"task": "gsm8k", "examples": 4, "accuracy": acc})
            if method != "base":
                _write(unit / "eval" / "drift.json", {"responses": {"kl": drift[method][k], "stderr": 0.001}})
    (tmp_path / "sft" / "seed7").mkdir()  # a seed folder with nothing in it yet is a row without numbers
    data = collect(tmp_path, ["base", "sft", "s3ft"])
    assert data["methods"] == ["base", "sft seed 0", "sft seed 1", "sft seed 2", "sft seed 7", "s3ft seed 0", "s3ft seed 1", "s3ft seed 2"]
    named = tables(data)
    assert [r[0] for r in named["In-domain accuracy (%)"][1:]] == ["base", "sft seed 0", "sft seed 1", "sft seed 2", "s3ft seed 0", "s3ft seed 1", "s3ft seed 2"]
    over = {r[0]: r for r in named[OVER_SEEDS][1:]}
    half = 4.3026527 * 25 / 3 ** 0.5  # sd 25 points over 3 seeds
    assert over["sft"][1] == "3 of 4" and over["s3ft"][1] == "3" and over["sft"][2] == f"50.0 [{50 - half:.1f}, {50 + half:.1f}]"
    assert over["s3ft"][2] == f"75.0 [{75 - half:.1f}, {75 + half:.1f}]"
    assert over["s3ft"][5].startswith("0.02 [")
    against_rows = {r[0]: r for r in named[AGAINST_SFT_SEEDS][1:]}
    diff = against({"sft": [{"indomain": v} for v in (25.0, 50.0, 75.0)], "s3ft": [{"indomain": v} for v in (50.0, 75.0, 100.0)]}, "sft")
    assert diff["s3ft"]["indomain"]["diff"] == 25.0
    # equal variances and sizes: Welch's df is 4, t(4) = 2.776
    assert diff["s3ft"]["indomain"]["high"] - 25.0 == pytest.approx(2.7764451 * (2 * 25**2 / 3) ** 0.5)
    assert against_rows["s3ft - sft"][1].startswith("+25.0 [")
    assert over_seeds({"x": [{"indomain": 1.0}]})["x"]["indomain"]["low"] is None
    # Without seeds nothing changes: no over-seeds tables.
    plain = tmp_path / "plain"
    _write(plain / "base" / "eval" / "indomain.json", {"task": "gsm8k", "examples": 4, "accuracy": 0.5})
    _write(plain / "sft" / "eval" / "indomain.json", {"task": "gsm8k", "examples": 4, "accuracy": 0.75})
    assert OVER_SEEDS not in tables(collect(plain, ["base", "sft"]))
