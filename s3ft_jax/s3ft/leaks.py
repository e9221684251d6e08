"""Paraphrases that talk about the reference instead of answering (SDFT's filter).

A paraphrase written with the gold in view sometimes says "the reference answer is ..." or
"now it's your turn": fine-tuning on such text teaches the model to talk to a reference that
is never there at test time, so these count as failed paraphrases.
"""

from __future__ import annotations

LEAK_PHRASES = ("reference answer", "your response", "my response", "your own response", "now it's your turn", "now it’s your turn")
LEAK_PREFIXES = ("your turn",)


def meta_text_leak(text: str) -> str | None:
    """The leaked phrase found in `text`, or None."""
    lowered = text.lower()
    for phrase in LEAK_PHRASES:
        if phrase in lowered:
            return phrase
    stripped = lowered.lstrip(" \n\t*#>\"'")
    for prefix in LEAK_PREFIXES:
        if stripped.startswith(prefix):
            return prefix
    return None
