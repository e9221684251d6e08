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

from s3ft_jax.errors import S3FTError

__all__ = ["extract_answer", "gold_answer", "is_correct", "normalize_gold_solution", "parse_number"]

# One number: optional sign and `$`, then a fraction, a thousands-grouped number, a plain
# number, or a bare decimal. A minus counts as a sign only when it is not a binary operator
# (not right after a word character or a closing bracket) and touches the digits.
_NUMBER_RE = re.compile(
    r"""
    (?:\$\s*)?
    (?P<sign>(?<![\w)\]}])[-\u2212](?=\$?\.?\d))?
    (?:\$\s*)?
    (?P<body>
        (?<![\d.,/])\d+/\d+(?![\d/])                  # simple fraction 3/4 (not a date 3/4/20)
      | (?<![\d.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)     # 1,000 or 1,234,567.50
      | (?<![\d.])\d+(?:\.\d+)?                       # 18, 18.00
      | (?<![\d.])\.\d+                               # .5
    )
    """,
    re.VERBOSE,
)

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

_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_ANNOTATION_RE = re.compile(r"<<.*?>>", re.DOTALL)
_GOLD_LINE_RE = re.compile(r"(?:^|\n)[ \t]*####[ \t]*(?P<answer>[^\n]*?)\s*$")


def _clean(text: str) -> str:
    """Undo LaTeX/markdown spellings of numbers: `\\frac{3}{4}` -> 3/4, `1{,}000`, `\\$`, `\\%`."""
    text = text.replace("{,}", ",").replace("\\$", "$").replace("\\%", "%").replace("\\!", "")
    return _LATEX_FRAC_RE.sub(r"\1/\2", text)


def _value(match: re.Match) -> Fraction | None:
    body = match.group("body").replace(",", "")
    try:
        value = Fraction(body)
    except (ValueError, ZeroDivisionError):  # 3/0
        return None
    return -value if match.group("sign") else value


def _format(value: Fraction) -> str:
    """Canonical string: integer, exact decimal, or p/q for non-terminating fractions."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value) * 10**places  # an integer
    digits = str(scaled.numerator).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def parse_number(text: str) -> Fraction | None:
    """The first number in `text` as an exact Fraction, or None."""
    for match in _NUMBER_RE.finditer(_clean(text)):
        value = _value(match)
        if value is not None:
            return value
    return None


def _last_number(text: str) -> Fraction | None:
    values = [v for v in map(_value, _NUMBER_RE.finditer(text)) if v is not None]
    return values[-1] if values else None


def _extract_value(response: str) -> Fraction | None:
    text = _clean(response)
    markers = list(_MARKER_RE.finditer(text))
    # Segment after each marker up to the next one; the last segment holding a number wins.
    for i in range(len(markers) - 1, -1, -1):
        end = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        for match in _NUMBER_RE.finditer(text, markers[i].end(), end):
            value = _value(match)
            if value is not None:
                return value
    return _last_number(text)


def extract_answer(response: str) -> str | None:
    """The response's final answer as a normalised number string ("1000", "0.75", "-5"), or None."""
    value = _extract_value(response)
    return None if value is None else _format(value)


def _gold_value(gold: str) -> Fraction:
    if "####" in gold:
        value = parse_number(gold.rsplit("####", 1)[1])
    else:
        value = parse_number(gold)
    if value is None:
        raise S3FTError(f"GSM8K gold answer has no number: {gold[-80:]!r}")
    return value


def gold_answer(gold: str) -> str:
    """The gold's number as a normalised string: from after `####` in a raw GSM8K solution, or a
    bare number ("18", "1,000", "-3", "0.5"). Raises S3FTError if there is none."""
    return _format(_gold_value(gold))


def is_correct(response: str, gold: str) -> bool:
    """Whether the response's final answer equals the gold answer exactly (18.00 == 18, 3/4 == 0.75)."""
    predicted = _extract_value(response)
    return predicted is not None and predicted == _gold_value(gold)


def normalize_gold_solution(raw: str) -> str:
    """A GSM8K gold solution in the training-target format: `<<...>>` calculator annotations
    dropped and the final `#### N` line replaced by "The answer is N." (reasoning kept)."""
    text = _ANNOTATION_RE.sub("", raw)
    match = _GOLD_LINE_RE.search(text)
    if match is None or not match.group("answer"):
        raise S3FTError(f"GSM8K gold solution has no final '#### N' line: {raw[-80:]!r}")
    answer = match.group("answer").rstrip(".")
    reasoning = text[: match.start()].rstrip()
    final = f"The answer is {answer}."
    return f"{reasoning}\n{final}" if reasoning else final
