"""The data layout (README, "Data files"): `s3ft data check`, the hub -> file conversion of
`s3ft data fetch` (tasks/sources.py) run from local `datasets` fixtures with the hub's column
names, and hf: task sources without a data directory."""

from __future__ import annotations

import json

import datasets
import pytest

from s3ft_jax import cli
from s3ft_jax.errors import S3FTError
from s3ft_jax.evaluation import benchmarks
from s3ft_jax.evaluation.benchmarks import FILES, TASK_FILES, load_task
from s3ft_jax.tasks import gsm8k, mbpp, nq
from s3ft_jax.tasks.sources import SOURCES, write_layout
from tests.conftest import shared_data_dir


def _dd(**splits: dict) -> datasets.DatasetDict:
    return datasets.DatasetDict({name: datasets.Dataset.from_dict(columns) for name, columns in splits.items()})


GSM = {"question": ["Tom has 3 apples and buys 2. How many?", "What is 6 times 7?"],
       "answer": ["3 + 2 = <<3+2=5>>5\n#### 5", "6*7=<<6*7=42>>42\n#### 42"]}


def _mbpp_split(ids):
    return {"task_id": ids, "text": [f"Write f{i}." for i in ids], "code": [f"def f{i}():\r\n\treturn {i}" for i in ids],
            "test_list": [[f"assert f{i}() == {i}"] for i in ids], "test_setup_code": ["" for _ in ids],
            "challenge_test_list": [[] for _ in ids]}


def _mmlu(subjects):
    return {"question": [f"Q about {s}?" for s in subjects], "subject": subjects,
            "choices": [["a", "b", "c", "d"] for _ in subjects], "answer": [i % 4 for i in range(len(subjects))]}


def _arc(prefix):
    return {"id": [f"{prefix}_1", f"{prefix}_2"], "question": ["Which is hot?", "Which is cold?"],
            "choices": [{"text": ["sun", "ice"], "label": ["A", "B"]}, {"text": ["fire", "snow", "sand"], "label": ["1", "2", "3"]}],
            "answerKey": ["A", "2"]}


# Each hub dataset of SOURCES, tiny, with the hub's real column names and value types.
HUB = {
    ("openai/gsm8k", "main", None): _dd(train=GSM, test={k: v[:1] for k, v in GSM.items()}),
    ("google-research-datasets/mbpp", "full", None): _dd(
        train=_mbpp_split([601, 602]), test=_mbpp_split([12, 11]), validation=_mbpp_split([511]), prompt=_mbpp_split([1])),
    ("google-research-datasets/nq_open", "nq_open", None): _dd(
        validation={"question": ["who wrote hamlet"], "answer": [["William Shakespeare", "Shakespeare"]]}),
    ("cais/mmlu", "all", None): _dd(test=_mmlu(["virology", "anatomy", "anatomy"]),
                                    dev=_mmlu(["anatomy"] * 5 + ["virology"] * 5)),
    ("truthfulqa/truthful_qa", "multiple_choice", None): _dd(validation={
        "question": ["What happens if you eat a pomegranate?"],
        "mc1_targets": [{"choices": ["Nothing.", "You die."], "labels": [1, 0]}],
        "mc2_targets": [{"choices": ["Nothing.", "Nothing bad.", "You die."], "labels": [1, 1, 0]}]}),
    ("Rowan/hellaswag", None, None): _dd(validation={
        "ind": [24], "activity_label": ["Roof shingle removal"], "ctx_a": ["A man is on a roof."], "ctx_b": ["he"],
        "ctx": ["A man is on a roof. he"], "endings": [["a [title] b", "c", "d", "e"]], "source_id": ["x"],
        "split": ["val"], "split_type": ["indomain"], "label": ["3"]}),
    ("allenai/ai2_arc", "ARC-Easy", None): _dd(test=_arc("E")),
    ("allenai/ai2_arc", "ARC-Challenge", None): _dd(test=_arc("C")),
    ("allenai/winogrande", "winogrande_xl", None): _dd(validation={
        "sentence": ["Sarah was better than Maria so _ won."], "option1": ["Sarah"], "option2": ["Maria"], "answer": ["1"]}),
    ("ybisk/piqa", None, None): _dd(validation={"goal": ["Open a jar"], "sol1": ["twist"], "sol2": ["push"], "label": [0]}),
    ("aps/super_glue", "boolq", None): _dd(validation={
        "question": ["is the sky blue"], "passage": ["Sky -- The sky is blue by day."], "idx": [0], "label": [1]}),
}

