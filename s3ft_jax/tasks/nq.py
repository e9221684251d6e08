"""NQ-open: short factual answers, judged by an LLM (or SQuAD-style heuristics).

Test: the standard NQ-open dev set (3,610). Train pool: the EfficientQA dev and test files
(1,800 + 1,769), same distribution and disjoint from dev (arXiv:2502.08130).
"""

from __future__ import annotations

from pathlib import Path

from s3ft_jax.tasks.base import Example, Task, TaskPrompts, check_split
from s3ft_jax.tasks.data import load_rows, require

FILES = {
    "train": ("nq_open/NQ-open.efficientqa.dev.1.1.jsonl", "nq_open/NQ-open.efficientqa.test.1.1.jsonl"),
    "test": ("nq_open/NQ-open.dev.jsonl",),
}

HUB_SPLITS = {"test": "validation"}

PREDICTION_PROMPT = (
    "Answer the following question with a short factual answer (a few words, no explanation).\n\n"
    "Question: {question}"
)

# The judge sees the question, the gold answers and the response, and says yes or no.
JUDGE_PROMPT = (
    "You are grading an answer to a trivia question.\n\n"
    "Question: {question}\n"
    "Correct answer(s): {golds}\n"
    "Response to grade: {response}\n\n"
    "Does the response give an answer equivalent to one of the correct answers? "
    "Reply with one word: yes or no."
)


def examples(data_dir: Path, split: str, source: str = "") -> list[Example]:
    check_split("nq", split, tuple(FILES))
    out = []
    sources = (source,) if source else FILES[split]
    # The hub's nq_open (`hf:google-research-datasets/nq_open`) calls the dev set "validation".
    read_split = HUB_SPLITS.get(split, split) if source.startswith("hf:") else split
    for part, path in enumerate(sources):
        for i, (where, row) in enumerate(load_rows(path, data_dir=data_dir, split=read_split)):
            require(row, where, "question", "answer")  # answer: a non-empty list of non-blank strings
            answers = list(row["answer"]) if isinstance(row["answer"], list) else [row["answer"]]
            out.append(Example(f"nq-{split}-{part}-{i}", {"question": row["question"]}, answers[0], answers))
    return out


def task(source: str = "") -> Task:
    return Task(
        name="nq",
        judge="llm",
        # sdft: SDFT_DISTILL_USING, SDFT's template for general instruction data (Dolly has open QA).
        prompts=TaskPrompts(PREDICTION_PROMPT, judge=JUDGE_PROMPT).resolved(),
        load=lambda data_dir, split: examples(data_dir, split, source),
        splits=tuple(FILES),
        max_new_tokens=64,
        files={split: (source,) if source else paths for split, paths in FILES.items()},
    )
