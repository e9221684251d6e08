"""The report's headline average drop (eval.headline, by default the paper's MMLU, TruthfulQA,
HellaSwag, Winogrande with acc) and the extended average: which entries each covers, the
settings' checks, and hand-computed averages in both directions."""

import json
import math

import pytest

from s3ft_jax import cli
from s3ft_jax.errors import ConfigError
from s3ft_jax.evaluation.headline import PAPER_HEADLINE, parse_headline, split
from s3ft_jax.evaluation.settings import DEFAULT_BENCHMARKS, EvalSettings
from s3ft_jax.report import HEADLINE_FILE, collect, notes, print_tables, tables, write_report

pytestmark = pytest.mark.fast  # `make test-fast`


@pytest.mark.parametrize("headline", [PAPER_HEADLINE, ("arc_challenge:acc_norm",), ("truthfulqa_mc2:acc", "mmlu_5shot:acc", "piqa:acc")])
def test_headline_settings_accept_one_known_entry_per_benchmark(headline):
    assert EvalSettings(headline=list(headline)).headline == tuple(headline)


@pytest.mark.parametrize("headline, message", [
    (("nope:acc",), "unknown benchmark 'nope' in eval.headline: choose from mmlu, "),
    (("winogrande:acc_norm",), "eval.headline: winogrande has no metric 'acc_norm' \\(it has acc\\)"),
    (("truthfulqa:acc_norm",), "eval.headline: truthfulqa has no metric 'acc_norm'"),
    (("hellaswag",), "eval.headline entry 'hellaswag' is not 'benchmark:metric'"),
    (("hellaswag:acc", "hellaswag:acc_norm"), "eval.headline names hellaswag twice \\(hellaswag:acc, hellaswag:acc_norm\\)"),
    (("truthfulqa_mc1:acc", "truthfulqa_mc2:acc"), "eval.headline names truthfulqa twice"),
    (("truthfulqa:acc", "truthfulqa_mc2:acc"), "eval.headline names truthfulqa twice"),
    (("mmlu:acc", "mmlu_5shot:acc"), "eval.headline names mmlu twice"),
    ((), "eval.headline is empty"),
    ("mmlu:acc", "eval.headline must be a tuple"),
])
def test_headline_settings_reject_in_one_line(headline, message):
    with pytest.raises(ConfigError, match=message) as info:
        EvalSettings(headline=headline)
    assert "\n" not in str(info.value)


