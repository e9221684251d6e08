"""judge.keep_solution: a paraphrase must keep the gold's solution, not just its final answer;
rejections are counted, and the option is part of the judge_paraphrase fingerprint."""

import json
from fractions import Fraction

import pytest

from s3ft_jax.judges.solution import intermediate_results, keeps_solution
from s3ft_jax.s3ft.build import build
from s3ft_jax.config import task_settings
from s3ft_jax.tasks import get_task
from tests.conftest import shared_data_dir
from tests.test_build import Scripted, make_builder, make_config, script_for

GOLD = "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\nThe answer is 72."

pytestmark = pytest.mark.fast  # `make test-fast`


def test_intermediate_results_are_the_numbers_after_equals_signs():
    assert intermediate_results(GOLD, Fraction(72)) == {Fraction(24)}
    assert intermediate_results(GOLD) == {Fraction(24), Fraction(72)}
    # No "=": every number of the reasoning lines; the final-answer line is never read.
    assert intermediate_results("She has 3 bags of 1,200 beads each, 3600 in all.\nThe answer is 3600.", Fraction(3600)) == {
        Fraction(3), Fraction(1200)}
    assert intermediate_results("The answer is 5.", Fraction(5)) == set()


def test_keeps_solution_by_results_or_by_length():
    final = Fraction(72)
    assert keeps_solution("May: 24. Total 72.\nThe answer is 72.", GOLD, fraction=0.5, final=final)[0]
    kept, why = keeps_solution("The answer is 72.", GOLD, fraction=0.5, final=final)
    assert not kept and "0 of 1 intermediate results" in why
    long = "She sold half as many in May as in April, and adding both months gives the total. The answer is 72."
    assert keeps_solution(long, GOLD, fraction=0.5, final=final) == (True, f"{len(long.split())} of the gold's {len(GOLD.split())} words")
    assert not keeps_solution(long, GOLD, fraction=1.0, final=final)[0]
    # A non-numeric task is judged on length alone.
    assert not keeps_solution("May: 24. Total 72.", GOLD, fraction=0.5, numeric=False)[0]


def test_build_rejects_bare_answers_and_counts_them(tmp_path):
    config = make_config("gsm8k", 12)
    stage_dir = tmp_path / "build"
    ids = [e.id for e in get_task(task_settings(config)).load(shared_data_dir(), "train")[:12]]
    right, _ = script_for("gsm8k", ids)
    # No leaking paraphrases: S3FT has no leak filter by default, and a leak's extra words
    # would count toward the gold's length.
    first = build("s3ft", tmp_path / "off", make_builder(config, stage_dir, Scripted(stage_dir, "gsm8k", right, set())))
    accepted = first.stats["counts"]["paraphrase"]
    assert accepted > 0 and first.stats["paraphrase_dropped_solution"] == 0

    # On: the scripted paraphrases are bare "Let me think. The answer is N." and are rejected.
    # Only judge_paraphrase is redone: nothing is generated again.
    config.judge.keep_solution = True

    def refuse(*args):
        raise AssertionError("keep_solution must not regenerate")

    on = build("s3ft", tmp_path / "on", make_builder(config, stage_dir, refuse))
    status = {s.name: s.status for s in on.stages}
    assert status["judge_paraphrase"] == "ran" and status["paraphrase"] == "skipped" and status["judge_predict"] == "skipped"
    assert on.stats["counts"]["paraphrase"] == 0
    assert on.stats["paraphrase_dropped_solution"] == accepted
    assert on.stats["counts"]["gold"] == first.stats["counts"]["gold"] + accepted
    rows = [json.loads(line) for line in on.dataset.read_text().splitlines()]
    dropped = [r for r in rows if r.get("paraphrase_kept_solution") is False]
    assert len(dropped) == accepted and all(r["source"] == "gold" and "dropped the solution" in r["paraphrase_detail"] for r in dropped)
    assert json.loads((tmp_path / "on" / "stats.json").read_text())["paraphrase_dropped_solution"] == accepted

    # Another fraction is another fingerprint: the judge stage runs again.
    config.judge.keep_solution_fraction = 0.01
    again = build("s3ft", tmp_path / "low", make_builder(config, stage_dir, refuse))
    assert {s.name: s.status for s in again.stages}["judge_paraphrase"] == "ran"
    assert again.stats["paraphrase_dropped_solution"] < accepted


def test_fraction_is_validated():
    from s3ft_jax.config import validate
    from s3ft_jax.errors import ConfigError

    config = make_config("gsm8k", 1)
    config.judge.keep_solution_fraction = 0.0
    with pytest.raises(ConfigError, match="keep_solution_fraction"):
        validate(config)
