"""Multiple-choice benchmarks from the local data directory, prompted as lm-eval does.

Each reader turns one dataset (see each folder's SOURCE.md) into `MCItem`s whose prompt,
choices and gold answer are the ones lm-evaluation-harness's task YAML (v0.4) builds:

* mmlu, mmlu_5shot (mmlu/mmlu_test.jsonl; shots: the subject's first 5 of mmlu_dev.jsonl):
  "The following are multiple choice questions (with answers) about {subject}.\n\n"
  [+ per shot "{question}\nA. …\nD. …\nAnswer: {letter}\n\n"] + "{question}\nA. {c0}\nB. {c1}
  \nC. {c2}\nD. {c3}\nAnswer:"; continuations " A" … " D"; gold `answer`.
* truthfulqa_mc1 / _mc2 (truthfulqa/v1_2021/mc_task.json): the 6-shot QA primer +
  "\n\nQ: {question}\nA:"; continuations " {choice}"; gold 0 / the MC2 0/1 labels.
* hellaswag (hellaswag/hellaswag_val.jsonl): preprocess("{activity_label}: {ctx_a}
  {ctx_b.capitalize()}"); continuations " " + preprocess(ending); gold `label`.
* arc_easy, arc_challenge (arc/ARC-*/ARC-*-Test.jsonl): "Question: {stem}\nAnswer:";
  continuations " {choice text}"; gold the index of `answerKey` among the labels.
* winogrande (winogrande/winogrande_1.1_dev.jsonl), partial evaluation: one context per option,
  the sentence up to "_" + option; the continuation scored after each is " " + the text after
  "_"; gold `answer` - 1.
* piqa (piqa/valid.jsonl + valid-labels.lst): "Question: {goal}\nAnswer:"; continuations
  " {sol1}", " {sol2}"; gold the label.
* boolq (boolq/dev.jsonl): "{title} -- {passage}\nQuestion: {question}?\nAnswer:";
  continuations " no", " yes"; gold `answer`.

BoolQ: the harness reads SuperGLUE's copy, whose passages are the original ones prefixed with
"{title} -- "; the original dev file here keeps the title separately, so it is put back.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from s3ft_jax.errors import S3FTError
from s3ft_jax.io import read_jsonl


# Every file a reader opens, relative to the data directory (checked before a run starts).
FILES = {
    "mmlu_test": "mmlu/mmlu_test.jsonl",
    "mmlu_dev": "mmlu/mmlu_dev.jsonl",
    "truthfulqa": "truthfulqa/v1_2021/mc_task.json",
    "hellaswag": "hellaswag/hellaswag_val.jsonl",
    "arc_easy": "arc/ARC-Easy/ARC-Easy-Test.jsonl",
    "arc_challenge": "arc/ARC-Challenge/ARC-Challenge-Test.jsonl",
    "winogrande": "winogrande/winogrande_1.1_dev.jsonl",
    "piqa": "piqa/valid.jsonl",
    "piqa_labels": "piqa/valid-labels.lst",
    "boolq": "boolq/dev.jsonl",
}


@dataclasses.dataclass(frozen=True)
class MCItem:
    """One multiple-choice question.

    Usually every choice is scored as a continuation of `context`. With `suffix` set (partial
    evaluation, Winogrande) every choice instead completes the context, and the shared
    `suffix` is what gets scored after each completed context.
    """

    id: str
    context: str
    choices: list[str]
    gold: int | list[int]  # the correct index; for truthfulqa_mc2 the 0/1 label of every choice
    task: str
    subtask: str | None = None  # MMLU: the harness's per-subject task, e.g. "mmlu_anatomy"
    suffix: str | None = None
    delimiter: str = " "  # the harness's target_delimiter

    def requests(self) -> list[tuple[str, str]]:
        """(context, continuation) per choice, as the harness sends them to the model."""
        if self.suffix is not None:
            return [(self.context + choice, self.delimiter + self.suffix) for choice in self.choices]
        return [(self.context, self.delimiter + choice) for choice in self.choices]

    def choice_strings(self) -> list[str]:
        """The harness's `doc_to_choice` strings: what acc_norm divides by the length of."""
        if self.suffix is not None:
            return [self.context + choice for choice in self.choices]
        return list(self.choices)


# ----------------------------------------------------------------------------------------
# MMLU


MMLU_CATEGORIES: dict[str, tuple[str, ...]] = {
    "stem": (
        "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
        "college_computer_science", "college_mathematics", "college_physics", "computer_security",
        "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
        "high_school_chemistry", "high_school_computer_science", "high_school_mathematics",
        "high_school_physics", "high_school_statistics", "machine_learning",
    ),
    "other": (
        "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
        "management", "marketing", "medical_genetics", "miscellaneous", "nutrition",
        "professional_accounting", "professional_medicine", "virology",
    ),
    "social_sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
        "human_sexuality", "professional_psychology", "public_relations", "security_studies", "sociology",
        "us_foreign_policy",
    ),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history",
        "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
        "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law",
        "world_religions",
    ),
}  # fmt: skip
MMLU_SUBJECT_CATEGORY = {s: cat for cat, subjects in MMLU_CATEGORIES.items() for s in subjects}
_LETTERS = ("A", "B", "C", "D")


