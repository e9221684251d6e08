"""The judge audit (judges/audit.py): golds must be accepted, perturbed golds rejected, and the
audit must see it when a judge does neither. Deliberately broken judges prove it can."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from s3ft_jax.judges.audit import audit, change_expected, perturb, route_counts
from s3ft_jax.judges.settings import JudgeSettings
from s3ft_jax.judges.verdict import Judge, Verdict
from s3ft_jax.report import judge_audit_tables, print_tables, write_report
from s3ft_jax.tasks import TaskSettings, get_task
from s3ft_jax.tasks.base import Example
from tests.conftest import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]

GSM = get_task(TaskSettings(name="gsm8k"))
MATH = [
    Example("m0", {"question": "q0"}, "She has 3 + 4 = 7 apples.\nThe answer is 7.", "7"),
    Example("m1", {"question": "q1"}, "Cost: 2 * 500 = 1000 dollars.\nThe answer is 1,000.", "1000"),
    Example("m2", {"question": "q2"}, "It falls 10 - 15 = -5 degrees.\nThe answer is -5.", "-5"),
    Example("m3", {"question": "q3"}, "Half of one is 0.5.\nThe answer is 0.5.", "0.5"),
    # A gold the numeric judge cannot read (no digits): it must show up as rejected.
    Example("m4", {"question": "q4"}, "The answer is eighteen.", "18"),
]


class Contains:
    """A broken numeric judge: accepts a response that holds the gold number anywhere, and
    refuses one id's gold outright."""

    def __init__(self, refuse: str):
        self.refuse, self.calls = refuse, []

    def __call__(self, examples, responses, finish_reasons=None):
        self.calls.append(list(finish_reasons))
        return [Verdict(e.id != self.refuse and str(e.reference) in r.replace(",", ""), "stub", how="marker" if n % 2 else "")
                for n, (e, r) in enumerate(zip(examples, responses))]


# -- numeric -----------------------------------------------------------------------------------


def test_numeric_perturbation_changes_only_the_final_value():
    made = perturb(GSM, MATH)
    assert [p and p.response.splitlines()[-1] for p in made] == [
        "The answer is 8.", "The answer is 1001.", "The answer is -4.", "The answer is 1.5.", None]
    # The reasoning above it still holds the right number (what a "contains" judge would accept).
    assert made[0].response.splitlines()[0] == MATH[0].gold.splitlines()[0]
    assert made[0].example is MATH[0]


def test_the_real_numeric_judge_accepts_golds_and_rejects_perturbed_ones():
    summary, rows, _ = audit(GSM, MATH, Judge(GSM))
    gold, bad = summary["gold"], summary["perturbed"]
    assert (gold["n"], gold["accepted"], [r["id"] for r in gold["rejected"]]) == (5, 4, ["m4"])
    assert (bad["n"], bad["false_accepts"], bad["accepted"], bad["skipped"]) == (4, 0, [], ["m4"])
    assert bad["rejection_rate"] == 1.0 and gold["rate"] == 0.8
    assert [r["id"] for r in rows] == [e.id for e in MATH] and rows[4]["perturbed"] is None
    assert sum(summary["how"].values()) == 9  # every verdict has a route ("unknown" when the judge gives none)


def test_a_broken_judge_is_caught_in_both_directions():
    judge = Contains(refuse="m1")
    summary, _, _ = audit(GSM, MATH, judge)
    assert [r["id"] for r in summary["gold"]["rejected"]] == ["m1", "m4"]
    # m0, m2 and m3 state the gold number in their reasoning too: the stub accepts their
    # perturbed golds; m1's stub refusal covers its perturbation as well.
    assert [r["id"] for r in summary["perturbed"]["accepted"]] == ["m0", "m2", "m3"]
    assert summary["perturbed"]["rate"] == 0.75
    assert "final number 7 -> 8" in summary["perturbed"]["accepted"][0]["perturbation"]
    assert judge.calls == [["eos"] * 9]  # golds and perturbations in one call, as complete answers
    assert summary["how"] == {"unknown": 5, "marker": 4}


def test_limit_audits_the_first_examples_and_the_audit_is_deterministic():
    first, rows, _ = audit(GSM, MATH, Judge(GSM), limit=2)
    again, rows_again, _ = audit(GSM, MATH, Judge(GSM), limit=2)
    assert first["examples"] == 2 and [r["id"] for r in rows] == ["m0", "m1"]
    assert rows == rows_again and {k: v for k, v in first.items() if k != "seconds"} == {
        k: v for k, v in again.items() if k != "seconds"}


