"""Algorithm 1 (`s3ft build`): targets follow the verdicts, stages resume and never duplicate."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3ft_jax import cli
from s3ft_jax.config import base_config, build_settings, override, task_settings
from s3ft_jax.judges.verdict import Judge
from s3ft_jax.loader import LazyModel
from s3ft_jax.s3ft.build import Builder, build
from s3ft_jax.s3ft.leaks import meta_text_leak, sdft_leak
from s3ft_jax.tasks import get_task
from s3ft_jax.tasks.base import Example
from tests.conftest import shared_data_dir
from tests.tiny_models import make_tiny_chat_model

ROOT = Path(__file__).resolve().parents[1]


def make_config(task: str, limit: int, **overrides):
    return override(base_config(), {"task.name": task, "task.limit": limit, "data.data_dir": str(shared_data_dir()), **overrides})


def correct_text(task: str, ex: dict) -> str:
    if task == "gsm8k":
        return f"Let me think.\nThe answer is {ex['reference']}."
    return ex["gold"].removesuffix("[DONE]")  # the sampler cuts the stop string


def wrong_text(task: str, ex: dict) -> str:
    if task == "gsm8k":
        return f"The answer is {int(float(ex['reference'])) + 1}."
    return "[BEGIN]\ndef nothing():\n    return None\n"


class Scripted:
    """A generator that answers by id: right or wrong, leaking meta-text for some paraphrases
    (`leak_text` writes the leak). It checks the prompts it gets: predictions never see the gold,
    paraphrases (s3ft's `paraphrase`, sdft's `paraphrase_sdft`) always do; `prompts` keeps them."""

    def __init__(self, stage_dir: Path, task: str, right: dict[str, set], leak: set, crash_after: int | None = None,
                 leak_text: str = "Using the reference answer as a guide:\n"):
        self.stage_dir, self.task, self.right, self.leak = stage_dir, task, right, leak
        self.crash_after, self.leak_text = crash_after, leak_text
        self.calls: list[tuple[str, int]] = []
        self.prompts: dict[str, list[dict]] = {}

    def __call__(self, prompts: Path, output: Path, keep_extra: bool) -> None:
        examples = {json.loads(l)["id"]: json.loads(l) for l in (self.stage_dir / "examples.jsonl").read_text().splitlines()}
        stage = output.name.split(".")[0]
        paraphrasing = stage.startswith("paraphrase")
        rows = [json.loads(l) for l in prompts.read_text().splitlines()]
        self.calls.append((stage, len(rows)))
        self.prompts.setdefault(stage, []).extend(rows)
        with open(output, "a") as f:
            for n, row in enumerate(rows):
                if self.crash_after is not None and n == self.crash_after:
                    f.write('{"id": "torn')  # a half-written line, as a kill mid-write leaves
                    f.flush()
                    raise KeyboardInterrupt("injected crash")
                ex = examples[row["id"]]
                content = row["messages"][0]["content"]
                assert (ex["gold"] in content) == paraphrasing
                right = self.right["paraphrase" if paraphrasing else stage]
                text = correct_text(self.task, ex) if row["id"] in right else wrong_text(self.task, ex)
                if paraphrasing and row["id"] in self.leak:
                    text = self.leak_text + correct_text(self.task, ex)
                # MBPP answers end by the stop string or by EOS; both targets must end with [DONE].
                finish = ("stop" if n % 2 else "eos") if self.task == "mbpp" else "eos"
                f.write(json.dumps({"id": row["id"], "text": text, "finish_reason": finish, "token_ids": [1, 2]}) + "\n")


def no_model():
    raise AssertionError("these stages must not load a model")


def make_builder(config, stage_dir, generator):
    task = get_task(task_settings(config))
    return Builder(build_settings(config, task), task, stage_dir, model=LazyModel(no_model), model_id={"name": "scripted"},
                   generator=generator, progress=False)


def script_for(task: str, ids: list[str]) -> tuple[dict, set]:
    right = {"predict": set(ids[::3]), "paraphrase": set(ids[::2])}
    leak = {ids[2], ids[4]}  # wrong predictions whose paraphrase is right but leaks
    return right, leak


@pytest.mark.parametrize("task,limit", [("gsm8k", 16), ("mbpp", 8)])
def test_targets_follow_the_verdicts_for_every_method(task, limit, tmp_path):
    config = make_config(task, limit)
    t = get_task(task_settings(config))
    examples = t.load(shared_data_dir(), "train")[:limit]
    ids = [e.id for e in examples]
    right, leak = script_for(task, ids)
    stage_dir = tmp_path / "build"
    generator = Scripted(stage_dir, task, right, leak)
    builder = make_builder(config, stage_dir, generator)
    results = {m: build(m, tmp_path / m, builder) for m in ("s3ft", "sdft", "sft")}

    judge = Judge(t)
    by_id = {e.id: e for e in examples}
    for method, result in results.items():
        rows = [json.loads(l) for l in result.dataset.read_text().splitlines()]
        assert [r["id"] for r in rows] == ids
        counts = result.stats["counts"]
        assert sum(counts.values()) == limit == result.stats["examples"]
        assert json.loads((tmp_path / method / "stats.json").read_text()) == result.stats
        for r in rows:
            ex = by_id[r["id"]]
            assert r["prompt"] == t.training_prompt(ex) and r["gold"] == ex.gold
            if method == "sft":
                assert r["source"] == "gold" and r["prediction"] is None and r["paraphrase"] is None
            predicted_right = method == "s3ft" and r["id"] in right["predict"]
            paraphrased = method == "sdft" or (method == "s3ft" and not predicted_right)
            # SDFT's rule rejects the leaks; S3FT has no leak filter unless configured.
            paraphrase_ok = paraphrased and r["id"] in right["paraphrase"] and (method == "s3ft" or r["id"] not in leak)
            expected = "own" if predicted_right else "paraphrase" if paraphrase_ok else "gold"
            assert r["source"] == expected, (method, r["id"])
            assert (r["paraphrase"] is not None) == paraphrased
            if paraphrased and r["id"] in leak:
                assert bool(r["paraphrase_leak"]) == (method == "sdft")
                assert r["paraphrase_correct"] == (method == "s3ft")
            # Independently re-judged: own and paraphrase targets are correct, sdft's leak-free,
            # and MBPP targets end with [DONE] like the gold ones.
            if r["source"] in ("own", "paraphrase"):
                assert judge([ex], [r["target"]])[0].correct
                assert (sdft_leak(r["target"]) is None) == (method == "sdft" or r["id"] not in leak)
            if task == "mbpp":
                assert r["target"].endswith("[DONE]")
            if r["source"] == "gold":
                assert r["target"] == ex.gold
    # s3ft paraphrased its failures with S3FT's prompt; sdft distilled every example in stages of
    # its own, with SDFT's template: the question, the gold, and (GSM8K) the answer begun for it.
    n_fail = limit - len(right["predict"])
    assert generator.calls == [("predict", limit), ("paraphrase", n_fail), ("paraphrase_sdft", limit)]
    for row in generator.prompts["paraphrase"]:
        assert row["messages"] == [{"role": "user", "content": t.paraphrase_prompt(by_id[row["id"]])}]
    for row in generator.prompts["paraphrase_sdft"]:
        ex = by_id[row["id"]]
        assert row["messages"][0] == {"role": "user", "content": t.distill_prompt(ex)}
        if task == "gsm8k":
            assert row["messages"][0]["content"] == (
                "You are an expert in math. Below are a math question and its reference answer. Refer to the reference "
                f"answer and write a response that appropriately answers the question.\n\n{ex.fields['question']}\n\n{ex.gold}")
            assert row["messages"][1:] == [{"role": "assistant", "content": "Great! Let's think step by step. "}]
        else:
            assert row["messages"][0]["content"].startswith(
                "Below are an instruction that describes a task along with a reference answer. "
                "Refer to the reference answer and write your own response.\n\n### Instruction:\n" + t.prediction_prompt(ex))
            assert f"### Reference Answer:\n{ex.gold}\n\n### Response:" in row["messages"][0]["content"]
            assert len(row["messages"]) == 1
    s3ft = results["s3ft"].stats
    assert s3ft["counts"]["own"] == len(right["predict"])
    assert s3ft["prediction_accuracy"] == round(len(right["predict"]) / limit, 4)


def refuse(*args):
    raise AssertionError("a finished stage generated again")


def dataset_rows(result) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, result.dataset.read_text().splitlines())}


def test_sdft_leak_rule_is_yang_et_al_verify_and_the_broad_rule_widens_it():
    for text in ["The Reference Answer says 5.", "As your response: 5", "In my response, 5.", "Your own response is 5",
                 "Now it's your turn. 5", "  Your turn: 5"]:
        assert sdft_leak(text) and meta_text_leak(text), text
    # Their start check is case-sensitive and sees no Markdown, their phrases a straight apostrophe.
    for text in ["your turn: 5", "**Your turn** 5", "Now it’s your turn. 5"]:
        assert sdft_leak(text) is None and meta_text_leak(text), text
    for text in ["The answer is 5.", "It is my turn to add: 2 + 3 = 5.", "A reference: 5."]:
        assert sdft_leak(text) is None and meta_text_leak(text) is None, text


def test_s3ft_leak_filter_is_off_unless_configured_and_only_its_judge_stage_redoes(tmp_path):
    config = make_config("gsm8k", 12)
    stage_dir = tmp_path / "build"
    ids = [e.id for e in get_task(task_settings(config)).load(shared_data_dir(), "train")[:12]]
    right, leak = script_for("gsm8k", ids)
    leaked = sorted(leak - right["predict"])  # failed predictions whose paraphrase leaks
    assert leaked
    off = dataset_rows(build("s3ft", tmp_path / "off", make_builder(config, stage_dir, Scripted(stage_dir, "gsm8k", right, leak))))
    assert all(off[i]["source"] == "paraphrase" and off[i]["paraphrase_leak"] is None for i in leaked)

    config.build.leak_filter_s3ft = True
    on = build("s3ft", tmp_path / "on", make_builder(config, stage_dir, refuse))
    assert {s.name: s.status for s in on.stages} == {"examples": "skipped", "predict": "skipped", "judge_predict": "skipped",
                                                     "paraphrase": "skipped", "judge_paraphrase": "ran", "judge_audit": "skipped"}
    rows = dataset_rows(on)
    assert all(rows[i]["source"] == "gold" and rows[i]["paraphrase_leak"] == "reference answer" for i in leaked)
    assert on.stats["paraphrase_leaks"] == len(leaked)
    assert [i for i in ids if rows[i]["source"] != off[i]["source"]] == leaked


@pytest.mark.parametrize("template", ["sdft", "s3ft"])
def test_sdft_template_option_sets_its_prompt_and_its_leak_rule(template, tmp_path):
    """build.sdft_template=s3ft is the sdft of before: S3FT's paraphrase prompt, the broad rule."""
    config = make_config("gsm8k", 8, **{"build.sdft_template": template})
    t = get_task(task_settings(config))
    examples = t.load(shared_data_dir(), "train")[:8]
    ids = [e.id for e in examples]
    right, leak = script_for("gsm8k", ids)
    stage_dir = tmp_path / "build"
    # A leak that only the broad rule sees: SDFT's own code keeps it.
    generator = Scripted(stage_dir, "gsm8k", right, leak, leak_text="**Your turn:** ")
    rows = dataset_rows(build("sdft", tmp_path / "sdft", make_builder(config, stage_dir, generator)))
    assert [c[0] for c in generator.calls] == ["paraphrase_sdft"]
    for e, row in zip(examples, generator.prompts["paraphrase_sdft"]):
        if template == "s3ft":
            assert row["messages"] == [{"role": "user", "content": t.paraphrase_prompt(e)}]
        else:
            assert row["messages"] == [{"role": "user", "content": t.distill_prompt(e)},
                                       {"role": "assistant", "content": "Great! Let's think step by step. "}]
    for i in leak:
        assert rows[i]["source"] == ("paraphrase" if template == "sdft" else "gold")
        assert rows[i]["paraphrase_leak"] == (None if template == "sdft" else "your turn")
    for i in set(ids) - leak:
        assert rows[i]["source"] == ("paraphrase" if i in right["paraphrase"] else "gold")

    # The other template is another fingerprint: sdft's stages are redone (old files kept in
    # stale/), and nothing of s3ft's is touched.
    config.build.sdft_template = "s3ft" if template == "sdft" else "sdft"
    again = Scripted(stage_dir, "gsm8k", right, leak)
    build("sdft", tmp_path / "again", make_builder(config, stage_dir, again))
    assert again.calls == [("paraphrase_sdft", 8)]
    assert {p.name.split("-")[0] for p in (stage_dir / "stale").iterdir()} == {"paraphrase_sdft", "judge_paraphrase_sdft"}


