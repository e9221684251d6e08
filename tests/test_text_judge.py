"""SQuAD-style open-QA heuristics, with expected values worked out by hand."""

import pytest

from s3ft_jax.judges.text import contains_answer, exact_match, f1, normalize_answer

pytestmark = pytest.mark.fast  # `make test-fast`


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Cat", "cat"),
        ("  A  cat,  sat!  ", "cat sat"),
        ("an apple", "apple"),
        ("theatre", "theatre"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("Rock 'n' Roll", "rock n roll"),
        ("the-cat", "thecat"),  # punctuation is deleted, not replaced by a space
        ("a\tb\nc", "b c"),
        ("", ""),
        ("The", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match():
    assert exact_match("The Eiffel Tower.", ["eiffel tower"])
    assert exact_match("Paris", ["London", "paris!"])  # any gold
    assert not exact_match("Paris, France", ["Paris"])
    assert not exact_match("", ["Paris"])
    assert not exact_match("Paris", [])
    assert exact_match("the", ["a"])  # both normalise to ""


def test_f1_values():
    # pred {cat, sat}, gold {cat, sat, down}: P = 2/2, R = 2/3, F1 = 2*(1*2/3)/(1+2/3) = 0.8
    assert f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    assert f1("cat", ["cat"]) == pytest.approx(1.0)
    assert f1("dog", ["cat"]) == 0.0
    # pred {barack, obama, was, president}, gold {obama}: P = 1/4, R = 1, F1 = 2*(1/4)/(5/4) = 0.4
    assert f1("Barack Obama was president", ["Obama"]) == pytest.approx(0.4)
    # max over golds: 0.4 vs "barack obama": P = 2/4, R = 1, F1 = 1/(3/2) = 2/3
    assert f1("Barack Obama was president", ["Obama", "Barack Obama"]) == pytest.approx(2 / 3)
    # token multiset: pred {cat, cat}, gold {cat}: common 1, P = 1/2, R = 1, F1 = 2/3
    assert f1("cat cat", ["cat"]) == pytest.approx(2 / 3)
    assert f1("", ["cat"]) == 0.0
    assert f1("cat", []) == 0.0


def test_contains_answer():
    assert contains_answer("It was built in Paris, France.", ["paris"])
    assert contains_answer("The winner was Barack Obama in 2008", ["Barack Obama"])
    assert not contains_answer("Obama, Barack", ["Barack Obama"])  # order matters
    assert not contains_answer("A Parisian café", ["Paris"])  # whole tokens only
    assert contains_answer("no idea, maybe london", ["Paris", "London"])
    assert not contains_answer("anything", ["the"])  # empty normalised gold never matches
    assert not contains_answer("anything", [])


def test_single_string_gold():
    assert exact_match("Paris", "paris")
    assert f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert contains_answer("in Paris", "Paris")