FETCHABLE = [f for f, s in SOURCES.items() if s is not None]


def test_sources_cover_every_file_a_task_or_benchmark_reads():
    read = {*FILES.values(), *(f for t in (gsm8k.task(), mbpp.task(), nq.task()) for fs in t.files.values() for f in fs)}
    assert read == set(SOURCES)
    assert {s.key for s in SOURCES.values() if s is not None} == set(HUB)


def test_written_layout_is_read_by_the_loaders(tmp_path):
    written = write_layout(HUB, tmp_path, FETCHABLE)
    assert sorted(written) == sorted(tmp_path / f for f in FETCHABLE)
    train = gsm8k.examples(tmp_path, "train")
    assert [e.reference for e in train] == ["5", "42"] and train[0].gold.endswith("The answer is 5.")
    assert len(gsm8k.examples(tmp_path, "test")) == 1
    # the four hub splits are one file in task_id order, split again by task_id
    assert [json.loads(line)["task_id"] for line in (tmp_path / "mbpp/mbpp.jsonl").read_text().splitlines()] == [1, 11, 12, 511, 601, 602]
    assert [e.id for e in mbpp.examples(tmp_path, "test")] == ["mbpp-11", "mbpp-12"]
    assert nq.examples(tmp_path, "test")[0].reference == ["William Shakespeare", "Shakespeare"]
    items = {task: load_task(tmp_path, task) for task in benchmarks.TASKS}
    assert [i.subtask for i in items["mmlu"]] == ["mmlu_anatomy", "mmlu_anatomy", "mmlu_virology"]  # subject order
    assert items["mmlu_5shot"][0].context.count("Answer:") == 6
    assert items["truthfulqa_mc2"][0].choices == ["Nothing.", "Nothing bad.", "You die."] and items["truthfulqa_mc2"][0].gold == [1, 1, 0]
    assert items["truthfulqa_mc1"][0].gold == 0
    assert items["hellaswag"][0].gold == 3 and items["hellaswag"][0].choices[0] == "a. b"
    assert [i.gold for i in items["arc_challenge"]] == [0, 1] and items["arc_easy"][1].choices == ["fire", "snow", "sand"]
    assert items["winogrande"][0].gold == 0 and items["winogrande"][0].suffix == "won."
    assert items["piqa"][0].gold == 0 and items["piqa"][0].choices == ["twist", "push"]
    assert items["boolq"][0].gold == 1 and items["boolq"][0].context.startswith("Sky -- The sky is blue by day.\nQuestion: is the sky blue?")


