"""GSM8K judge: answer extraction rules, gold parsing, gold normalisation, and the real data."""

import json
import time

import pytest

from s3ft_jax.errors import S3FTError
from s3ft_jax.judges.math import Reading, extract_answer, is_correct, read_answer
from s3ft_jax.tasks.gsm8k import gold_answer, normalize_gold_solution
from tests.conftest import shared_data_dir

pytestmark = pytest.mark.fast  # `make test-fast`

RAW_GOLD = (
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
    "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer\u2019s market.\n#### 18"
)


@pytest.mark.parametrize(
    "response, gold",
    [
        ("The answer is 18.", "18"),
        ("the answer is 18", "18"),
        ("THE ANSWER IS 18", "18"),
        ("First 17 eggs, then one more. The answer is 18", "18"),
        ("The answer is 17. Wait, I miscounted. The answer is 18.", "18"),  # the LAST statement wins
        ("The answer is 18. Check: 9 * 2 = 18, not 17.", "18"),  # first number after the marker
        ("**The answer is: $1,000.00**", "1000"),
        ("The answer is $1,000.00", "1,000"),
        ("The final answer is 42.", "42"),
        ("So we get \\boxed{42}.", "42"),
        ("The final answer is $\\boxed{1{,}000}$", "1000"),
        ("\\boxed{\\frac{3}{4}}", "0.75"),
        ("Answer: 7", "7"),
        ("She ends with 18 dollars.", "18"),  # no marker: last number
        ("It costs $18.", "18"),
        ("The answer is 18.00", "18"),
        ("The answer is 1,000", "1000"),
        ("The answer is 1,234,567.", "1234567"),
        ("The answer is 50%.", "50"),
        ("The answer is 12 apples.", "12"),
        ("The answer is 12kg.", "12"),
        ("The answer is -5.", "-5"),
        ("The answer is \u22125.", "-5"),  # unicode minus
        ("She lost -$5.", "-5"),
        ("The answer is 3/4", "0.75"),
        ("The answer is 3/4", "3/4"),
        ("The answer is .5", "0.5"),
        ("The answer is 0.5", ".5"),
        ("The answer is 1/2.", "0.50"),
        ("20 - 5 = 15", "15"),
        ("There are 3, 4 and 5 kids, so 4 on average.", "4"),
        ("The answer is 3, 4 or 5.", "3"),  # a list comma is not a thousands separator
        (RAW_GOLD, RAW_GOLD),
        ("The answer is 1234", "a\n#### 1,234"),
    ],
)
def test_correct(response, gold):
    assert is_correct(response, gold)


@pytest.mark.parametrize(
    "response, gold",
    [
        ("The answer is 18.", "17"),
        ("First 17 eggs, then one more. The answer is 18", "17"),  # the stated answer wins
        ("The answer is 18. Check: 9 * 2 = 18, not 17.", "17"),
        ("The answer is -5.", "5"),
        ("The answer is 5.", "-5"),
        ("The answer is \u22125.", "5"),
        ("20 - 5", "-5"),  # a binary minus is not a sign
        ("The answer is 3, 4 or 5.", "34"),
        ("The answer is 3, 4 or 5.", "345"),
        ("The answer is 0.75", "3"),
        ("The answer is 3/4", "34"),
        ("The answer is 18.5", "18"),
        ("The answer is 1,000", "1"),
        ("The answer is 1001", "1,000"),
        ("I do not know.", "18"),  # no number
        ("", "0"),
        ("The answer is 3/0", "0"),
        ("The answer is 0.333", "1/3"),  # exact comparison
    ],
)
def test_incorrect(response, gold):
    assert not is_correct(response, gold)


