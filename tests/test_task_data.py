"""Task data is read as the files say or not at all: a row without a field the task reads, a
repeated id or a test split that repeats training rows is an error naming where (issue 28),
and good files load as before."""

import dataclasses
import json

import pytest

from s3ft_jax.errors import ConfigError, S3FTError
from s3ft_jax.sampling.prompts import prompt_rows
from s3ft_jax.tasks import CustomTaskSettings, Example, TaskSettings, check_disjoint, get_task, load_examples
from s3ft_jax.tasks import custom, gsm8k, mbpp, nq
from s3ft_jax.tasks.data import Where, check_unique_ids, load_rows, require
from tests.conftest import shared_data_dir

pytestmark = pytest.mark.fast


def _jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


# -- where rows are --------------------------------------------------------------------------


def test_rows_know_their_line_in_every_local_format(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"q": "a"}\n\n{"q": "b"}\n')
    (tmp_path / "rows.csv").write_text('q,answer\n"a, quoted",1\n"two\nlines",2\nc,3\n')
    (tmp_path / "array.json").write_text('[\n  {"q": "a"},\n\n  {"q": "b",\n   "n": [1,\n 2]}, {"q": "c"}\n]\n')
    (tmp_path / "lines.json").write_text('{"q": "a"}\n{"q": "b"}\n')
    (tmp_path / "one.json").write_text('\n{"q": "a"}')
    lines = {name: [(w.line, row["q"]) for w, row in load_rows(str(tmp_path / name))] for name in
             ("rows.jsonl", "rows.csv", "array.json", "lines.json", "one.json")}
    assert lines == {
        "rows.jsonl": [(1, "a"), (3, "b")],
        "rows.csv": [(2, "a, quoted"), (4, "two\nlines"), (5, "c")],  # a record's last line
        "array.json": [(2, "a"), (4, "b"), (6, "c")],
        "lines.json": [(1, "a"), (2, "b")],
        "one.json": [(1, "a")],
    }
    where, row = load_rows(str(tmp_path / "rows.jsonl"))[1]
    assert str(where) == f"{tmp_path}/rows.jsonl:3" and row == {"q": "b"}  # as the file has it: no filled-in columns
    assert str(Where("hf:x (train)", 4, "row")) == "hf:x (train) row 4"


@pytest.mark.parametrize(
    "row, message",
    [
        ({"q": "x"}, "f.jsonl:7: no field 'answer' (the row has 'q')"),
        ({}, "f.jsonl:7: no field 'answer' (the row has no fields)"),
        ({"answer": None}, "f.jsonl:7: field 'answer' is null"),
        ({"answer": " \n"}, "f.jsonl:7: field 'answer' is empty"),
        ({"answer": []}, "f.jsonl:7: field 'answer' is empty"),
        ({"answer": ["a", ""]}, "f.jsonl:7: field 'answer' is empty"),
        ({"answer": ["a", None]}, "f.jsonl:7: field 'answer' is empty"),
    ],
)
def test_require_names_the_line_and_the_field(row, message):
    with pytest.raises(S3FTError) as info:
        require(row, Where("f.jsonl", 7), "answer")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["4", 0, 0.0, False, ["a", "b"], {"k": 1}])
def test_require_accepts_values(value):
    require({"answer": value}, Where("f.jsonl", 1), "answer")


def test_duplicate_ids_name_both_places():
    check_unique_ids([("a", Where("f", 1)), ("b", Where("f", 2))])
    with pytest.raises(S3FTError, match=r"^f:5: duplicate id 'a' \(first on line 2\)$"):
        check_unique_ids([("b", Where("f", 1)), ("a", Where("f", 2)), ("a", Where("f", 5))])
    with pytest.raises(S3FTError, match=r"^g:1: duplicate id 'a' \(first on f:3\)$"):
        check_unique_ids([("a", Where("f", 3)), ("a", Where("g", 1))])


# -- the custom task ---------------------------------------------------------------------------