def test_cli_checks_eval_headline_before_any_work(capsys):
    assert cli.main(["config", "--config.eval.headline=('mmlu:acc','nope:acc')"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("s3ft: error: unknown benchmark 'nope' in eval.headline") and err.count("\n") == 1
    assert cli.main(["config", "--config.eval.headline=('winogrande:acc','boolq:acc')"]) == 0
    assert "winogrande:acc" in capsys.readouterr().out


def test_split_counts_each_benchmark_once_in_each_average():
    sets = split(DEFAULT_BENCHMARKS)
    assert sets.paper and sets.headline == PAPER_HEADLINE and sets.missing == ()
    # ARC easy and challenge are different questions: two benchmarks. acc, as SDFT's code reads.
    assert sets.extended == ("arc_easy:acc", "arc_challenge:acc", "piqa:acc", "boolq:acc")
    # mc1 and mc2 make the truthfulqa entry; acc_norm is shown only.
    assert sets.shown == ("truthfulqa_mc1:acc", "truthfulqa_mc2:acc", "hellaswag:acc_norm", "arc_easy:acc_norm",
                          "arc_challenge:acc_norm", "piqa:acc_norm")
    # Outside the headline, TruthfulQA is one entry (the group if both tasks ran), MMLU one (0-shot first).
    other = split(["mmlu_5shot", "mmlu", "truthfulqa_mc1", "truthfulqa_mc2", "boolq"], ["boolq:acc"])
    assert other.extended == ("mmlu:acc", "truthfulqa:acc") and not other.paper
    assert other.shown == ("mmlu_5shot:acc", "truthfulqa_mc1:acc", "truthfulqa_mc2:acc")
    assert split(["truthfulqa_mc2"], ["boolq:acc"]).extended == ("truthfulqa_mc2:acc",)
    # The demo's benchmarks (configs/demo.py): only mc1 of TruthfulQA, so the headline is partial.
    demo = split(("mmlu", "truthfulqa_mc1", "hellaswag", "arc_easy", "arc_challenge", "winogrande", "piqa", "boolq"))
    assert demo.headline == ("mmlu:acc", "hellaswag:acc", "winogrande:acc") and demo.missing == ("truthfulqa:acc",)
    assert "truthfulqa_mc1:acc" in demo.shown and "truthfulqa_mc1:acc" not in demo.extended
    # The smoke run's (configs/smoke.py): no headline benchmark at all.
    smoke = split(("arc_easy", "boolq"))
    assert smoke.headline == () and smoke.missing == PAPER_HEADLINE and smoke.extended == ("arc_easy:acc", "boolq:acc")
    with pytest.raises(ConfigError):
        split(DEFAULT_BENCHMARKS, ["hellaswag:f1"])


# Per-question scores (base, sft). Drops base - sft per question, in points:
#   mmlu:       0 0 1 1           -> 50.0
#   truthfulqa: per question the mean of mc1 and mc2: base .9 .2 .8 .95, sft .2 .2 .8 .75
#               -> differences .7 0 0 .2 -> 22.5
#   hellaswag:  acc 0 0 1 0       -> 25.0 (acc_norm: base all right, sft all wrong; shown only)
#   winogrande: 0 1 0 -1          -> 0.0
#   arc_easy:   1 0 0 0           -> 25.0;  boolq: 1 1 0 0 -> 50.0
SCORES = {
    "mmlu": ([1, 1, 1, 1], [1, 1, 0, 0]),
    "truthfulqa_mc1": ([1, 0, 1, 1], [0, 0, 1, 1]),
    "truthfulqa_mc2": ([0.8, 0.4, 0.6, 0.9], [0.4, 0.4, 0.6, 0.5]),
    "hellaswag": ([1, 0, 1, 0], [1, 0, 0, 0]),
    "winogrande": ([1, 1, 0, 0], [1, 0, 0, 1]),
    "arc_easy": ([1, 1, 1, 1], [0, 1, 1, 1]),
    "boolq": ([1, 1, 1, 1], [0, 0, 1, 1]),
}
DIFFS = {"mmlu": [0, 0, 1, 1], "truthfulqa": [0.7, 0, 0, 0.2], "hellaswag": [0, 0, 1, 0], "winogrande": [0, 1, 0, -1],
         "arc_easy": [1, 0, 0, 0], "boolq": [1, 1, 0, 0]}


def _se(diffs):
    """Sample sd / sqrt(n), in points."""
    mean = sum(diffs) / len(diffs)
    return 100 * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))


def _average_text(names):
    mean = 100 * sum(sum(DIFFS[n]) / 4 for n in names) / len(names)
    se = math.sqrt(sum(_se(DIFFS[n]) ** 2 for n in names)) / len(names)
    return f"{mean:+.1f} [{mean - 1.959964 * se:+.1f}, {mean + 1.959964 * se:+.1f}]"