def test_an_answer_begun_for_the_model_is_left_open_in_the_chat_template(embedded_home):
    from transformers import AutoTokenizer

    from s3ft_jax.models import resolve_model_path
    from s3ft_jax.sampling.chat import render_chat

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))
    user = [{"role": "user", "content": "What is 2 + 3?\n\n2 + 3 = 5.\nThe answer is 5."}]
    begun = render_chat(tokenizer, [*user, {"role": "assistant", "content": "Great! Let's think step by step. "}])
    assert begun == render_chat(tokenizer, user) + "Great! Let's think step by step. "


def test_rerun_skips_finished_stages_and_redoes_changed_ones(tmp_path):
    config = make_config("gsm8k", 12)
    stage_dir = tmp_path / "build"
    ids = [e.id for e in get_task(task_settings(config)).load(shared_data_dir(), "train")[:12]]
    right, leak = script_for("gsm8k", ids)
    first = build("s3ft", tmp_path, make_builder(config, stage_dir, Scripted(stage_dir, "gsm8k", right, leak)))
    dataset = first.dataset.read_bytes()

    again = build("s3ft", tmp_path, make_builder(config, stage_dir, refuse))
    assert {s.name: s.status for s in again.stages} == {n: "skipped" for n in ("examples", "predict", "judge_predict", "paraphrase", "judge_paraphrase", "judge_audit")}
    assert again.dataset.read_bytes() == dataset

    # A new prediction prompt invalidates the predictions (and everything judged from them):
    # they are redone, and the old files are kept under stale/, not deleted.
    config.task.prompts.prediction = "Solve: {question}"
    generator = Scripted(stage_dir, "gsm8k", {"predict": set(ids), "paraphrase": set()}, set())
    changed = build("s3ft", tmp_path, make_builder(config, stage_dir, generator))
    assert generator.calls == [("predict", 12)]
    assert changed.stats["counts"]["own"] == 12
    stale = list((stage_dir / "stale").iterdir())
    assert {p.name.split("-")[0] for p in stale} == {"predict", "judge_predict"}
    assert all((p / f"{p.name.split('-')[0]}.jsonl").is_file() for p in stale)


