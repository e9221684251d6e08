"""Where each file of the data directory comes from on the Hugging Face hub, and how a hub
dataset becomes that file (`s3ft data fetch`).

`SOURCES` maps every file a task or benchmark reads (relative to the data directory) to the
hub dataset (id, config, revision, splits) it can be rebuilt from and a converter from the
hub's rows to the file's text, in the row format our readers take (tasks/*.py,
evaluation/benchmarks.py). The copies in /work/shared/data were taken from the GitHub
upstreams and checked against these hub datasets (each folder's SOURCE.md); those notes name
no hub commit, so `revision` is None (the hub's default branch) until one is pinned here.

`write_layout` is the conversion alone (hub rows in, files out): it needs no network, so it is
what the tests run. `fetch` loads the datasets from the hub through `datasets` and calls it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from s3ft_jax.errors import S3FTError
from s3ft_jax.io import atomic_write_text


@dataclasses.dataclass(frozen=True)
class HubSource:
    dataset: str  # hub id
    config: str | None
    splits: tuple[str, ...]  # read in this order and concatenated
    convert: Callable[[list[dict]], str]  # the rows of `splits` -> the file's text
    revision: str | None = None  # None: the default branch (SOURCE.md records no hub commit)

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return (self.dataset, self.config, self.revision)

    def describe(self) -> str:
        config = f":{self.config}" if self.config else ""
        revision = f"@{self.revision}" if self.revision else ""
        return f"hf:{self.dataset}{config}{revision} ({'+'.join(self.splits)})"


def _jsonl(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _fields(*names: str) -> Callable[[list[dict]], str]:
    return lambda rows: _jsonl({k: row[k] for k in names} for row in rows)


def _mbpp(rows: list[dict]) -> str:
    # One file with all 974 problems in task_id order; tasks/mbpp.py splits it by task_id.
    names = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")
    return _jsonl({k: row.get(k, [] if k == "challenge_test_list" else "") for k in names}
                  for row in sorted(rows, key=lambda r: int(r["task_id"])))


def _mmlu(rows: list[dict]) -> str:
    # Subject-alphabetical, then the hub's order (sorted() is stable), as the copy is.
    return _jsonl({"subject": r["subject"], "question": r["question"], "choices": list(r["choices"]),
                   "answer": int(r["answer"])} for r in sorted(rows, key=lambda r: r["subject"]))


def _truthfulqa(rows: list[dict]) -> str:
    # mc_task.json: {"question", "mc1_targets": {choice: 0/1}, "mc2_targets": {...}}; the hub
    # splits each targets dict into parallel `choices` and `labels` lists.
    def targets(t: dict) -> dict:
        return {choice: int(label) for choice, label in zip(t["choices"], t["labels"])}

    data = [{"question": r["question"], "mc1_targets": targets(r["mc1_targets"]), "mc2_targets": targets(r["mc2_targets"])}
            for r in rows]
    return json.dumps(data, indent=4, ensure_ascii=False) + "\n"


def _arc(rows: list[dict]) -> str:
    # The original ARC JSONL nests stem and choices under "question"; the hub flattens them.
    return _jsonl({"id": r["id"],
                   "question": {"stem": r["question"],
                                "choices": [{"text": t, "label": lab} for t, lab in zip(r["choices"]["text"], r["choices"]["label"])]},
                   "answerKey": r["answerKey"]} for r in rows)


def _hellaswag(rows: list[dict]) -> str:
    # The hub has `label` as a string ("3"); the original file, an int.
    names = ("ind", "activity_label", "ctx_a", "ctx_b", "ctx", "split", "split_type", "label", "endings", "source_id")
    return _jsonl({k: (int(r[k]) if k == "label" else r[k]) for k in names} for r in rows)


def _piqa_labels(rows: list[dict]) -> str:
    return "".join(f"{int(r['label'])}\n" for r in rows)


def _boolq(rows: list[dict]) -> str:
    # SuperGLUE's passages are "{title} -- {passage}"; the original dev file (what
    # benchmarks.read_boolq reads) keeps the title apart and the answer as a bool.
    out = []
    for r in rows:
        title, sep, passage = r["passage"].partition(" -- ")
        out.append({"question": r["question"], "title": title if sep else "", "answer": bool(r["label"]),
                    "passage": passage if sep else r["passage"]})
    return _jsonl(out)


def _source(dataset: str, config: str | None, split: str | tuple[str, ...], convert) -> HubSource:
    return HubSource(dataset, config, (split,) if isinstance(split, str) else split, convert)


SOURCES: dict[str, HubSource | None] = {
    # tasks
    "gsm8k/train.jsonl": _source("openai/gsm8k", "main", "train", _fields("question", "answer")),
    "gsm8k/test.jsonl": _source("openai/gsm8k", "main", "test", _fields("question", "answer")),
    "mbpp/mbpp.jsonl": _source("google-research-datasets/mbpp", "full", ("prompt", "test", "validation", "train"), _mbpp),
    "nq_open/NQ-open.dev.jsonl": _source("google-research-datasets/nq_open", "nq_open", "validation",
                                         _fields("question", "answer")),
    # NQ's training pool is the EfficientQA dev and test files: not on the hub (GitHub
    # google-research-datasets/natural-questions, nq_open/), so not fetchable.
    "nq_open/NQ-open.efficientqa.dev.1.1.jsonl": None,
    "nq_open/NQ-open.efficientqa.test.1.1.jsonl": None,
    # benchmarks
    "mmlu/mmlu_test.jsonl": _source("cais/mmlu", "all", "test", _mmlu),
    "mmlu/mmlu_dev.jsonl": _source("cais/mmlu", "all", "dev", _mmlu),
    "truthfulqa/v1_2021/mc_task.json": _source("truthfulqa/truthful_qa", "multiple_choice", "validation", _truthfulqa),
    "hellaswag/hellaswag_val.jsonl": _source("Rowan/hellaswag", None, "validation", _hellaswag),
    "arc/ARC-Easy/ARC-Easy-Test.jsonl": _source("allenai/ai2_arc", "ARC-Easy", "test", _arc),
    "arc/ARC-Challenge/ARC-Challenge-Test.jsonl": _source("allenai/ai2_arc", "ARC-Challenge", "test", _arc),
    "winogrande/winogrande_1.1_dev.jsonl": _source("allenai/winogrande", "winogrande_xl", "validation",
                                                   _fields("sentence", "option1", "option2", "answer")),
    "piqa/valid.jsonl": _source("ybisk/piqa", None, "validation", _fields("goal", "sol1", "sol2")),
    "piqa/valid-labels.lst": _source("ybisk/piqa", None, "validation", _piqa_labels),
    "boolq/dev.jsonl": _source("aps/super_glue", "boolq", "validation", _boolq),
}


def _rows(dataset, split: str, name: str) -> list[dict]:
    try:
        part = dataset[split]
    except (KeyError, IndexError, TypeError):
        raise S3FTError(f"{name} has no split {split!r}") from None
    return part.to_list() if hasattr(part, "to_list") else list(part)


def write_layout(datasets: Mapping[tuple, object], out_dir: str | Path, files: Sequence[str]) -> list[Path]:
    """Write `files` (keys of SOURCES) under `out_dir` from `datasets`, which maps each
    source's `key` (dataset, config, revision) to its splits (a `datasets.DatasetDict`, or any
    mapping of split -> rows). Returns the paths written."""
    written = []
    for file in files:
        source = SOURCES.get(file)
        if source is None:
            raise S3FTError(f"{file}: no hub source (see README, 'Data files')")
        if source.key not in datasets:
            raise S3FTError(f"{file}: {source.describe()} was not loaded")
        rows = [row for split in source.splits for row in _rows(datasets[source.key], split, source.describe())]
        path = Path(out_dir) / file
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = source.convert(rows)
        except (KeyError, TypeError, ValueError) as e:
            raise S3FTError(f"{source.describe()} -> {file}: rows lack the expected column ({type(e).__name__}: {e})") from None
        atomic_write_text(path, text)
        written.append(path)
    return written


def fetch(out_dir: str | Path, files: Sequence[str], *, log: Callable[[str], None] = lambda line: None) -> list[Path]:
    """Load the hub datasets `files` come from (through `datasets`) and write the files.
    Offline, the first dataset that cannot be loaded ends it, in one line that names it."""
    unknown = [f for f in files if SOURCES.get(f) is None]
    if unknown:
        raise S3FTError(f"{unknown[0]}: no hub source, so it cannot be fetched (see README, 'Data files')")
    import logging

    import datasets as hf

    hf.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    loaded = {}
    for source in dict.fromkeys(SOURCES[f] for f in files):
        if source.key in loaded:
            continue
        log(f"loading {source.describe()}")
        try:
            loaded[source.key] = hf.load_dataset(source.dataset, source.config, revision=source.revision)
        except Exception as e:  # offline, unknown id, gated: all one line
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise S3FTError(f"cannot reach hub dataset {source.dataset}{':' + source.config if source.config else ''}: {first}") from None
    return write_layout(loaded, out_dir, files)