def test_route_counts_name_a_missing_route_unknown():
    assert route_counts([{"how": "marker"}, {"how": ""}, {}, {"how": "marker"}, {"how": "truncated"}]) == {
        "marker": 2, "truncated": 1, "unknown": 2}


# -- code --------------------------------------------------------------------------------------


def _passes(program: str, test: str) -> bool:
    scope: dict = {}
    exec(program, scope)
    try:
        exec(test, scope)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("test,changed", [
    ("assert f(5) == 2", "assert f(5) == 3"),
    ("assert f('ab')=='ba'", "assert f('ab') == 'bax'"),
    ("assert f(0) == True", "assert f(0) == False"),
    ("assert f([1]) == [1, 2]", "assert f([1]) == [1, 2, 2]"),
    ("assert f(2) == (2, 3)", "assert f(2) == (2, 3, 3)"),
    ("assert f('k') == {'a': 1, 'b': 2}", "assert f('k') == {'a': 1, 'b': 3}"),
    ("assert 2.5 == f(1)", "assert 3.5 == f(1)"),
    ("assert math.isclose(f(1), 2.5, rel_tol=0.01)", "assert not math.isclose(f(1), 2.5, rel_tol=0.01)"),
    ("assert f(None) is None", "assert not f(None) is None"),
    ("assert f(3) in [3, 4]", "assert not f(3) in [3, 4]"),
])
def test_changed_asserts_fail_where_the_original_passes(test, changed):
    assert change_expected(test) == changed
    program = ("import math\n_v = {5: 2, 'ab': 'ba', 0: True, 2: (2, 3), 'k': {'a': 1, 'b': 2}, None: None, 3: 3}\n"
               "def f(x):\n    return [1, 2] if x == [1] else 2.5 if x == 1 else _v[x]\n")
    assert _passes(program, test) and not _passes(program, changed)


@pytest.mark.parametrize("test", ["x = 1", "assert f(1 == 2", ""])
def test_no_assert_no_change(test):
    assert change_expected(test) is None