def _mmlu_question(row: dict) -> str:
    lines = [row["question"].strip()] + [f"{letter}. {choice}" for letter, choice in zip(_LETTERS, row["choices"])]
    return "\n".join(lines) + "\nAnswer:"


def read_mmlu(data_dir: Path, *, num_fewshot: int = 0, per_subject: int | None = None, task: str = "mmlu") -> list[MCItem]:
    """MMLU test questions; shots are the first `num_fewshot` dev questions of the subject."""
    rows = read_jsonl(data_dir / FILES["mmlu_test"])
    shots: dict[str, list[dict]] = {}
    if num_fewshot:
        for row in read_jsonl(data_dir / FILES["mmlu_dev"]):
            shots.setdefault(row["subject"], []).append(row)
    items: list[MCItem] = []
    seen: dict[str, int] = {}
    for row in rows:
        subject = row["subject"]
        if subject not in MMLU_SUBJECT_CATEGORY:
            raise S3FTError(f"unknown MMLU subject {subject!r}")
        index = seen[subject] = seen.get(subject, -1) + 1
        if per_subject is not None and index >= per_subject:
            continue
        subject_shots = shots.get(subject, [])[:num_fewshot]
        if len(subject_shots) < num_fewshot:
            raise S3FTError(f"MMLU subject {subject!r} has only {len(subject_shots)} dev questions for {num_fewshot} shots")
        context = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        context += "".join(f"{_mmlu_question(s)} {_LETTERS[s['answer']]}\n\n" for s in subject_shots)
        context += _mmlu_question(row)
        items.append(MCItem(f"{subject}/{index}", context, list(_LETTERS), int(row["answer"]), task, subtask=f"mmlu_{subject}"))
    return items


# ----------------------------------------------------------------------------------------
# TruthfulQA (MC1, MC2)

TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def read_truthfulqa(data_dir: Path, *, mc: int) -> list[MCItem]:
    """The classic 817 questions (mc_task.json, the file HF `truthful_qa` is built from).

    MC1: choices in file order, the single true answer first (gold 0). MC2: gold is the 0/1
    label of every choice."""
    path = data_dir / FILES["truthfulqa"]
    if not path.is_file():
        raise S3FTError(f"missing data file {path}")
    rows = json.loads(path.read_text(encoding="utf-8"))
    key, task = (("mc1_targets", "truthfulqa_mc1") if mc == 1 else ("mc2_targets", "truthfulqa_mc2"))
    items = []
    for i, row in enumerate(rows):
        targets = row[key]
        context = TRUTHFULQA_PRIMER + "\n\nQ: " + row["question"] + "\nA:"
        gold: int | list[int] = 0 if mc == 1 else [int(v) for v in targets.values()]
        items.append(MCItem(f"{task}/{i}", context, list(targets), gold, task))
    return items


# ----------------------------------------------------------------------------------------
# HellaSwag, ARC, Winogrande, PIQA, BoolQ