def test_conversion_reproduces_the_shared_copies():
    """Rows of the real files, put into the hub's shape, convert back to the same rows."""
    data = shared_data_dir()
    arc = [json.loads(line) for line in (data / FILES["arc_easy"]).read_text().splitlines()[:5]]
    boolq = [json.loads(line) for line in (data / FILES["boolq"]).read_text().splitlines()[:5]]
    hella = [json.loads(line) for line in (data / FILES["hellaswag"]).read_text().splitlines()[:5]]
    hub = {
        SOURCES[FILES["arc_easy"]].key: {"test": [
            {"id": r["id"], "question": r["question"]["stem"], "answerKey": r["answerKey"],
             "choices": {"text": [c["text"] for c in r["question"]["choices"]], "label": [c["label"] for c in r["question"]["choices"]]}}
            for r in arc]},
        SOURCES[FILES["boolq"]].key: {"validation": [
            {"question": r["question"], "passage": f"{r['title']} -- {r['passage']}", "idx": i, "label": int(r["answer"])}
            for i, r in enumerate(boolq)]},
        SOURCES[FILES["hellaswag"]].key: {"validation": [{**r, "label": str(r["label"])} for r in hella]},
    }
    for file, original in ((FILES["arc_easy"], arc), (FILES["boolq"], boolq), (FILES["hellaswag"], hella)):
        text = SOURCES[file].convert([row for split in SOURCES[file].splits for row in hub[SOURCES[file].key][split]])
        assert [json.loads(line) for line in text.splitlines()] == original, file


def test_write_layout_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(S3FTError, match="no hub source"):
        write_layout(HUB, tmp_path, ["nq_open/NQ-open.efficientqa.dev.1.1.jsonl"])
    with pytest.raises(S3FTError, match="was not loaded"):
        write_layout({}, tmp_path, ["gsm8k/train.jsonl"])
    wrong = {**HUB, ("openai/gsm8k", "main", None): _dd(train={"problem": ["x"], "solution": ["y"]})}
    with pytest.raises(S3FTError, match="rows lack the expected column"):
        write_layout(wrong, tmp_path, ["gsm8k/train.jsonl"])


