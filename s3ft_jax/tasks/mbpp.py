"""MBPP: write a Python function that passes the task's asserts; judged by running them.

Standard split by task_id (Austin et al. 2021): few-shot 1-10, test 11-510, validation
511-600, train 601-974. Code goes between [BEGIN] and [DONE]; generation stops at [DONE].
"""

from __future__ import annotations

import re
from pathlib import Path

from s3ft_jax.errors import S3FTError
from s3ft_jax.tasks.base import SDFT_DISTILL_REFER, Example, Task, TaskPrompts, check_split
from s3ft_jax.tasks.data import check_unique_ids, load_rows, require

FILE = "mbpp/mbpp.jsonl"
SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}

PREDICTION_PROMPT = (
    "You are an expert Python programmer, and here is your task: {text} "
    "Your code should pass these tests:\n\n{tests}\n\n"
    "Write only the code, starting with [BEGIN] on its own line and ending with [DONE] on its own line."
)

_FENCE_RE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def gold_target(code: str) -> str:
    return f"[BEGIN]\n{normalize_code(code)}\n[DONE]"


def normalize_code(code: str) -> str:
    return code.replace("\r\n", "\n").replace("\t", "    ").strip("\n")


def extract_program(response: str) -> str:
    """The code of a response: between [BEGIN] and [DONE] (either may be missing, since the
    sampler cuts at the stop string), without Markdown fences."""
    text = response
    if "[BEGIN]" in text:
        text = text.split("[BEGIN]", 1)[1]
    text = text.split("[DONE]", 1)[0]
    fenced = _FENCE_RE.search(text)
    if fenced:
        text = fenced.group(1)
    return text.strip("\n")


def examples(data_dir: Path, split: str, source: str = "") -> list[Example]:
    check_split("mbpp", split, tuple(SPLITS))
    lo, hi = SPLITS[split]
    out, ids = [], []
    # A file holds all 974 problems; the hub splits them in four (`hf:google-research-datasets/mbpp:full`).
    hub_splits = ("prompt", "test", "validation", "train") if source.startswith("hf:") else ("train",)
    rows = [r for hub_split in hub_splits for r in load_rows(source or FILE, data_dir=data_dir, split=hub_split)]
    for where, row in rows:
        require(row, where, "task_id")
        try:
            task_id = int(row["task_id"])
        except (TypeError, ValueError):
            raise S3FTError(f"{where}: task_id {row['task_id']!r} is not a whole number") from None
        ids.append((f"mbpp-{task_id}", where))  # the whole file: one task_id, one problem
        if lo <= task_id <= hi:
            require(row, where, "text", "code", "test_list")
            tests = [t.replace("\r\n", "\n") for t in row["test_list"]]
            out.append(Example(
                f"mbpp-{task_id}",
                {"text": row["text"], "tests": "\n".join(tests)},
                gold_target(row["code"]),
                {"tests": tests, "setup": (row.get("test_setup_code") or "").replace("\r\n", "\n")},
            ))
    check_unique_ids(ids)
    return out


def task(source: str = "") -> Task:
    return Task(
        name="mbpp",
        judge="code",
        # SDFT distilled its code data (Magicoder) with `alpaca_distill_refer`.
        prompts=TaskPrompts(PREDICTION_PROMPT, distill=SDFT_DISTILL_REFER).resolved(),
        load=lambda data_dir, split: examples(data_dir, split, source),
        splits=tuple(SPLITS),
        max_new_tokens=512,
        stop=("[DONE]",),
        extract_program=extract_program,
        files={split: (source or FILE,) for split in SPLITS},  # one file, split by task_id
    )
