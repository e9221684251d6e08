"""GSM8K: grade-school math; the judge compares final numbers.

Gold solutions are rewritten into the format the prompt asks of the model (no `<<...>>`
calculator notes, ending "The answer is N."), so gold, paraphrase and own targets look alike.
"""

from __future__ import annotations

from pathlib import Path

from s3ft_jax.judges.math import gold_answer, normalize_gold_solution
from s3ft_jax.tasks.base import Example, Task, TaskPrompts, check_split
from s3ft_jax.tasks.data import load_table

SPLITS = ("train", "test")

# The paper's prediction/training prompt (arXiv:2502.08130). `{{answer}}` is a literal placeholder.
PREDICTION_PROMPT = (
    "You are an expert in math. Answer the following question step by step. "
    "Your final answer should be an integer at the end, formatted as: The answer is {{answer}}\n\n"
    "Question: {question}"
)


def load_split(data_dir: Path, split: str, source: str = "") -> list[dict]:
    check_split("gsm8k", split, SPLITS)
    return load_table(source or f"gsm8k/{split}.jsonl", data_dir=data_dir, split=split)


def gold_number(answer: str) -> str:
    """The number after `####` in a GSM8K gold answer."""
    return gold_answer(answer)


def examples(data_dir: Path, split: str, source: str = "") -> list[Example]:
    return [
        Example(f"gsm8k-{split}-{i}", {"question": row["question"]}, normalize_gold_solution(row["answer"]), gold_answer(row["answer"]))
        for i, row in enumerate(load_split(data_dir, split, source))
    ]


def task(source: str = "") -> Task:
    return Task(
        name="gsm8k",
        judge="numeric",
        prompts=TaskPrompts(PREDICTION_PROMPT).resolved(),
        load=lambda data_dir, split: examples(data_dir, split, source),
        splits=SPLITS,
        max_new_tokens=256,
    )