def _run(path, scores=SCORES, records=True, methods=("base", "sft")):
    """A run directory with base and sft (and an s3ft scoring as base) evaluated on `scores`' benchmarks."""
    for method in methods:
        i = 1 if method == "sft" else 0
        eval_dir = path / method / "eval"
        (eval_dir / "records").mkdir(parents=True)
        gen = {}
        for name, values in scores.items():
            rows = [{"id": f"{name}/{q}", "acc": v[i]} for q, v in enumerate(zip(*values))]
            if name in ("hellaswag", "arc_easy"):
                for row in rows:
                    row["acc_norm"] = 1.0 - i
            gen[name] = {"n": 4, **{k: sum(r[k] for r in rows) / 4 for k in rows[0] if k != "id"}}
            if records:
                (eval_dir / "records" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (eval_dir / "generalization.json").write_text(json.dumps(gen))
    return path


def _drop_table(named, which):
    title = next(t for t in named if t.startswith(f"Drop from base, {which}"))
    return title, {row[0]: dict(zip(named[title][0], row)) for row in named[title][1:]}


def test_headline_average_is_over_the_papers_four_benchmarks(tmp_path):
    data = collect(_run(tmp_path), ["base", "sft"])
    named = tables(data)
    title, rows = _drop_table(named, "headline")
    assert title.startswith("Drop from base, headline: average over mmlu (acc), truthfulqa (acc), hellaswag (acc), "
                            "winogrande (acc) (the paper's set) ")
    assert "partial" not in title
    sft = rows["sft"]
    assert sft["truthfulqa (acc)"].startswith("+22.5 [") and sft["hellaswag (acc)"].startswith("+25.0 [")
    # (50 + 22.5 + 25 + 0) / 4 = 24.375; the stderrs add in quadrature over the 4 question sets.
    assert sft["average drop"] == _average_text(["mmlu", "truthfulqa", "hellaswag", "winogrande"])
    assert sft["average drop"].startswith("+24.4 [")
    assert set(sft) == {"method", "mmlu (acc)", "truthfulqa (acc)", "hellaswag (acc)", "winogrande (acc)", "average drop"}
    # The group's score: mc1 and mc2 weighted by their question counts, as lm-eval 0.4.1's truthfulqa.
    assert data["generalization"]["base"]["truthfulqa"]["acc"] == pytest.approx((0.75 + 0.675) / 2)

    title, rows = _drop_table(named, "extended")
    assert title.startswith("Drop from base, extended: average over arc_easy (acc), boolq (acc) ")
    # (25 + 50) / 2; acc_norm (a 100-point drop here) and mc1, mc2 alone are shown, never averaged.
    assert rows["sft"]["average drop"] == _average_text(["arc_easy", "boolq"]) and rows["sft"]["average drop"].startswith("+37.5 [")
    assert rows["sft"]["hellaswag (acc_norm), not averaged"].startswith("+100.0")
    assert rows["sft"]["truthfulqa_mc1 (acc), not averaged"].startswith("+25.0")
    scores = next(rows for title, rows in named.items() if title.startswith("Generalization (%) ± stderr, headline:"))
    assert scores[0] == ["method", "mmlu (acc)", "truthfulqa (acc)", "hellaswag (acc)", "winogrande (acc)", "average"]
    said = notes(data)
    headline_notes = next(lines for title, lines in said.items() if title.startswith("Generalization (%) ± stderr, headline:"))
    assert any("4.4 points, S3FT 2.5" in line for line in headline_notes)
    assert not any(line.startswith("Partial") for line in headline_notes)


def test_a_benchmark_outside_the_headline_set_does_not_move_its_average(tmp_path):
    def averages(scores, path):
        named = tables(collect(_run(path, scores), ["base", "sft"]))
        return _drop_table(named, "headline")[1]["sft"]["average drop"], _drop_table(named, "extended")[1]["sft"]["average drop"]

    headline, extended = averages(SCORES, tmp_path / "a")
    # boolq: sft now loses every question. Extended average moves, headline does not.
    moved = averages({**SCORES, "boolq": ([1, 1, 1, 1], [0, 0, 0, 0])}, tmp_path / "b")
    assert moved[0] == headline and moved[1] != extended and moved[1].startswith("+62.5")
    # winogrande (headline): the other way round.
    moved = averages({**SCORES, "winogrande": ([1, 1, 0, 0], [0, 0, 0, 0])}, tmp_path / "c")
    assert moved[0] != headline and moved[0].startswith("+36.9") and moved[1] == extended  # (50+22.5+25+50)/4


def test_a_headline_benchmark_the_run_did_not_evaluate_makes_the_average_partial(tmp_path):
    scores = {k: v for k, v in SCORES.items() if k != "winogrande"}
    data = collect(_run(tmp_path, scores), ["base", "sft"])
    named, said = tables(data), notes(data)
    title, rows = _drop_table(named, "headline")
    assert "average over mmlu (acc), truthfulqa (acc), hellaswag (acc) (the paper's set), partial: winogrande (acc) not evaluated" in title
    # (50 + 22.5 + 25) / 3 over the 3 evaluated, marked in the cell too.
    assert rows["sft"]["average drop"] == _average_text(["mmlu", "truthfulqa", "hellaswag"]) + " (partial: 3 of 4)"
    assert rows["sft"]["average drop"].startswith("+32.5 [")
    headline_notes = next(lines for t, lines in said.items() if t.startswith("Generalization (%) ± stderr, headline:"))
    assert "Partial: winogrande (acc) not evaluated (eval.benchmarks), so the headline average covers 3 of its 4 benchmarks." in headline_notes


def test_against_sft_averages_each_set_over_the_same_questions(tmp_path):
    """s3ft scores as base: s3ft - sft on each set is minus sft's drop, paired on the same questions."""
    scores = {k: v for k, v in SCORES.items() if k != "winogrande"}
    data = collect(_run(tmp_path, scores, methods=("base", "sft", "s3ft")), ["base", "sft", "s3ft"])
    named, said = tables(data), notes(data)
    title = next(t for t in named if t.startswith("Against sft"))
    assert title == ("Against sft (paired differences [95% interval]; headline: average over mmlu (acc), truthfulqa (acc), "
                     "hellaswag (acc) (the paper's set), partial: winogrande (acc) not evaluated; extended: average over "
                     "arc_easy (acc), boolq (acc); drift in nats per token)")
    row = dict(zip(named[title][0], named[title][1]))
    headline = _average_text(["mmlu", "truthfulqa", "hellaswag"])  # "+32.5 [+5.3, +59.7]" negated
    mean, low, high = (float(x) for x in headline.replace("[", "").replace("]", "").replace(",", "").split())
    assert row["headline average drop (points)"] == f"{-mean:+.1f} [{-high:+.1f}, {-low:+.1f}] (partial: 3 of 4)"
    assert row["extended average drop (points)"].startswith("-37.5 [")
    assert any("headline average drop: smaller than sft's (better)" in line for line in said[title])


def test_without_records_the_group_and_drops_come_from_the_scores(tmp_path):
    data = collect(_run(tmp_path, records=False), ["base", "sft"])
    _, rows = _drop_table(tables(data), "headline")
    # Unpaired: no intervals, the plain differences of the scores (mean of 50, 22.5, 25, 0).
    assert rows["sft"]["truthfulqa (acc)"] == "+22.5" and rows["sft"]["average drop"] == "+24.4"
    assert data["generalization"]["sft"]["truthfulqa"]["acc_stderr"] is None


def test_the_run_records_its_headline_for_later_reports(tmp_path):
    _run(tmp_path)
    assert write_report(tmp_path, ["base", "sft"], headline=("hellaswag:acc_norm", "boolq:acc")).is_file()
    assert json.loads((tmp_path / HEADLINE_FILE).read_text()) == {"headline": ["hellaswag:acc_norm", "boolq:acc"]}
    # `s3ft report` (no headline given) reads the recorded set: acc_norm of hellaswag now counts,
    # hellaswag's acc does not, and boolq left the extended set.
    text = print_tables(tmp_path, ["base", "sft"])
    assert "Drop from base, headline: average over hellaswag (acc_norm), boolq (acc) (eval.headline) " in text
    assert "extended: average over mmlu (acc), truthfulqa (acc), winogrande (acc), arc_easy (acc) " in text
    assert "hellaswag (acc), not averaged" in text
    assert (tmp_path / "generalization_drop.png").stat().st_size > 1000
    (tmp_path / HEADLINE_FILE).unlink()  # a run from before the file: the paper's set
    assert "headline: average over mmlu (acc), truthfulqa (acc), hellaswag (acc), winogrande (acc) (the paper's set)" in print_tables(tmp_path, ["base", "sft"])
    (tmp_path / HEADLINE_FILE).write_text(json.dumps({"headline": ["hellaswag:f1"]}))
    with pytest.raises(ConfigError, match="hellaswag has no metric 'f1'"):
        collect(tmp_path, ["base", "sft"])


def test_parse_headline_keeps_order():
    assert parse_headline(["winogrande:acc", "mmlu:acc"]) == ("winogrande:acc", "mmlu:acc")
