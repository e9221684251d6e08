"""Numbers as people write them in math answers: `1,000`, `$5`, `-3`, `.5`, `18.00`, `3/4`,
`\\frac{3}{4}`, a unicode minus. Parsed to exact `Fraction`s and written back canonically.

Shared by the GSM8K task (its gold answers) and the math judge (the model's answers), so both
read a number the same way.
"""

from __future__ import annotations

import re
from fractions import Fraction

# One number: optional sign and `$`, then a fraction, a thousands-grouped number, a plain
# number, or a bare decimal. A minus counts as a sign only when it is not a binary operator
# (not right after a word character or a closing bracket) and touches the digits.
NUMBER_RE = re.compile(
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

_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")


def clean(text: str) -> str:
    """Undo LaTeX/markdown spellings of numbers: `\\frac{3}{4}` -> 3/4, `1{,}000`, `\\$`, `\\%`."""
    text = text.replace("{,}", ",").replace("\\$", "$").replace("\\%", "%").replace("\\!", "")
    return _LATEX_FRAC_RE.sub(r"\1/\2", text)


def match_value(match: re.Match) -> Fraction | None:
    body = match.group("body").replace(",", "")
    try:
        value = Fraction(body)
    except (ValueError, ZeroDivisionError):  # 3/0
        return None
    return -value if match.group("sign") else value


def format_number(value: Fraction) -> str:
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
    for match in NUMBER_RE.finditer(clean(text)):
        value = match_value(match)
        if value is not None:
            return value
    return None


def numbers(text: str) -> list[Fraction]:
    """Every number in `text`, in order, as exact Fractions (same spellings as answers)."""
    return [v for v in map(match_value, NUMBER_RE.finditer(clean(text))) if v is not None]