def hellaswag_preprocess(text: str) -> str:
    """The harness's cleanup of HellaSwag text (WikiHow bracket artifacts, double spaces)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def read_hellaswag(data_dir: Path) -> list[MCItem]:
    items = []
    for i, row in enumerate(read_jsonl(data_dir / FILES["hellaswag"])):
        context = hellaswag_preprocess(row["activity_label"] + ": " + row["ctx_a"] + " " + row["ctx_b"].capitalize())
        choices = [hellaswag_preprocess(ending) for ending in row["endings"]]
        items.append(MCItem(f"hellaswag/{i}", context, choices, int(row["label"]), "hellaswag"))
    return items


def read_arc(data_dir: Path, subset: str) -> list[MCItem]:
    """ARC test split; `subset` is "Easy" or "Challenge"."""
    task = f"arc_{subset.lower()}"
    items = []
    for row in read_jsonl(data_dir / FILES[f"arc_{subset.lower()}"]):
        choices = row["question"]["choices"]
        labels = [c["label"] for c in choices]
        context = f"Question: {row['question']['stem']}\nAnswer:"
        items.append(MCItem(row["id"], context, [c["text"] for c in choices], labels.index(row["answerKey"]), task))
    return items


def read_winogrande(data_dir: Path) -> list[MCItem]:
    """Partial evaluation: "…so _ always got…" -> contexts "…so Sarah" / "…so Maria",
    each followed by the scored suffix " always got…"."""
    items = []
    for i, row in enumerate(read_jsonl(data_dir / FILES["winogrande"])):
        sentence = row["sentence"]
        blank = sentence.index("_")
        items.append(
            MCItem(
                f"winogrande/{i}",
                sentence[:blank],
                [row["option1"], row["option2"]],
                {"1": 0, "2": 1}[row["answer"]],
                "winogrande",
                suffix=sentence[blank + 1 :].strip(),
            )
        )
    return items


def read_piqa(data_dir: Path) -> list[MCItem]:
    rows = read_jsonl(data_dir / FILES["piqa"])
    labels_path = data_dir / FILES["piqa_labels"]
    if not labels_path.is_file():
        raise S3FTError(f"missing data file {labels_path}")
    labels = [int(line) for line in labels_path.read_text().split()]
    if len(labels) != len(rows):
        raise S3FTError(f"{labels_path} has {len(labels)} labels for {len(rows)} PIQA questions")
    return [
        MCItem(f"piqa/{i}", f"Question: {row['goal']}\nAnswer:", [row["sol1"], row["sol2"]], label, "piqa")
        for i, (row, label) in enumerate(zip(rows, labels))
    ]


def read_boolq(data_dir: Path) -> list[MCItem]:
    items = []
    for i, row in enumerate(read_jsonl(data_dir / FILES["boolq"])):
        context = f"{row['title']} -- {row['passage']}\nQuestion: {row['question']}?\nAnswer:"
        items.append(MCItem(f"boolq/{i}", context, ["no", "yes"], int(bool(row["answer"])), "boolq"))
    return items


# ----------------------------------------------------------------------------------------
# Registry

READERS: dict[str, Callable[..., list[MCItem]]] = {
    "mmlu": lambda d, per_subject=None: read_mmlu(d, num_fewshot=0, per_subject=per_subject, task="mmlu"),
    "mmlu_5shot": lambda d, per_subject=None: read_mmlu(d, num_fewshot=5, per_subject=per_subject, task="mmlu_5shot"),
    "truthfulqa_mc1": lambda d, **_: read_truthfulqa(d, mc=1),
    "truthfulqa_mc2": lambda d, **_: read_truthfulqa(d, mc=2),
    "hellaswag": lambda d, **_: read_hellaswag(d),
    "arc_easy": lambda d, **_: read_arc(d, "Easy"),
    "arc_challenge": lambda d, **_: read_arc(d, "Challenge"),
    "winogrande": lambda d, **_: read_winogrande(d),
    "piqa": lambda d, **_: read_piqa(d),
    "boolq": lambda d, **_: read_boolq(d),
}
TASKS = tuple(READERS)
# The FILES each benchmark reads.
TASK_FILES = {
    "mmlu": ("mmlu_test",), "mmlu_5shot": ("mmlu_test", "mmlu_dev"),
    "truthfulqa_mc1": ("truthfulqa",), "truthfulqa_mc2": ("truthfulqa",), "hellaswag": ("hellaswag",),
    "arc_easy": ("arc_easy",), "arc_challenge": ("arc_challenge",), "winogrande": ("winogrande",),
    "piqa": ("piqa", "piqa_labels"), "boolq": ("boolq",),
}  # fmt: skip

# The metrics each task's harness YAML lists (what an lm-eval results table shows).
HARNESS_METRICS: dict[str, tuple[str, ...]] = {
    "mmlu": ("acc",),
    "mmlu_5shot": ("acc",),
    "truthfulqa_mc1": ("acc",),
    "truthfulqa_mc2": ("acc",),
    "hellaswag": ("acc", "acc_norm"),
    "arc_easy": ("acc", "acc_norm"),
    "arc_challenge": ("acc", "acc_norm"),
    "winogrande": ("acc",),
    "piqa": ("acc", "acc_norm"),
    "boolq": ("acc",),
}


def benchmark_files(task: str) -> list[str]:
    """The files benchmark `task` reads, relative to the data directory."""
    return [FILES[key] for key in TASK_FILES[task]]


def missing_files(data_dir: str | Path, tasks: Sequence[str]) -> list[Path]:
    """The data files `tasks` would read that are not in `data_dir` (checked before a run)."""
    paths = dict.fromkeys(Path(data_dir) / file for task in tasks for file in benchmark_files(task))
    return [p for p in paths if not p.is_file()]


def load_task(data_dir: str | Path, task: str, *, limit: int | None = None, mmlu_per_subject: int | None = None) -> list[MCItem]:
    """A benchmark's items in the harness's document order.

    `limit` keeps the first N items. For MMLU, `mmlu_per_subject=k` first keeps the first k
    test questions of every subject (lm-eval's `--limit k` on the `mmlu` group does the same).
    """
    if task not in READERS:
        raise S3FTError(f"unknown benchmark {task!r}: choose from {', '.join(TASKS)}")
    items = READERS[task](Path(data_dir), per_subject=mmlu_per_subject)
    return items if limit is None else items[: int(limit)]


__all__ = ["FILES", "HARNESS_METRICS", "MCItem", "MMLU_CATEGORIES", "MMLU_SUBJECT_CATEGORY", "TASKS", "TRUTHFULQA_PRIMER", "load_task", "missing_files"]
