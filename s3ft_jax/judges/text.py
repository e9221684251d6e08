"""SQuAD-style heuristics for open QA (NQ): normalised exact match, token F1, answer containment.

`normalize_answer`, `exact_match` and `f1` follow the official SQuAD v1.1 evaluation script
(lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace; F1 over
the multiset of tokens), taking the maximum over the gold answers. `contains_answer` is looser,
for sentence-long model answers: some normalised gold occurs as a contiguous token run of the
normalised prediction.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

__all__ = ["contains_answer", "exact_match", "f1", "normalize_answer"]

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (SQuAD v1.1)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


def _golds(golds: str | Iterable[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else list(golds)


def _f1_single(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: str | Iterable[str]) -> bool:
    """Whether the normalised prediction equals any normalised gold."""
    pred = normalize_answer(prediction)
    return any(pred == normalize_answer(g) for g in _golds(golds))


def f1(prediction: str, golds: str | Iterable[str]) -> float:
    """The best token-level F1 of the prediction against the golds (0.0 with no golds)."""
    return max((_f1_single(prediction, g) for g in _golds(golds)), default=0.0)


def contains_answer(prediction: str, golds: str | Iterable[str]) -> bool:
    """Whether some non-empty normalised gold appears as a contiguous token run in the normalised
    prediction ("in paris france" contains "Paris", but "parisian" does not)."""
    pred = normalize_answer(prediction).split()
    for gold in _golds(golds):
        tokens = normalize_answer(gold).split()
        n = len(tokens)
        if n and any(pred[i : i + n] == tokens for i in range(len(pred) - n + 1)):
            return True
    return False