def test_custom_good_files_load(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [{"id": 7, "prompt": "1+1?", "answer": 2, "note": "n"},
                                              {"id": "x", "prompt": "2+2?", "answer": ["4", "four"]}])
    (tmp_path / "test.csv").write_text("prompt,answer\n3+3?,6\n4+4?,8\n")
    settings = CustomTaskSettings(train=train, test=str(tmp_path / "test.csv"))
    rows = custom.examples(settings, None, "train")
    assert [(e.id, e.fields, e.gold, e.reference) for e in rows] == [
        ("7", {"note": "n", "prompt": "1+1?"}, "2", ["2"]), ("x", {"id": "x", "prompt": "2+2?"}, "4", ["4", "four"])]
    assert [e.id for e in custom.examples(settings, None, "test")] == ["custom-test-0", "custom-test-1"]  # no id column


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"id": "a", "prompt": "p", "answer": "1"}, {"id": "b", "prompt": "q"}], r"train.jsonl:2: no field 'answer'"),
        ([{"id": "a", "prompt": "p", "answer": "1"}, {"id": None, "prompt": "q", "answer": "2"}], r"train.jsonl:2: field 'id' is null"),
        ([{"prompt": "p", "answer": "1"}, {"id": "b", "prompt": "q", "answer": "2"}], r"train.jsonl:1: no field 'id'"),
        ([{"id": 1, "prompt": "p", "answer": "1"}, {"id": "1", "prompt": "q", "answer": "2"}],
         r"train.jsonl:2: duplicate id '1' \(first on line 1\)"),
    ],
)
def test_custom_bad_rows_are_refused(tmp_path, rows, message):
    settings = CustomTaskSettings(train=_jsonl(tmp_path / "train.jsonl", rows))
    with pytest.raises(S3FTError, match=message):
        custom.examples(settings, None, "train")


def test_custom_target_and_code_fields_are_required_when_used(tmp_path):
    rows = [{"id": "a", "prompt": "p", "answer": "1", "solution": "It is 1."}, {"id": "b", "prompt": "q", "answer": "2", "solution": ""}]
    settings = CustomTaskSettings(train=_jsonl(tmp_path / "train.jsonl", rows))
    assert [e.gold for e in custom.examples(settings, None, "train")] == ["1", "2"]
    with pytest.raises(S3FTError, match="train.jsonl:2: field 'solution' is empty"):
        custom.examples(dataclasses.replace(settings, target_field="solution"), None, "train")
    code = [{"id": "a", "prompt": "p", "answer": "def f(): pass", "tests": ["assert f() is None", " "]}]
    with pytest.raises(S3FTError, match="code.jsonl:1: field 'tests' is empty"):
        custom.examples(CustomTaskSettings(train=_jsonl(tmp_path / "code.jsonl", code), judge="code"), None, "train")


# -- the built-in tasks --------------------------------------------------------------------------