MBPP = get_task(TaskSettings(name="mbpp"))
CODE = [
    Example("c0", {"text": "add"}, "[BEGIN]\ndef add(a, b):\n    return a + b\n[DONE]",
            {"tests": ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 0) == 0"], "setup": ""}),
    Example("c1", {"text": "word"}, "[BEGIN]\ndef word(s):\n    return s.upper()\n[DONE]",
            {"tests": ["assert word('a') == 'A'", "assert word(W) == 'B'"], "setup": "W = 'b'"}),
    # A gold that fails its own test: the audit lists it as rejected.
    Example("c2", {"text": "bad"}, "[BEGIN]\ndef neg(x):\n    return x\n[DONE]", {"tests": ["assert neg(1) == -1"], "setup": ""}),
]


def test_code_perturbation_rotates_the_changed_assert():
    made = perturb(MBPP, CODE)
    assert made[0].example.reference["tests"] == ["assert add(1, 2) == 4", "assert add(2, 2) == 4", "assert add(0, 0) == 0"]
    assert made[1].example.reference["tests"] == ["assert word('a') == 'A'", "assert word(W) == 'Bx'"]
    assert made[1].example.reference["setup"] == "W = 'b'" and made[1].response == CODE[1].gold
    assert CODE[0].reference["tests"][0] == "assert add(1, 2) == 3"  # the example itself is untouched


def test_the_sandboxed_code_judge_is_audited():
    summary, rows, _ = audit(MBPP, CODE, Judge(MBPP, JudgeSettings(code_timeout_s=5.0)))
    assert [r["id"] for r in summary["gold"]["rejected"]] == ["c2"]
    assert summary["perturbed"]["n"] == 3 and summary["perturbed"]["false_accepts"] == 0
    assert all(r["perturbed"]["detail"].startswith("failed") for r in rows)


def test_a_code_judge_that_ignores_asserts_is_caught():
    def compiles(examples, responses, finish_reasons=None):
        assert finish_reasons == ["stop"] * len(responses)  # MBPP answers end at the [DONE] stop string
        return [Verdict(True, "compiled", how="sandbox:passed") for _ in responses]

    summary, _, _ = audit(MBPP, CODE, compiles)
    assert summary["gold"]["rate"] == 1.0
    assert [r["id"] for r in summary["perturbed"]["accepted"]] == ["c0", "c1", "c2"]
    assert summary["perturbed"]["how"] == {"sandbox:passed": 3}


# -- LLM ---------------------------------------------------------------------------------------

NQ = get_task(TaskSettings(name="nq"))
QA = [
    Example("q0", {"question": "capital of france"}, "Paris", ["Paris", "Paris, France"]),
    Example("q1", {"question": "city of light"}, "paris", ["paris"]),
    Example("q2", {"question": "capital of the uk"}, "London", ["London"]),
]


def test_qa_perturbation_takes_the_next_gold_that_is_wrong_here():
    assert [(p.example.id, p.response) for p in perturb(NQ, QA)] == [("q0", "London"), ("q1", "London"), ("q2", "Paris")]
    assert perturb(NQ, QA[:1]) == [None]  # nobody else's gold to borrow


class FakeLLM:
    """An LLM judge that says yes to everything but the ids in `no`, with margins; `correct`
    may differ from the margin's sign, as when the heuristics accept what the LLM refused."""

    def __init__(self, no=(), correct=None):
        self.no, self.correct = set(no), correct

    def __call__(self, examples, responses, finish_reasons=None):
        out = []
        for e, r in zip(examples, responses):
            yes = e.id not in self.no
            out.append(Verdict(yes if self.correct is None else self.correct, f"llm={'yes' if yes else 'no'}", how="llm",
                               margin=2.0 if yes else -3.0))
        return out


def test_an_llm_judge_that_accepts_everything_is_caught():
    summary, _, disagreements = audit(NQ, QA, FakeLLM(no={"q2"}), mode="llm")
    assert [r["id"] for r in summary["gold"]["rejected"]] == ["q2"]
    assert [r["id"] for r in summary["perturbed"]["accepted"]] == ["q0", "q1"]
    agreement = summary["llm_agreement"]
    assert (agreement["n"], agreement["agree"], agreement["disagreements"]) == (6, 3, 3)
    assert agreement["by_source"] == {"gold": {"n": 3, "agree": 2, "rate": 0.6667}, "perturbed": {"n": 3, "agree": 1, "rate": 0.3333}}
    assert [(d["id"], d["source"], d["llm"]) for d in disagreements] == [("q2", "gold", False), ("q0", "perturbed", True),
                                                                        ("q1", "perturbed", True)]
    first = disagreements[1]
    assert (first["question"], first["response"], first["golds"], first["margin"]) == ("capital of france", "London", ["Paris", "Paris, France"], 2.0)
    assert summary["how"] == {"llm": 6}


def test_the_llm_verdict_is_read_from_the_margin_when_there_is_one():
    # llm_or_heuristic: the heuristics accept every gold, but the LLM itself said no (margin < 0).
    summary, _, disagreements = audit(NQ, QA, FakeLLM(no={"q0", "q1", "q2"}, correct=True))
    assert summary["gold"]["rate"] == 1.0
    assert [(d["id"], d["source"], d["llm"], d["correct"]) for d in disagreements if d["source"] == "gold"] == [
        ("q0", "gold", False, True), ("q1", "gold", False, True), ("q2", "gold", False, True)]


def test_the_heuristic_judge_and_the_builds_rows():
    build_rows = {"predictions": [
        {"id": "q0", "text": "It is Paris.", "correct": True, "how": "heuristic"},
        {"id": "q1", "text": "Lyon", "correct": True, "how": ""},  # the judge accepted, the heuristics did not
        {"id": "q2", "text": "Your answer:", "correct": False, "how": "leak", "leak": "Your answer"},
        {"id": "other", "text": "x", "correct": False, "how": "truncated"},  # not an audited id
    ]}
    summary, _, disagreements = audit(NQ, QA, Judge(NQ, JudgeSettings(mode="heuristic")), build_rows=build_rows,
                                      mode="heuristic")
    assert summary["gold"]["rate"] == 1.0 and summary["perturbed"]["false_accepts"] == 0
    assert summary["build"]["predictions"] == {"n": 3, "accepted": 2, "how": {"heuristic": 1, "leak": 1, "unknown": 1}, "rate": 0.6667}
    assert [(d["id"], d["source"]) for d in disagreements] == [("q1", "predictions")]
    assert summary["llm_agreement"]["by_source"]["predictions"] == {"n": 2, "agree": 1, "rate": 0.5}
    (title, rows), = judge_audit_tables(summary).items()
    assert title == "Judge audit: nq (llm judge, judge.mode=heuristic)"
    assert rows[-1][:4] == ["LLM's verdict agrees with EM / containment", "8", "7", "87.50%"]


# -- the report and the command ----------------------------------------------------------------


def test_the_report_has_a_judge_audit_table(tmp_path):
    summary, _, _ = audit(GSM, MATH, Contains(refuse="m1"), build_rows={"predictions": [{"id": "m0", "correct": True, "how": "marker"}]})
    summary["split"] = "train"
    (title, rows), = judge_audit_tables(summary).items()
    assert title == "Judge audit: gsm8k (numeric judge, train split)"
    assert rows[1][1:4] == ["5", "3", "60.00%"] and "unknown 3" in rows[1][4]
    assert rows[2][1:4] == ["4", "3", "75.00%"]
    assert rows[3][:4] == ["this build's predictions", "1", "1", "100.00%"] and rows[3][4] == "marker 1"
    assert judge_audit_tables(None) == {}
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "judge_audit.json").write_text(json.dumps(summary))
    report = write_report(tmp_path, ["base"]).read_text()
    assert "## Judge audit: gsm8k" in report and "| golds (must be accepted) | 5 | 3 | 60.00% |" in report
    assert "Judge audit: gsm8k" in print_tables(tmp_path, ["base"])