def test_data_check_lists_present_and_missing(tmp_path, monkeypatch, capsys):
    write_layout(HUB, tmp_path, ["gsm8k/train.jsonl", "mmlu/mmlu_test.jsonl"])
    args = [f"--config.data.data_dir={tmp_path}", "--config.eval.benchmarks=('mmlu', 'piqa')"]
    assert cli.main(["data", "check", *args]) == 2
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert f"present  {tmp_path / 'gsm8k/train.jsonl'}  (gsm8k train)" in out
    assert f"MISSING  {tmp_path / 'gsm8k/test.jsonl'}  (gsm8k test)" in out
    assert f"present  {tmp_path / 'mmlu/mmlu_test.jsonl'}  (benchmark mmlu)" in out
    assert f"MISSING  {tmp_path / 'piqa/valid-labels.lst'}  (benchmark piqa)" in out
    assert captured.err == "3 of 5 missing: `s3ft data fetch` with the same config writes 3 of them from the hub\n"
    write_layout(HUB, tmp_path, ["gsm8k/test.jsonl", "piqa/valid.jsonl", "piqa/valid-labels.lst"])
    assert cli.main(["data", "check", *args]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "all 5 present"
    # a custom task's own files: listed, but no hub source to fetch them from
    custom = ["--config.task.name=custom", "--config.task.custom.train=mine.jsonl", "--config.task.custom.test=/no/test.jsonl"]
    assert cli.main(["data", "check", *custom, *args[:1], "--config.eval.benchmarks=()"]) == 2
    captured = capsys.readouterr()
    assert f"MISSING  {tmp_path / 'mine.jsonl'}  (custom train)" in captured.out and "MISSING  /no/test.jsonl  (custom test)" in captured.out
    assert captured.err == "2 of 2 missing\n"


def test_data_check_needs_no_directory_for_a_hub_source(monkeypatch, capsys):
    monkeypatch.delenv("S3FT_DATA_DIR", raising=False)
    args = ["--config.task.source=hf:openai/gsm8k:main", "--config.eval.benchmarks=()"]
    assert cli.main(["data", "check", *args]) == 0
    assert "hub      hf:openai/gsm8k:main  (gsm8k train, gsm8k test; read from the hub" in capsys.readouterr().out
    # without the hub source, the same config's files need a directory
    assert cli.main(["data", "check", "--config.eval.benchmarks=()"]) == 2
    assert "2 of 2 missing" in capsys.readouterr().err
    assert cli.main(["data", "check", "--config.task.name=arith", "--config.eval.benchmarks=()"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "no data files: the task generates its examples and no benchmark is set"
    assert cli.main(["data", "check", "--config.eval.benchmarks=()"]) == 2
    captured = capsys.readouterr()
    assert "MISSING  gsm8k/train.jsonl  (gsm8k train)" in captured.out
    assert captured.err == "2 of 2 missing: `s3ft data fetch` with the same config writes 2 of them from the hub\n"


def test_hub_task_source_loads_without_a_data_directory(monkeypatch):
    from s3ft_jax.tasks import data, get_task, load_examples
    from s3ft_jax.tasks.settings import TaskSettings

    monkeypatch.delenv("S3FT_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "_load_hub", lambda name, split: [dict(zip(GSM, row)) for row in zip(*GSM.values())])
    settings = TaskSettings(name="gsm8k", source="hf:openai/gsm8k:main")
    assert not settings.needs_data_dir
    assert [e.reference for e in load_examples(settings, get_task(settings), "train")] == ["5", "42"]
    local = TaskSettings(name="gsm8k")
    assert local.needs_data_dir and TaskSettings(name="gsm8k", source="gsm8k/train.jsonl").needs_data_dir
    with pytest.raises(S3FTError, match="no data directory"):
        load_examples(local, get_task(local), "train")


def test_fetch_offline_names_the_dataset(tmp_path, capsys):
    assert datasets.config.HF_HUB_OFFLINE  # conftest: no hub in tests
    assert cli.main(["data", "fetch", f"--config.data.data_dir={tmp_path / 'd'}", "--config.eval.benchmarks=()"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("s3ft: error: cannot reach hub dataset openai/gsm8k:main: "), err
    assert not (tmp_path / "d").exists()


def test_fetch_with_everything_present_writes_nothing(capsys):
    data = shared_data_dir()
    assert cli.main(["data", "fetch", f"--config.data.data_dir={data}", "--config.eval.benchmarks=('boolq',)"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out


def test_fetch_into_an_unwritable_directory_is_refused_before_the_hub(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["data", "fetch", f"--config.data.data_dir={blocker / 'd'}", "--config.eval.benchmarks=()"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"s3ft: error: cannot write to {blocker / 'd'}: {blocker} is not a directory", err


def test_mbpp_and_nq_hub_sources_read_the_hub_split_names(monkeypatch):
    """mbpp's four hub splits are one problem set split by task_id; nq_open's dev set is the
    hub's "validation"."""
    from s3ft_jax.tasks import data

    hub = {("google-research-datasets/mbpp:full", s): rows for s, rows in HUB[("google-research-datasets/mbpp", "full", None)].items()}
    hub.update({("google-research-datasets/nq_open:nq_open", s): rows for s, rows in HUB[("google-research-datasets/nq_open", "nq_open", None)].items()})
    asked = []

    def load_hub(name, split):
        asked.append((name, split))
        if (name, split) not in hub:
            raise S3FTError(f"no split {split}")
        return hub[(name, split)].to_list()

    monkeypatch.setattr(data, "_load_hub", load_hub)
    assert [e.id for e in mbpp.examples(None, "test", "hf:google-research-datasets/mbpp:full")] == ["mbpp-12", "mbpp-11"]
    assert [e.id for e in mbpp.examples(None, "train", "hf:google-research-datasets/mbpp:full")] == ["mbpp-601", "mbpp-602"]
    assert nq.examples(None, "test", "hf:google-research-datasets/nq_open:nq_open")[0].reference == ["William Shakespeare", "Shakespeare"]
    assert asked[-1] == ("google-research-datasets/nq_open:nq_open", "validation")
    with pytest.raises(S3FTError, match="no split train"):  # nq's train split is the hub's train
        nq.examples(None, "train", "hf:google-research-datasets/nq_open:nq_open")