def test_gsm8k_rows_name_their_line(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    _jsonl(tmp_path / "gsm8k" / "train.jsonl", [{"question": "1+1?", "answer": "1+1=2\n#### 2"}, {"question": "", "answer": "#### 3"}])
    with pytest.raises(S3FTError, match="train.jsonl:2: field 'question' is empty"):
        gsm8k.examples(tmp_path, "train")
    _jsonl(tmp_path / "gsm8k" / "train.jsonl", [{"question": "1+1?", "answer": "1+1=2\n#### 2"}, {"question": "q", "answer": "no number"}])
    with pytest.raises(S3FTError, match="train.jsonl:2: GSM8K gold solution has no final '#### N' line"):
        gsm8k.examples(tmp_path, "train")
    _jsonl(tmp_path / "gsm8k" / "train.jsonl", [{"question": "1+1?", "answer": "1+1=2\n#### 2"}])
    assert [(e.id, e.gold, e.reference) for e in gsm8k.examples(tmp_path, "train")] == [("gsm8k-train-0", "1+1=2\nThe answer is 2.", "2")]


def test_mbpp_repeated_task_id_and_missing_fields(tmp_path):
    row = {"task_id": 11, "text": "Write f.", "code": "def f(): pass", "test_list": ["assert f() is None"]}
    path = tmp_path / "mbpp.jsonl"
    _jsonl(path, [row, {**row, "task_id": 601}])
    assert [e.id for e in mbpp.examples(tmp_path, "test", str(path))] == ["mbpp-11"]
    _jsonl(path, [row, {**row, "task_id": 601}, {**row, "task_id": 11}])
    with pytest.raises(S3FTError, match=r"mbpp.jsonl:3: duplicate id 'mbpp-11' \(first on line 1\)"):
        mbpp.examples(tmp_path, "train", str(path))
    _jsonl(path, [row, {"task_id": 12, "text": "g", "test_list": []}])
    with pytest.raises(S3FTError, match="mbpp.jsonl:2: no field 'code'"):
        mbpp.examples(tmp_path, "test", str(path))


def test_nq_row_without_an_answer_is_refused_not_dropped(tmp_path):
    path = tmp_path / "nq.jsonl"
    _jsonl(path, [{"question": "who?", "answer": ["Ada"]}, {"question": "what?", "answer": "a string"}])
    assert [e.reference for e in nq.examples(tmp_path, "test", str(path))] == [["Ada"], ["a string"]]
    _jsonl(path, [{"question": "who?", "answer": ["Ada"]}, {"question": "what?", "answer": [" "]}])
    with pytest.raises(S3FTError, match="nq.jsonl:2: field 'answer' is empty"):
        nq.examples(tmp_path, "test", str(path))


def test_load_examples_refuses_a_repeated_id_from_any_loader():
    settings = TaskSettings(name="custom", custom=CustomTaskSettings(train="/x.jsonl"))
    task = dataclasses.replace(get_task(settings), load=lambda data_dir, split: [Example("a", {"prompt": "p"}, "g", ["g"])] * 2)
    with pytest.raises(ConfigError, match="task custom split 'train': duplicate example id 'a'"):
        load_examples(settings, task, "train")


# -- train and test apart --------------------------------------------------------------------------


def _ex(id_, **fields):
    return Example(id_, fields, "g", ["g"])


def test_custom_overlap_is_by_id_or_by_the_prompt_the_model_reads():
    settings = TaskSettings(name="custom", custom=CustomTaskSettings(train="tr.jsonl", test="te.jsonl"))
    task = get_task(settings)
    train = [_ex("a", prompt="What is 1 + 1?"), _ex("b", prompt="What is 2 + 2?")]
    check_disjoint(settings, task, train, [_ex("c", prompt="What is 3 + 3?")])
    with pytest.raises(ConfigError, match=r"the train split \(tr.jsonl\) and the test split \(te.jsonl\) share 2 of 3 test rows "
                                          r"\(same id or prompt; e.g. test id 'c' = train id 'b'\)"):
        check_disjoint(settings, task, train, [_ex("c", prompt=" What is 2 +\n2?"), _ex("d", prompt="new"), _ex("a", prompt="other")])
    check_disjoint(dataclasses.replace(settings, allow_overlap=True), task, train, train)
    check_disjoint(dataclasses.replace(settings, limit=1), task, train, [_ex("b", prompt="What is 2 + 2?")])  # b is not trained on


def test_builtin_overlap_is_by_id_or_all_input_fields():
    settings = TaskSettings(name="mbpp", prompts=dataclasses.replace(TaskSettings().prompts, prediction="{text}"))
    task = get_task(settings)
    train = [_ex("mbpp-602", text="Find the first repeated character.", tests="assert f('abcabc') == 'a'")]
    # The same problem text with other tests (as MBPP 602 and 217) is another row, whatever the prompt shows.
    check_disjoint(settings, task, train, [_ex("mbpp-217", text="Find the first repeated character.", tests="assert g('Google') == 'o'")])
    with pytest.raises(ConfigError, match="share 1 of 1 test rows .*e.g. test id 'mbpp-217' = train id 'mbpp-602'"):
        check_disjoint(settings, task, train, [dataclasses.replace(train[0], id="mbpp-217")])


def test_official_splits_do_not_overlap():
    """The shipped tasks' own train and test splits pass (measured: no shared id or input)."""
    data = shared_data_dir()
    for name in ("gsm8k", "mbpp", "nq"):
        settings = TaskSettings(name=name, data_dir=str(data))
        task = get_task(settings)
        check_disjoint(settings, task, load_examples(settings, task, "train"), load_examples(settings, task, "test"))


# -- prompt files (`s3ft generate`) ------------------------------------------------------------------


def test_prompt_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    _jsonl(path, [{"id": 1, "prompt": "a"}, {"id": "1", "messages": [{"role": "user", "content": "b"}]}, {"id": [1], "prompt_ids": [5]}])
    assert [line for line, _ in prompt_rows(path)] == [1, 2, 3]
    for rows, message in [
        ([{"id": 1, "prompt": "a"}, {"id": 2, "prompt": "b"}, {"id": 1, "prompt": "c"}], r":3: duplicate id 1 \(first on line 1\)"),
        ([{"id": None, "prompt": "a"}], ":1: each row needs an 'id'"),
        ([{"id": 1, "messages": []}], ":1: row needs a non-empty 'prompt', 'messages' or 'prompt_ids'"),
    ]:
        _jsonl(path, rows)
        with pytest.raises(S3FTError, match=message):
            prompt_rows(path)
