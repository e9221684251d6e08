"""GSM8K: grade-school math with a final number."""

from __future__ import annotations

import re
from pathlib import Path

from s3ft_jax.errors import S3FTError
from s3ft_jax.tasks.data import read_jsonl

SPLITS = ("train", "test")

# The paper's prediction/training prompt (S3FT.md), kept as data so configs can override it.
PREDICTION_PROMPT = (
    "You are an expert in math. Answer the following question step by step. "
    "Your final answer should be an integer at the end, formatted as: The answer is {{answer}}\n\n"
    "Question: {question}"
)


def load_split(data_dir: Path, split: str) -> list[dict]:
    if split not in SPLITS:
        raise S3FTError(f"gsm8k has no split {split!r}: choose from {', '.join(SPLITS)}")
    return read_jsonl(Path(data_dir) / "gsm8k" / f"{split}.jsonl")


def gold_number(answer: str) -> str:
    """The number after `####` in a GSM8K gold answer."""
    match = re.search(r"####\s*(.+)\s*$", answer)
    if not match:
        raise S3FTError(f"GSM8K answer without '####': {answer[-60:]!r}")
    return match.group(1).replace(",", "").strip()