def _cli(*args, cwd=ROOT):
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT), "S3FT_DATA_DIR": str(shared_data_dir())}
    return subprocess.run([sys.executable, "-m", "s3ft_jax.cli", "judge-audit", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd)


def test_the_judge_audit_command(tmp_path):
    out = _cli("--config.task.name=gsm8k", "--config.task.limit=6", f"--config.workdir={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert "Judge audit: gsm8k (numeric judge, train split)" in out.stdout and "100.00%" in out.stdout
    summary = json.loads((tmp_path / "judge_audit.json").read_text())
    assert (summary["gold"]["n"], summary["gold"]["accepted"], summary["perturbed"]["false_accepts"]) == (6, 6, 0)
    rows = [json.loads(line) for line in (tmp_path / "judge_audit.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"gsm8k-train-{i}" for i in range(6)]
    bad = _cli("--config.task.name=gsm8k", "--config.judge.audit_limit=-1", f"--config.workdir={tmp_path}")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "s3ft: error: judge.audit_limit must be >= 0 (0: every example), got -1"]


# -- the build ---------------------------------------------------------------------------------


def test_the_build_audits_its_judge_once_per_change(tmp_path):
    from s3ft_jax.s3ft.build import build
    from tests.test_build import Scripted, make_builder, make_config, script_for

    ids = [f"gsm8k-train-{i}" for i in range(6)]
    right, leak = script_for("gsm8k", ids)
    stage_dir = tmp_path / "build"

    def run(generator, **overrides):
        config = make_config("gsm8k", 6, **{"build.leak_filter_s3ft": True, **overrides})
        result = build("s3ft", tmp_path, make_builder(config, stage_dir, generator))
        return {s.name: s.status for s in result.stages}["judge_audit"], json.loads((stage_dir / "judge_audit.json").read_text())

    status, summary = run(Scripted(stage_dir, "gsm8k", right, leak))
    assert status == "ran" and summary["split"] == "train"
    assert (summary["gold"]["n"], summary["gold"]["accepted"], summary["perturbed"]["false_accepts"]) == (6, 6, 0)
    predictions, paraphrases = summary["build"]["predictions"], summary["build"]["paraphrases"]
    assert (predictions["n"], predictions["accepted"], predictions["how"]) == (6, len(right["predict"]), {"marker": 6})
    assert summary["gold"]["how"] == summary["perturbed"]["how"] == {"marker": 6}
    assert paraphrases["n"] == 6 - len(right["predict"]) and paraphrases["how"]["leak"] == len(leak)
    rows = [json.loads(line) for line in (stage_dir / "judge_audit.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ids

    def refuse(*args):
        raise AssertionError("a finished stage generated again")

    assert run(refuse)[0] == "skipped"
    status, summary = run(refuse, **{"judge.audit_limit": 2})  # other inputs: redone, the old verdicts kept aside
    assert status == "ran" and summary["gold"]["n"] == 2 and summary["build"]["predictions"]["n"] == 6
    assert any(p.name.startswith("judge_audit-") for p in (stage_dir / "stale").iterdir())
    (stage_dir / "judge_audit.json").unlink()
    config = make_config("gsm8k", 6, **{"build.leak_filter_s3ft": True, "judge.audit": False})
    result = build("s3ft", tmp_path, make_builder(config, stage_dir, refuse))
    assert "judge_audit" not in {s.name for s in result.stages} and not (stage_dir / "judge_audit.json").exists()