@pytest.mark.parametrize("crash_stage", ["predict", "paraphrase"])
def test_crash_mid_stage_then_rerun_gives_the_uninterrupted_result(crash_stage, tmp_path):
    config = make_config("gsm8k", 12)
    ids = [e.id for e in get_task(task_settings(config)).load(shared_data_dir(), "train")[:12]]
    right, leak = script_for("gsm8k", ids)

    clean_dir = tmp_path / "clean"
    clean = build("s3ft", clean_dir, make_builder(config, clean_dir / "build", Scripted(clean_dir / "build", "gsm8k", right, leak)))

    run_dir = tmp_path / "crashed"

    class CrashOnce(Scripted):
        def __call__(self, prompts, output, keep_extra):
            self.crash_after = 3 if output.name.startswith(crash_stage) else None
            return super().__call__(prompts, output, keep_extra)

    crashing = CrashOnce(run_dir / "build", "gsm8k", right, leak)
    with pytest.raises(KeyboardInterrupt):
        build("s3ft", run_dir, make_builder(config, run_dir / "build", crashing))
    assert not (run_dir / "dataset.jsonl").exists()
    generator = Scripted(run_dir / "build", "gsm8k", right, leak)
    resumed = build("s3ft", run_dir, make_builder(config, run_dir / "build", generator))
    done_before = 3
    crashed_size = 12 if crash_stage == "predict" else 12 - len(right["predict"])
    assert (crash_stage, crashed_size - done_before) in generator.calls  # only the rest was generated
    assert resumed.dataset.read_bytes() == clean.dataset.read_bytes()
    for name in ("predict", "judge_predict", "paraphrase", "judge_paraphrase"):
        assert (run_dir / "build" / f"{name}.jsonl").read_bytes() == (clean_dir / "build" / f"{name}.jsonl").read_bytes()


