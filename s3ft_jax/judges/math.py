"""GSM8K judge: read the final value a response states and compare it with the gold answer.

The prompt asks the model to end with "The answer is N". The answer is the value stated after
the LAST answer marker ("The answer is", "The final answer is", "Answer:", `\\boxed{...}`, or
GSM8K's own `####`), read on the marker's line (or the next non-empty line when the marker ends
its line) up to the end of its clause (". ", ";", ", ", "because", ...):

* an expression means its result: "the answer is 3 * 4 = 12" is 12 (the value after the last
  "=" of the chain), and "the answer is 3 * 4." is 12 too (+ - * x / and brackets, exactly);
* a bare value with units, `$`, `%` or a thousands comma is that value ("$1,500 in total");
* a check written after the answer ("The answer is 12. Check: 3 * 4 = 12") is not read.

With no marker, the response's last number is the answer (`how` = "last_number"). Numbers may
carry thousands commas, `$`, a trailing `%`/unit/period, a unicode minus, decimals (`.5`,
`18.00`) or be simple fractions (`3/4`, `\\frac{3}{4}`). Values are compared exactly as
`fractions.Fraction`, so `18.00 == 18` and `3/4 == 0.75`, while `0.333` != `1/3` (GSM8K answers
are exact).

A response cut at the token limit counts only when its answer clause was complete before the
cut (`stated`): a marker, a value, and something after the value that shows it ended.

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
from dataclasses import dataclass
from fractions import Fraction

from s3ft_jax.tasks.gsm8k import gold_value
from s3ft_jax.tasks.numbers import NUMBER_RE, clean, format_number, match_value

__all__ = ["Reading", "extract_answer", "is_correct", "read_answer"]

# Answer markers; the value after the last one that states a value wins.
_MARKER_RE = re.compile(
    r"""
    (?P<phrase>\b(?:final\s+)?answer\s+is\b\s*:?)
  | (?P<colon>\banswer\s*:)
  | (?P<boxed>\\boxed\s*\{)
  | (?P<hashes>\#\#\#\#)
    """,
    re.IGNORECASE | re.VERBOSE,
)
# Where the answer's clause ends: a sentence end, a semicolon, a list comma, an explanation.
_CLAUSE_END_RE = re.compile(r"[.!?;](?=\s|$)|,\s|\s(?:because|since|which|but|given|where|when)\b|\n", re.IGNORECASE)
# A bracket right after a value opens an aside ("12 (4 + 8)"), not an expression.
_ASIDE_RE = re.compile(r"\s*\(")
_OPERATORS = {"+": "+", "-": "-", "\u2212": "-", "*": "*", "x": "*", "X": "*", "\u00d7": "*", "\u00b7": "*",
              "\\times": "*", "\\cdot": "*", "/": "/", "\u00f7": "/", "\\div": "/"}
_OPERATOR_RE = re.compile(r"\s*(\\times|\\cdot|\\div|[-+*xX/\u2212\u00d7\u00b7\u00f7])\s*")
_EQUALS_RE = re.compile(r"\s*=\s*")
_SPACE_RE = re.compile(r"[\s*_`]*")  # markdown emphasis and spaces between a marker and its value


@dataclass(frozen=True)
class Reading:
    """What a response states: its value (None: nothing to read), how it was read ("marker" |
    "last_number" | "no_answer"), and whether the stated value visibly ended before the text did."""

    value: Fraction | None
    how: str
    stated: bool


class _Expression:
    """A recursive-descent reader of `a op b op c (= d ...)` at one position of a text: numbers as
    NUMBER_RE reads them, + - * x / and brackets, exact Fractions. It stops where the grammar does."""

    def __init__(self, text: str, end: int):
        self.text, self.end = text, end

    def value_at(self, pos: int) -> tuple[Fraction, int] | None:
        """(the value of the expression chain starting at pos, where it ended), or None."""
        first = self._sum(pos)
        if first is None:
            return None
        value, pos = first
        while (eq := _EQUALS_RE.match(self.text, pos, self.end)) is not None:
            nxt = self._sum(eq.end())
            if nxt is None:
                break
            value, pos = nxt
        return value, pos

    def _sum(self, pos):
        left = self._product(pos)
        while left is not None:
            op = _OPERATOR_RE.match(self.text, left[1], self.end)
            if op is None or _OPERATORS[op.group(1)] not in "+-":
                # "5 -3": a signed number right after a value is a subtraction
                signed = self._number(left[1]) if op is None and self.text[left[1]:left[1] + 2].strip()[:1] in ("-", "\u2212") else None
                if signed is None or signed[0] >= 0:
                    return left
                left = (left[0] + signed[0], signed[1])
                continue
            right = self._product(op.end())
            if right is None:
                return left
            left = (left[0] + right[0] if _OPERATORS[op.group(1)] == "+" else left[0] - right[0], right[1])
        return left

    def _product(self, pos):
        left = self._atom(pos)
        while left is not None:
            op = _OPERATOR_RE.match(self.text, left[1], self.end)
            if op is None or _OPERATORS[op.group(1)] not in "*/":
                return left
            if op.group(1) in "xX" and not self.text[op.start():op.end()].startswith(" "):
                return left  # "3x" is a variable or a unit, not a product
            right = self._atom(op.end())
            if right is None or (_OPERATORS[op.group(1)] == "/" and right[0] == 0):
                return left
            left = (left[0] * right[0] if _OPERATORS[op.group(1)] == "*" else left[0] / right[0], right[1])
        return left

    def _atom(self, pos):
        pos = _SPACE_RE.match(self.text, pos, self.end).end()
        if self.text.startswith("(", pos):
            inner = self._sum(pos + 1)
            if inner is None:
                return None
            close = re.compile(r"\s*\)").match(self.text, inner[1], self.end)
            return (inner[0], close.end()) if close else None
        return self._number(pos)

    def _number(self, pos):
        pos = _SPACE_RE.match(self.text, pos, self.end).end()
        match = NUMBER_RE.match(self.text, pos, self.end)
        if match is None:
            return None
        value = match_value(match)
        return None if value is None else (value, match.end())


def _segment(text: str, marker: re.Match, stop: int) -> tuple[int, int]:
    """The span to read after a marker: to the end of its clause, on its line or (when the
    marker ends its line) the next non-empty one; a boxed answer up to its closing brace."""
    start = marker.end()
    if marker.group("boxed") is not None:
        depth, pos = 1, start
        while pos < stop and depth:
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            pos += 1
        return start, pos - 1 if depth == 0 else stop
    line_end = text.find("\n", start)
    line_end = stop if line_end < 0 or line_end > stop else line_end
    if not any(ch.isdigit() for ch in text[start:line_end]):  # "The answer is:\n\n12"
        rest = text[line_end:stop]
        lead = len(rest) - len(rest.lstrip())
        start = line_end + lead
        line_end = text.find("\n", start)
        line_end = stop if line_end < 0 or line_end > stop else line_end
    return start, line_end


def _read_after(text: str, marker: re.Match, stop: int) -> tuple[Fraction, int] | None:
    start, end = _segment(text, marker, stop)
    reader = _Expression(text, end)
    for match in NUMBER_RE.finditer(text, start, end):
        # the value begins at the first number of the clause, or at a bracket just before it
        clause = _CLAUSE_END_RE.search(text, start, end)
        if clause is not None and clause.start() < match.start():
            return None  # the clause ended before any value: nothing stated here
        before = text.rfind("(", start, match.start())
        begin = before if before >= 0 and not text[before + 1:match.start()].strip() else match.start()
        value = reader.value_at(begin)
        if value is None:
            value = reader.value_at(match.start())
        if value is None:
            continue
        return value
    return None


def _ends_visibly(text: str, pos: int) -> bool:
    """Whether the value that ends at `pos` visibly ended: something follows that cannot
    continue the number ("12 apples", "12.\n"), not the end of the text or a bare "12." / "1,"."""
    rest = text[pos:]
    return bool(re.match(r"\s*[^\s\d.,]|\s*[.,](?:[^\d]|\s)|\s+\S|\s*\n", rest))


def read_answer(response: str) -> Reading:
    """The value the response states, how it was read, and whether it was complete."""
    text = clean(response)
    markers = list(_MARKER_RE.finditer(text))
    for i in range(len(markers) - 1, -1, -1):
        stop = markers[i + 1].start() if i + 1 < len(markers) else len(text)
        found = _read_after(text, markers[i], stop)
        if found is not None:
            return Reading(found[0], "marker", _ends_visibly(text, found[1]))
    values = list(NUMBER_RE.finditer(text))
    for match in reversed(values):
        value = match_value(match)
        if value is not None:
            return Reading(value, "last_number", False)
    return Reading(None, "no_answer", False)


def extract_answer(response: str) -> str | None:
    """The response's final answer as a normalised number string ("1000", "0.75", "-5"), or None."""
    value = read_answer(response).value
    return None if value is None else format_number(value)


def is_correct(response: str, gold: str) -> bool:
    """Whether the response's final answer equals the gold answer exactly (18.00 == 18, 3/4 == 0.75)."""
    predicted = read_answer(response).value
    return predicted is not None and predicted == gold_value(gold)
