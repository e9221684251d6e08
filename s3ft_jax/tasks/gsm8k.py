"""GSM8K: grade-school math; the judge compares final numbers.

Gold solutions are rewritten into the format the prompt asks of the model (no `<<...>>`
calculator notes, ending "The answer is N."), so gold, paraphrase and own targets look alike.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

from s3ft_jax.errors import S3FTError
from s3ft_jax.tasks.base import Example, Task, TaskPrompts, check_split
from s3ft_jax.tasks.data import load_rows, load_table, require
from s3ft_jax.tasks.numbers import format_number, parse_number

SPLITS = ("train", "test")

# The paper's prediction/training prompt (arXiv:2502.08130). `{{answer}}` is a literal placeholder.
PREDICTION_PROMPT = (
    "You are an expert in math. Answer the following question step by step. "
    "Your final answer should be an integer at the end, formatted as: The answer is {{answer}}\n\n"
    "Question: {question}"
)

# SDFT's GSM8K distillation template, `gsm8k_distill` in sail-sg/sdft main.py (the same words in
# src/llmtuner/data/template.py of its `reproduce` branch): its system text, then
# "{{content}}\n\n{{resp}}" (the question, then the gold), and the answer begun for the model
# with "Great! Let's think step by step. ", which the model continues.
DISTILL_PROMPT = (
    "You are an expert in math. Below are a math question and its reference answer. "
    "Refer to the reference answer and write a response that appropriately answers the question.\n\n"
    "{question}\n\n{reference}"
)
DISTILL_PREFIX = "Great! Let's think step by step. "


def split_file(split: str, source: str = "") -> str:
    return source or f"gsm8k/{split}.jsonl"


def load_split(data_dir: Path, split: str, source: str = "") -> list[dict]:
    check_split("gsm8k", split, SPLITS)
    return load_table(split_file(split, source), data_dir=data_dir, split=split)


_ANNOTATION_RE = re.compile(r"<<.*?>>", re.DOTALL)
_GOLD_LINE_RE = re.compile(r"(?:^|\n)[ \t]*####[ \t]*(?P<answer>[^\n]*?)\s*$")


def gold_value(gold: str) -> Fraction:
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
    return format_number(gold_value(gold))


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


def examples(data_dir: Path, split: str, source: str = "") -> list[Example]:
    check_split("gsm8k", split, SPLITS)
    out = []
    for i, (where, row) in enumerate(load_rows(split_file(split, source), data_dir=data_dir, split=split)):
        require(row, where, "question", "answer")
        try:
            gold, answer = normalize_gold_solution(row["answer"]), gold_answer(row["answer"])
        except S3FTError as e:
            raise S3FTError(f"{where}: {e}") from None
        out.append(Example(f"gsm8k-{split}-{i}", {"question": row["question"]}, gold, answer))
    return out


def task(source: str = "") -> Task:
    return Task(
        name="gsm8k",
        judge="numeric",
        prompts=TaskPrompts(PREDICTION_PROMPT, distill=DISTILL_PROMPT, distill_prefix=DISTILL_PREFIX).resolved(),
        load=lambda data_dir, split: examples(data_dir, split, source),
        splits=SPLITS,
        max_new_tokens=256,
        files={split: (split_file(split, source),) for split in SPLITS},
    )
