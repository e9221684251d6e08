"""Whether a paraphrase keeps the gold's solution, not only its final answer.

A paraphrase judged only on its final answer can be a bare "The answer is 42.": short, so
likely under the model, but it trains the model to skip the reasoning. With
`judge.keep_solution` on (off by default, as in the paper) a paraphrase the task's judge
accepts counts only if it

* contains at least `fraction` of the gold's intermediate results (numeric tasks: GSM8K), or
* is at least `fraction` of the gold's length in words.

Intermediate results are the numbers right after an "=" in the gold's reasoning lines (GSM8K
golds read "48/2 = 24 clips", their `<<48/2=24>>` notes dropped); a gold without any "="
contributes every number of its reasoning lines. The final answer is left out: the judge has
already checked it.
"""

from __future__ import annotations

from fractions import Fraction

from s3ft_jax.tasks.numbers import numbers


def intermediate_results(gold: str, final: Fraction | None = None) -> set[Fraction]:
    """The gold's intermediate results (see the module docstring), without `final`."""
    lines = [line for line in gold.strip().splitlines() if line.strip()]
    reasoning = lines[:-1] if len(lines) > 1 else []  # the last line states the final answer
    after_equals = set()
    for line in reasoning:
        for segment in line.split("=")[1:]:
            found = numbers(segment)
            if found:
                after_equals.add(found[0])
    results = after_equals or {v for line in reasoning for v in numbers(line)}
    return results - {final}


def keeps_solution(response: str, gold: str, *, fraction: float, final: Fraction | None = None,
                   numeric: bool = True) -> tuple[bool, str]:
    """(kept, why): whether `response` keeps enough of `gold`'s solution."""
    words, gold_words = len(response.split()), len(gold.split())
    if words >= fraction * gold_words:
        return True, f"{words} of the gold's {gold_words} words"
    results = intermediate_results(gold, final) if numeric else set()
    if results:
        found = results & set(numbers(response))
        if len(found) >= fraction * len(results):
            return True, f"{len(found)} of {len(results)} intermediate results"
        return False, f"{len(found)} of {len(results)} intermediate results, {words} of the gold's {gold_words} words"
    return False, f"{words} of the gold's {gold_words} words"


__all__ = ["intermediate_results", "keeps_solution"]
