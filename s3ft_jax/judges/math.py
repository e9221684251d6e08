"""GSM8K judge: extract the final number of a response and compare it with the gold answer.

The prompt asks the model to end with "The answer is N". `extract_answer` takes the number after
the LAST answer marker ("The answer is", "The final answer is", "Answer:", `\\boxed{...}`, or
GSM8K's own `####`), else the last number anywhere in the text. Numbers may carry thousands
commas, `$`, a trailing `%`/unit/period, a unicode minus, decimals (`.5`, `18.00`) or be simple
fractions (`3/4`, `\\frac{3}{4}`). Values are compared exactly as `fractions.Fraction`, so
`18.00 == 18` and `3/4 == 0.75`, while `0.333` != `1/3` (GSM8K answers are exact).

Why not HF `math-verify` (0.9.0, evaluated against this module's cases and GSM8K; the timings
are in docs/performance.md):
- speed: it is about ten times slower per answer than this module, and build stages judge
  thousands of answers;
- correctness on the data: on the raw gold solutions it got 26 of 8,792 wrong, because its
  "answer" keyword heuristic matches words like "answered 43" and "answers ... 43200";
- it does not read the unicode minus ("The answer is −5" gives no answer);
- `parse` raises in any non-main thread (it times out with signal.alarm) unless the timeout is
  switched off, and it pulls in latex2sympy2_extended + antlr4 + sympy at import.
Its strength, symbolic LaTeX equivalence, is not needed for integer/decimal GSM8K answers.
"""

from __future__ import annotations

import re
from fractions import Fraction

from s3ft_jax.tasks.gsm8k import gold_value
from s3ft_jax.tasks.numbers import NUMBER_RE, clean, format_number, match_value

__all__ = ["extract_answer", "is_correct"]

# Answer markers; the number after the last one that has a number after it wins.
_MARKER_RE = re.compile(
    r"""
    (?:\b(?:final\s+)?answer\s+is\b\s*:?)
  | (?:\banswer\s*:)
  | (?:\\boxed\s*\{)
  | (?:\#\#\#\#)
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _last_number(text: str) -> Fraction | None:
    values = [v for v in map(match_value, NUMBER_RE.finditer(text)) if v is not None]
    return values[-1] if values else None


def _extract_value(response: str) -> Fraction | None:
    text = clean(response)
    markers = list(_MARKER_RE.finditer(text))
    # Segment after each marker up to the next one; the last segment holding a number wins.
    for i in range(len(markers) - 1, -1, -1):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        for match in NUMBER_RE.finditer(text, markers[i].end(), end):
            value = match_value(match)
            if value is not None:
                return value
    return _last_number(text)


def extract_answer(response: str) -> str | None:
    """The response's final answer as a normalised number string ("1000", "0.75", "-5"), or None."""
    value = _extract_value(response)
    return None if value is None else format_number(value)


def is_correct(response: str, gold: str) -> bool:
    """Whether the response's final answer equals the gold answer exactly (18.00 == 18, 3/4 == 0.75)."""
    predicted = _extract_value(response)
    return predicted is not None and predicted == gold_value(gold)