@pytest.mark.parametrize(
    "response, expected",
    [
        ("**The answer is: $1,000.00**", "1000"),
        ("The answer is 18.", "18"),
        ("The answer is 3/4", "0.75"),
        ("The answer is 1/3", "1/3"),
        ("The answer is -.25", "-0.25"),
        ("The answer is \u22125", "-5"),
        ("x = 3, 4", "4"),
        ("no numbers at all", None),
        ("", None),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


@pytest.mark.parametrize(
    "gold, expected",
    [
        ("18", "18"),
        ("1,000", "1000"),
        ("-3", "-3"),
        ("0.5", "0.5"),
        ("18.00", "18"),
        ("#### 1,234", "1234"),
        ("It is 5 - 3 = <<5-3=2>>2.\n#### 2", "2"),
        ("Loss of 5 - 8 = <<5-8=-3>>-3\n#### -3", "-3"),
        (RAW_GOLD, "18"),
    ],
)
def test_gold_answer(gold, expected):
    assert gold_answer(gold) == expected


def test_gold_without_number_raises():
    with pytest.raises(S3FTError):
        gold_answer("#### none")
    with pytest.raises(S3FTError):
        is_correct("The answer is 1", "n/a")


def test_normalize_gold_solution():
    assert normalize_gold_solution(RAW_GOLD) == (
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n"
        "She makes 9 * 2 = $18 every day at the farmer\u2019s market.\nThe answer is 18."
    )
    assert normalize_gold_solution("A = <<1000+234=1234>>1234.\n#### 1,234\n") == "A = 1234.\nThe answer is 1,234."
    assert normalize_gold_solution("#### 7") == "The answer is 7."
    with pytest.raises(S3FTError):
        normalize_gold_solution("no final line")


def _rows(split):
    path = shared_data_dir() / "gsm8k" / f"{split}.jsonl"
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def gsm8k():
    return {split: _rows(split) for split in ("train", "test")}


def test_gsm8k_golds_judge_themselves(gsm8k):
    rows = gsm8k["train"] + gsm8k["test"]
    assert len(gsm8k["train"]) == 7473 and len(gsm8k["test"]) == 1319
    start = time.perf_counter()
    bad_raw, bad_norm, bad_format = [], [], []
    for row in rows:
        gold = row["answer"]
        if not is_correct(gold, gold):
            bad_raw.append(gold[-80:])
        normalized = normalize_gold_solution(gold)
        if not is_correct(normalized, gold):
            bad_norm.append(normalized[-80:])
        number = gold.rsplit("####", 1)[1].strip()
        if "<<" in normalized or ">>" in normalized or not normalized.endswith(f"The answer is {number}."):
            bad_format.append(normalized[-80:])
    elapsed = time.perf_counter() - start
    assert not bad_raw, bad_raw[:5]
    assert not bad_norm, bad_norm[:5]
    assert not bad_format, bad_format[:5]
    assert elapsed < 5.0, f"judging {len(rows)} golds twice took {elapsed:.1f}s"


def test_gsm8k_different_golds_mostly_mismatch(gsm8k):
    rows = gsm8k["test"]
    matches = sum(is_correct(a["answer"], b["answer"]) for a, b in zip(rows, rows[1:]))
    assert matches / (len(rows) - 1) < 0.05


# The answer line's final value: an expression after the marker means its result.
FINAL_VALUE_CASES = [
    # (response, the stated result, an operand or a checked value that must not be read)
    ("Therefore, the answer is 3 * 4 = 12.", "12", "3"),
    ("The answer is 3 * 4.", "12", "3"),
    ("The answer is 3 x 4 = 12 eggs.", "12", "4"),
    ("The answer is $1,200 + $300 = $1,500.", "1500", "1200"),
    ("The answer is (3 + 4) * 2 = 14", "14", "7"),
    ("The answer is 3 * (4 + 2) = 18 dollars.", "18", "3"),
    ("The answer is 20 - 5 = 15.", "15", "20"),
    ("The answer is 10 / 4 = 2.5 hours.", "2.5", "10"),
    ("The answer is 12 (4 + 8 from Monday).", "12", "8"),
    ("The answer is 12.\nCheck: 3 * 5 = 15", "12", "15"),
    ("The answer is 7 because 3 + 4 = 7 and 2 + 2 = 4.", "7", "4"),
    ("The answer is:\n\n**42**", "42", "0"),
    ("\\boxed{3 \\times 4 = 12}", "12", "3"),
    ("The final answer is 6 * 7 = 42 cookies.\n\nDone in 3 steps.", "42", "3"),
]


@pytest.mark.parametrize("response, result, operand", FINAL_VALUE_CASES)
def test_the_answer_is_the_result_of_the_stated_expression(response, result, operand):
    assert is_correct(response, result)
    assert not is_correct(response, operand)
    assert read_answer(response).how == "marker"


def test_how_the_answer_was_read():
    assert read_answer("So she has 18 eggs.").how == "last_number"
    assert read_answer("I cannot tell.") == Reading(None, "no_answer", False)
    # `stated`: the value visibly ended before the text did (what a cut response must show)
    assert read_answer("The answer is 12.\n").stated and read_answer("The answer is 12 apples").stated
    assert not read_answer("The answer is 12").stated  # could have gone on: 125
    assert not read_answer("The answer is 12.").stated  # could have gone on: 12.5
    assert not read_answer("Then 3 + 4 = 7 and so on").stated  # no marker


def _judge_gsm8k(responses, finish_reasons, **settings):
    from s3ft_jax.judges.settings import JudgeSettings
    from s3ft_jax.judges.verdict import Judge
    from s3ft_jax.tasks import TaskSettings, get_task
    from s3ft_jax.tasks.base import Example

    example = Example("e", {"question": "q"}, "3 * 4 = 12.\nThe answer is 12.", "12")
    return Judge(get_task(TaskSettings(name="gsm8k")), JudgeSettings(**settings))([example] * len(responses), responses, finish_reasons)


def test_answers_cut_at_the_token_limit_are_refused_unless_stated_before_the_cut():
    responses = ["First 3 * 4 = 12, so then we add", "The answer is 12.\nLet me check again: 3 * 4", "The answer is 12", "First 3 * 4 = 12"]
    cut = _judge_gsm8k(responses, ["length"] * 4)
    assert [v.correct for v in cut] == [False, True, False, False]
    assert [v.how for v in cut] == ["truncated", "marker", "truncated", "truncated"]
    # Ended by EOS or a stop string, the same texts keep their verdicts; judge.accept_truncated keeps them too.
    ended = _judge_gsm8k(responses, ["eos", "stop", "eos", "eos"])
    assert [v.correct for v in ended] == [True, True, True, True]
    assert [v.correct for v in _judge_gsm8k(responses, ["length"] * 4, accept_truncated=True)] == [True] * 4
    # A wrong cut answer stays wrong, with the judge's own reason.
    (wrong,) = _judge_gsm8k(["The answer is 13.\nCheck"], ["length"])
    assert not wrong.correct and wrong.how == "marker"