def test_kill_9_during_generation_then_rerun_matches_an_uninterrupted_run(embedded_home, tmp_path):
    """A real `kill -9` of `s3ft build` while predictions are being written."""
    from s3ft_jax.models import resolve_model_path

    model_dir = make_tiny_chat_model(tmp_path / "tiny", resolve_model_path("smollm2-135m-instruct"))
    args = ["build", f"--config.model.name={model_dir}", "--config.task.limit=5", "--config.sampling.batch_size=1",
            "--config.sampling.max_new_tokens=12", f"--config.data.data_dir={shared_data_dir()}", "--config.mesh.fsdp=1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), S3FT_LOG_LEVEL="WARNING")
    env["XLA_FLAGS"] = ""  # one device: the build runs as a user runs it

    def run(workdir: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "s3ft_jax.cli", *args, f"--config.workdir={workdir}"],
                              env=env, capture_output=True, text=True, timeout=600)

    clean = run(tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]

    workdir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "s3ft_jax.cli", *args, f"--config.workdir={workdir}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    predictions = workdir / "build" / "predict.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if predictions.exists() and predictions.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "build finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = predictions.read_text().count("\n")
    assert 1 <= written < 5
    resumed = run(workdir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed" in resumed.stdout
    assert (workdir / "dataset.jsonl").read_bytes() == (tmp_path / "clean" / "dataset.jsonl").read_bytes()
    rows = [json.loads(l) for l in (workdir / "build" / "predict.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["id"] for r in rows}) == 5


def test_cli_build_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["build", "--config.build.method=rft", f"--config.workdir={tmp_path}"]) == 2
    assert "build.method must be" in capsys.readouterr().err
    assert cli.main(["build", "--config.build.sdft_template=yang", f"--config.workdir={tmp_path}"]) == 2
    assert "build.sdft_template must be sdft or s3ft" in capsys.readouterr().err
    bad = ["build", "--config.task.name=custom", "--config.task.custom.train=nope.jsonl", f"--config.workdir={tmp_path}",
           f"--config.data.data_dir={tmp_path}", "--config.model.name=smollm2-135m-instruct"]
    assert cli.main(bad) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.jsonl" in err


def test_custom_task_from_config(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(6)))
    config = make_config("custom", 0, **{"task.custom.train": str(data), "task.custom.judge": "numeric",
                                         "task.prompts.prediction": "Compute. {prompt}"})
    t = get_task(task_settings(config))
    examples = t.load(None, "train")
    assert [e.id for e in examples] == [f"q{i}" for i in range(6)]
    assert t.prediction_prompt(examples[2]) == "Compute. What is 2 + 2?"
    assert [v.correct for v in Judge(t)(examples[2:4], ["It is 4.", "It is 7."])] == [True, False]
    config.task.custom.judge = "regex"
    config.task.custom.regex = r"ANSWER: (\w+)"
    t = get_task(task_settings(config))
    assert [v.correct for v in Judge(t)(examples[:3], ["ANSWER: 0", "answer 2", "ANSWER: 5 ... ANSWER: 4"])] == [True, False, True]


def test_distill_prompt_is_overridable_and_a_bad_field_is_named():
    config = make_config("nq", 1, **{"task.prompts.distill": "{instruction}\nGold: {reference}"})
    t = get_task(task_settings(config))
    ex = Example("x", {"question": "Who wrote Hamlet?"}, "Shakespeare", ["Shakespeare"])
    assert t.distill_prompt(ex) == t.prediction_prompt(ex) + "\nGold: Shakespeare"
    # NQ's default is SDFT's `alpaca_distill_using`.
    assert get_task(task_settings(make_config("nq", 1))).distill_prompt(ex).startswith(
        "Below are an instruction that describes a task along with a reference answer. Using the reference answer "
        "as a guide, write your own response.\n\n### Instruction:\nAnswer the following question")
    config = make_config("gsm8k", 1, **{"task.prompts.distill": "{problem} {reference}"})
    with pytest.raises(Exception, match=r"\{problem\}.*instruction, question, reference"):
        get_task(task_settings(config)).distill_prompt(Example("x", {"question": "q"}, "g", "1"))


def test_bad_prompt_template_names_the_missing_field():
    config = make_config("gsm8k", 1, **{"task.prompts.prediction": "Solve {problem}"})
    t = get_task(task_settings(config))
    with pytest.raises(Exception, match=r"\{problem\}.*question"):
        t.prediction_prompt(Example("x", {"question": "q"}, "g", "1"))


def test_build_mbpp_on_a_tiny_model_with_the_sandbox(embedded_home, tmp_path, capsys):
    """The real path: the sampler generates, the sandbox judges, every target is what the
    verdicts say (a random model fails everything, so S3FT falls back to gold)."""
    from s3ft_jax.models import resolve_model_path

    model_dir = make_tiny_chat_model(tmp_path / "tiny", resolve_model_path("smollm2-135m-instruct"))
    args = ["build", f"--config.model.name={model_dir}", "--config.task.name=mbpp", "--config.task.limit=8",
            "--config.sampling.max_new_tokens=16", f"--config.data.data_dir={shared_data_dir()}", f"--config.workdir={tmp_path / 'run'}"]
    assert cli.main(args) == 0
    assert "judge_paraphrase" in capsys.readouterr().out
    rows = [json.loads(l) for l in (tmp_path / "run" / "dataset.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    for r in rows:
        assert r["prediction_correct"] is False
        assert r["prediction_detail"].split(":")[0] in ("failed", "error", "timeout", "crashed"), r["prediction_detail"]
        assert r["source"] == "gold" and r["target"] == r["gold"] and r["target"].startswith("[BEGIN]")
        assert r["paraphrase"] is not None


class CutOff(Scripted):
    """Every prediction runs into the token limit: half of them after stating the answer, half
    with only a right last number (a derivation cut mid-way)."""

    def __call__(self, prompts: Path, output: Path, keep_extra: bool) -> None:
        super().__call__(prompts, output, keep_extra)
        if output.name.startswith("predict"):
            rows = [json.loads(l) for l in output.read_text().splitlines()]
            examples = {json.loads(l)["id"]: json.loads(l) for l in (self.stage_dir / "examples.jsonl").read_text().splitlines()}
            for n, row in enumerate(rows):
                ref = examples[row["id"]]["reference"]
                row["text"] = f"The answer is {ref}.\nNow let me check" if n % 2 else f"So far we have 2 + 3 = {ref}"
                row["finish_reason"] = "length"
            output.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_answers_cut_at_the_token_limit_are_not_own_targets(tmp_path):
    config = make_config("gsm8k", 6)
    ids = [e.id for e in get_task(task_settings(config)).load(shared_data_dir(), "train")[:6]]
    stage_dir = tmp_path / "build"
    builder = make_builder(config, stage_dir, CutOff(stage_dir, "gsm8k", {"predict": set(ids), "paraphrase": set()}, set()))
    result = build("s3ft", tmp_path / "s3ft", builder)
    rows = [json.loads(l) for l in result.dataset.read_text().splitlines()]
    assert [r["source"] for r in rows] == ["gold", "own"] * 3
    assert [r["prediction_how"] for r in rows] == ["truncated", "marker"] * 3
    assert result.stats["refused_truncated"] == {"prediction": 3, "paraphrase": 0}
    # judge.accept_truncated=True takes them all, as before this rule.
    accepting = make_builder(make_config("gsm8k", 6, **{"judge.accept_truncated": True}), stage_dir,
                             CutOff(stage_dir, "gsm8k", {"predict": set(ids), "paraphrase": set()}, set()))
    again = build("s3ft", tmp_path / "s3ft_all", accepting)
    assert again.stats["counts"]["own"] == 6 and again.stats["refused_truncated"]["prediction"] == 0
