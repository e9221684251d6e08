"""Paraphrases that talk about the reference instead of answering (SDFT's meta-text filter).

A paraphrase written with the gold in view sometimes says "the reference answer is ..." or
"now it's your turn": fine-tuning on such text teaches the model to talk to a reference that
is never there at test time, so these count as failed paraphrases.

Two rules, named by `LEAK_RULES` (the build stages hash the name into their fingerprint):
- "sdft": exactly Yang et al.'s `verify()` (sail-sg/sdft, eval/gen_distilled_data.py): any of
  the five phrases, case-insensitive, or a (stripped) response starting with "Your turn".
- "broad": that rule widened (a curly apostrophe, "your turn" in any case or after Markdown
  such as "**"); what this project applied before issue 28, kept for the S3FT-prompt variant
  of sdft and for S3FT's paraphrases when build.leak_filter_s3ft is on.
"""

from __future__ import annotations

# sail-sg/sdft eval/gen_distilled_data.py, verify(): its ban_set and its startswith check.
SDFT_PHRASES = ("reference answer", "your response", "my response", "your own response", "now it's your turn")
SDFT_PREFIX = "Your turn"

LEAK_PHRASES = (*SDFT_PHRASES, "now it’s your turn")
LEAK_PREFIXES = ("your turn",)

LEAK_RULES = ("sdft", "broad")


def sdft_leak(text: str) -> str | None:
    """Yang et al.'s rule: the phrase (or prefix) that rejects `text`, or None."""
    lowered = text.strip().lower()
    for phrase in SDFT_PHRASES:
        if phrase in lowered:
            return phrase
    # Case-sensitive, on the stripped text, as in their code.
    return SDFT_PREFIX if text.strip().startswith(SDFT_PREFIX) else None


def meta_text_leak(text: str) -> str | None:
    """The "broad" rule: the leaked phrase found in `text`, or None."""
    lowered = text.lower()
    for phrase in LEAK_PHRASES:
        if phrase in lowered:
            return phrase
    stripped = lowered.lstrip(" \n\t*#>\"'")
    for prefix in LEAK_PREFIXES:
        if stripped.startswith(prefix):
            return prefix
    return None


def find_leak(rule: str, text: str) -> str | None:
    """`text`'s leak under `rule` ("sdft" or "broad")."""
    return sdft_leak(text) if rule == "sdft" else meta_text_leak(text)
