"""The CLI's first minute: per-command help, readable key errors, checks that fail in the first
second instead of after hours, quiet pipes; and local data files read without `datasets`."""

import json
import os
import subprocess
import sys

import pytest

from s3ft_jax import cli
from s3ft_jax.errors import S3FTError
from s3ft_jax.tasks.data import load_table
from tests.conftest import shared_data_dir

pytestmark = pytest.mark.fast


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("s3ft: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_command_help_lists_keys_defaults_and_an_example(capsys, flag):
    assert cli.main(["train", flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: s3ft train")
    assert "train.learning_rate = 0.0001" in out and "lora.rank = 8" in out
    assert "# global examples (rows when packing) per optimizer step" in out  # the key's comment
    assert "eval.benchmarks" not in out  # keys train does not read are not listed
    assert "example:\n  s3ft train --config.workdir=" in out


def test_command_help_shows_the_values_of_a_config_file(capsys):
    assert cli.main(["help", "run"]) == 0
    assert "eval.benchmark_limit = 0" in capsys.readouterr().out
    assert cli.main(["run", "--config=configs/demo.py", "--config.eval.limit=3", "--help"]) == 0
    out = capsys.readouterr().out
    assert "eval.benchmark_limit = 8" in out and "eval.limit = 3" in out and "values from configs/demo.py" in out


def _shipped_configs():
    import importlib.util
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        presets = getattr(module, "PRESETS", None)
        for preset in presets or [None]:
            yield pytest.param(module.get_config, preset, id=f"{path.stem}:{preset}" if preset else path.stem)


@pytest.mark.parametrize(("get_config", "preset"), list(_shipped_configs()))
def test_every_shipped_config_builds_its_typed_settings(get_config, preset):
    """A config file that no longer matches the settings it feeds fails here, not hours into a run."""
    from s3ft_jax.config import run_settings, validate

    settings = run_settings(validate(get_config(preset) if preset else get_config()))
    assert settings.methods and settings.train.num_epochs > 0 and settings.model.name


def test_every_command_has_help():
    assert set(cli.COMMAND_HELP) == set(cli.COMMANDS)


def test_misspelt_key_is_one_readable_line_with_the_suggestion(capsys):
    assert cli.main(["config", "--config.model.nam=x"]) == 2
    assert "unknown config key 'config.model.nam' (did you mean 'config.model.name'?)" in _error(capsys)
    assert cli.main(["config", "--config.trian.batch_size=4"]) == 2
    assert "(did you mean 'config.train.batch_size'?)" in _error(capsys)


def _run_fails_early(capsys, tmp_path, *args) -> str:
    """`s3ft run` with a problem it must report before any work: nothing written in workdir."""
    workdir = tmp_path / "run"
    assert cli.main(["run", f"--config.workdir={workdir}", *args]) == 2
    assert not workdir.exists()
    return _error(capsys)


def test_run_rejects_an_unknown_benchmark(capsys, tmp_path):
    err = _run_fails_early(capsys, tmp_path, f"--config.data.data_dir={shared_data_dir()}", "--config.eval.benchmarks=('mmlu','mmlu_6shot')")
    assert "unknown benchmark 'mmlu_6shot' in eval.benchmarks" in err


def test_run_rejects_an_unknown_task(capsys, tmp_path):
    assert "task.name must be one of gsm8k, mbpp, nq, arith, custom, got 'gsm9k'" in _run_fails_early(capsys, tmp_path, "--config.task.name=gsm9k")


def test_run_reports_a_missing_task_file(capsys, tmp_path):
    data = tmp_path / "data"
    (data / "gsm8k").mkdir(parents=True)
    (data / "gsm8k" / "train.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    err = _run_fails_early(capsys, tmp_path, f"--config.data.data_dir={data}")
    assert f"missing data file {data / 'gsm8k' / 'test.jsonl'}" in err


def test_run_reports_a_missing_benchmark_file(capsys, tmp_path):
    data = tmp_path / "data"
    (data / "gsm8k").mkdir(parents=True)
    for n, split in enumerate(("train", "test"), 1):  # different questions: a test split may not repeat training rows
        (data / "gsm8k" / f"{split}.jsonl").write_text(f'{{"question": "{n}+{n}?", "answer": "#### {2 * n}"}}\n')
    err = _run_fails_early(capsys, tmp_path, f"--config.data.data_dir={data}", "--config.eval.benchmarks=('boolq',)")
    assert f"missing benchmark data file {data / 'boolq' / 'dev.jsonl'}" in err


def test_commands_reject_a_workdir_they_cannot_write(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cli.main(["build", f"--config.workdir={blocker / 'run'}", f"--config.data.data_dir={shared_data_dir()}"]) == 2
    assert f"cannot write to {blocker / 'run'}: {blocker} is not a directory" in _error(capsys)


def test_train_reports_missing_data_and_a_missing_model_dir(capsys, tmp_path):
    assert cli.main(["train", f"--config.workdir={tmp_path}"]) == 2
    assert f"training data {tmp_path / 'dataset.jsonl'} not found" in _error(capsys)
    (tmp_path / "dataset.jsonl").write_text('{"prompt": "p", "target": "t"}\n')
    assert cli.main(["train", f"--config.workdir={tmp_path}", f"--config.model.name={tmp_path / 'nomodel'}"]) == 2
    assert "no model directory at" in _error(capsys)


def test_output_into_a_closed_pipe_exits_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before we write, as after `| head`
    help_text = subprocess.run([sys.executable, "-m", "s3ft_jax.cli", "run", "--help"], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    os.close(write)
    assert help_text.returncode == 141
    assert help_text.stderr == ""


def test_local_files_are_read_without_datasets(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"q": "a", "n": 1}\n\n{"q": "b", "extra": true}\n')
    (tmp_path / "rows.json").write_text(json.dumps([{"q": "a"}, {"q": "b", "n": 2}]))
    (tmp_path / "lines.json").write_text('{"q": "a"}\n{"q": "b"}\n')
    (tmp_path / "rows.csv").write_text('q,answer\n"a, quoted",1\nb,2\n')
    code = f"""
import sys
from s3ft_jax.tasks.data import load_table
d = {str(tmp_path)!r}
print(load_table(d + "/rows.jsonl"), load_table(d + "/rows.json"), load_table(d + "/lines.json"), load_table(d + "/rows.csv"))
print("datasets" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    assert out[0] == str(
        [{"q": "a", "n": 1, "extra": None}, {"q": "b", "n": None, "extra": True}]
    ) + " " + str([{"q": "a", "n": None}, {"q": "b", "n": 2}]) + " " + str([{"q": "a"}, {"q": "b"}]) + " " + str(
        [{"q": "a, quoted", "answer": "1"}, {"q": "b", "answer": "2"}]
    )
    assert out[1] == "False"


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.jsonl", '{"q": 1}\n{"q": \n', "bad.jsonl:2: not valid JSON"),
        ("bad.json", '[{"q": 1},', "bad.json:1: not valid JSON"),
        ("scalar.json", "[1, 2]", "expected a JSON array of objects"),
        ("bad.csv", "q,a\n1,2,3\n", "bad.csv:2: more values than the header's 2 columns"),
        ("empty.csv", "", "empty CSV file"),
        ("rows.parquet", "", "unsupported data file type"),
    ],
)
def test_malformed_local_files_are_one_line_errors(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(S3FTError, match=message):
        load_table(str(tmp_path / name))


# -- every check up front (issue 30): one line, exit 2, nothing written, no model loaded ------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(cwd, *args, env=None):
    """`s3ft ARGS` as its own process in `cwd`; (status, stdout, stderr, seconds, modules) where
    modules says whether the model code (hence any weight) was ever imported."""
    import time

    code = ("import sys; from s3ft_jax import cli; status = cli.main(sys.argv[1:]); "
            "print('MODEL-CODE-LOADED' if 's3ft_jax.models.llama' in sys.modules else '', file=sys.stderr); sys.exit(status)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO, **(env or {})})
    lines = done.stderr.splitlines()
    loaded = "MODEL-CODE-LOADED" in lines
    err = "\n".join(line for line in lines if line and line != "MODEL-CODE-LOADED")
    return done.returncode, done.stdout, err, time.perf_counter() - start, loaded


def _refused(cwd, *args) -> str:
    """Exit 2, one line on stderr, fast, no model code imported, nothing created in `cwd`."""
    before = sorted(os.listdir(cwd))
    status, out, err, seconds, loaded = _cli(cwd, *args)
    assert status == 2, (out, err)
    assert err.startswith("s3ft: error: ") and "\n" not in err, err
    assert not loaded and seconds < 30, seconds  # a loaded machine is slow; a model load is slower
    assert sorted(os.listdir(cwd)) == before
    return err


def _passes_dry_run(cwd, *args) -> str:
    before = sorted(os.listdir(cwd))
    status, out, err, _, loaded = _cli(cwd, *args, "--dry-run")
    assert status == 0, err
    assert out.count("\n") == 1 and "checks passed" in out and "nothing written" in out, out
    assert not loaded
    assert sorted(os.listdir(cwd)) == before
    return out


def _custom_task(tmp_path, prompt: str) -> list[str]:
    rows = json.dumps({"id": "a", "prompt": prompt, "answer": "1"}) + "\n"
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text(rows)
    return ["--config.task.name=custom", f"--config.task.custom.train={tmp_path / 'train.jsonl'}",
            f"--config.task.custom.test={tmp_path / 'test.jsonl'}"]


def _model_dir(path, context: int, tokenizer: bool = False):
    """Only what the checks read: config.json (and, if asked, a tokenizer.json that makes every
    character a token, so its count differs from a count of words)."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "max_position_embeddings": context}))
    if tokenizer:
        from tokenizers import Regex, Tokenizer, models, pre_tokenizers

        t = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
        t.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
        t.save(str(path / "tokenizer.json"))
    return path


def test_dry_run_passes_writes_nothing_and_loads_no_model(tmp_path):
    data = shared_data_dir()
    out = _passes_dry_run(tmp_path, "run", "--config=" + os.path.join(REPO, "configs/demo.py"),
                          f"--config.workdir={tmp_path / 'run'}", f"--config.data.data_dir={data}")
    assert out.startswith("s3ft run: checks passed (model smollm2-135m-instruct, task arith")
    (tmp_path / "rows.jsonl").write_text('{"prompt": "p", "target": "t"}\n')
    _passes_dry_run(tmp_path, "train", f"--config.workdir={tmp_path / 'w'}", f"--config.train.dataset={tmp_path / 'rows.jsonl'}")
    assert not (tmp_path / "run").exists() and not (tmp_path / "w").exists()


def test_dry_run_with_hub_benchmarks_needs_no_data_directory(tmp_path):
    """eval.benchmark_source=hf: arith makes its own data and the benchmarks come from the hub
    (fetched when the run starts), so no data directory is asked for; the default source is."""
    env = {"S3FT_DATA_DIR": "", "S3FT_HOME": str(tmp_path / "home")}
    args = ["run", "--config=" + os.path.join(REPO, "configs/demo.py"), f"--config.workdir={tmp_path / 'run'}", "--dry-run"]
    status, out, err, _, loaded = _cli(tmp_path, *args, "--config.eval.benchmark_source=hf", env=env)
    assert status == 0 and "checks passed" in out and not loaded, err
    assert sorted(os.listdir(tmp_path)) == []  # no run directory, no hub cache
    status, out, err, _, _ = _cli(tmp_path, *args, env=env)
    assert status == 2 and err == "s3ft: error: no data directory: set S3FT_DATA_DIR or --config.data.data_dir", err


def test_lora_targets_take_the_comma_form_and_refuse_unknown_names(capsys, tmp_path):
    from s3ft_jax.training.settings import LoraSettings

    assert LoraSettings(targets=("q_proj,v_proj",)).targets == ("q_proj", "v_proj")
    assert LoraSettings(targets=("self_attn.*", "mlp.down_proj")).targets == ("self_attn.*", "mlp.down_proj")
    assert cli.main(["config", "--config.lora.targets=q_proj, v_proj"]) == 0
    assert "'targets': ('q_proj', 'v_proj')," in capsys.readouterr().out
    (tmp_path / "rows.jsonl").write_text('{"prompt": "p", "target": "t"}\n')
    err = _refused(tmp_path, "train", f"--config.workdir={tmp_path / 'w'}", "--config.lora.targets=q_proj,vv_proj")
    assert "lora.targets: 'vv_proj' matches no projection (have q_proj, k_proj, v_proj" in err
    assert "lora.targets has an empty name" in _refused(tmp_path, "config", "--config.lora.targets=q_proj,")


def test_a_config_file_that_does_not_compile_or_has_no_get_config_is_one_line(tmp_path):
    (tmp_path / "broken.py").write_text("from s3ft_jax.config import base_config\n\ndef get_config(:\n    return base_config()\n")
    assert _refused(tmp_path, "config", "--config=broken.py") == "s3ft: error: broken.py:3: invalid syntax (config file)"
    (tmp_path / "empty.py").write_text("X = 1\n")
    assert "config file empty.py defines no get_config()" in _refused(tmp_path, "config", "--config=empty.py")
    (tmp_path / "good.py").write_text("from s3ft_jax.config import base_config\n\ndef get_config():\n    return base_config()\n")
    assert _cli(tmp_path, "config", "--config=good.py")[0] == 0


def test_report_refuses_a_workdir_without_a_run(capsys, tmp_path):
    assert cli.main(["report", f"--config.workdir={tmp_path / 'typo'}"]) == 2
    assert f"no run directory {tmp_path / 'typo'} (workdir): nothing to report" in _error(capsys)
    assert not (tmp_path / "typo").exists()
    assert cli.main(["report", f"--config.workdir={tmp_path}"]) == 2
    assert "holds no run files (build, timings.json, base, sft, sdft, s3ft)" in _error(capsys)
    (tmp_path / "timings.json").write_text("{}")
    assert cli.main(["report", f"--config.workdir={tmp_path}", "--dry-run"]) == 0
    assert "s3ft report: checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "build", "train", "generate"])
def test_a_url_workdir_is_refused_and_creates_no_local_folder(tmp_path, command):
    err = _refused(tmp_path, command, "--config.workdir=gs://bucket/run", f"--config.data.data_dir={shared_data_dir()}",
                   f"--config.generate.input={tmp_path / 'p.jsonl'}")
    assert "workdir='gs://bucket/run': gs:// paths are not supported; use a local path or a mounted bucket (e.g. gcsfuse" in err
    assert not (tmp_path / "gs:").exists()


def test_other_url_paths_are_refused(capsys, tmp_path):
    assert cli.main(["export", f"--config.workdir={tmp_path}", "--config.export.output=s3://b/hf"]) == 2
    assert "export.output='s3://b/hf': s3:// paths are not supported" in _error(capsys)


def test_judge_model_and_code_sandbox_are_checked_up_front(capsys, tmp_path, monkeypatch):
    data = f"--config.data.data_dir={shared_data_dir()}"
    err = _refused(tmp_path, "build", f"--config.workdir={tmp_path / 'w'}", data, f"--config.judge.model={tmp_path / 'judge'}")
    assert f"judge.model: no model directory at '{tmp_path / 'judge'}'" in err
    _passes_dry_run(tmp_path, "build", f"--config.workdir={tmp_path / 'w'}", data, "--config.judge.model=smollm2-135m-instruct")

    from s3ft_jax.judges import code
    from s3ft_jax.judges.sandbox.outcome import SandboxUnavailable

    _passes_dry_run(tmp_path, "build", f"--config.workdir={tmp_path / 'w'}", data, "--config.task.name=mbpp")
    monkeypatch.setattr(code, "_sandbox_state", SandboxUnavailable("code sandbox unavailable: no user namespaces (test)"))
    assert cli.main(["build", f"--config.workdir={tmp_path / 'w'}", data, "--config.task.name=mbpp"]) == 2
    assert "code sandbox unavailable: no user namespaces (test)" in _error(capsys)
    assert cli.main(["build", f"--config.workdir={tmp_path / 'w'}", data, "--dry-run"]) == 0  # gsm8k: no sandbox needed
    assert not (tmp_path / "w").exists()


def test_a_mesh_that_does_not_split_the_devices_is_refused_up_front(capsys, tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"prompt": "p", "target": "t"}\n')
    args = ["train", f"--config.workdir={tmp_path / 'w'}", f"--config.train.dataset={tmp_path / 'rows.jsonl'}", "--dry-run"]
    assert cli.main([*args, "--config.mesh.data=3"]) == 2  # the tests run on 8 CPU devices
    assert "8 devices do not split into a mesh [3, -1, 1]" in _error(capsys)
    assert cli.main([*args, "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=4"]) == 2
    assert "needs 16 devices, have 8" in _error(capsys)
    assert cli.main([*args, "--config.mesh.data=2", "--config.mesh.tensor=2"]) == 0
    assert not (tmp_path / "w").exists()


def test_max_new_tokens_plus_the_longest_prompt_must_fit_the_context(capsys, tmp_path):
    task = _custom_task(tmp_path, " ".join(["abcd"] * 10))  # 10 words, 49 characters
    by_words = _model_dir(tmp_path / "m", context=300)
    args = ["answer", f"--config.model.name={by_words}", *task, "--dry-run"]
    assert cli.main([*args, "--config.sampling.max_new_tokens=290"]) == 0
    capsys.readouterr()
    assert cli.main([*args, "--config.sampling.max_new_tokens=291"]) == 2
    assert ("the longest prompt (10 tokens, at least: counted by words) plus sampling.max_new_tokens 291 exceeds "
            f"{by_words}'s context of 300 tokens (max_position_embeddings)") in _error(capsys)
    assert cli.main([*args, "--config.sampling.max_new_tokens=300"]) == 2
    assert "sampling.max_new_tokens 300 does not fit" in _error(capsys)
    by_tokens = _model_dir(tmp_path / "t", context=300, tokenizer=True)  # one token per character
    args = ["answer", f"--config.model.name={by_tokens}", *task, "--dry-run"]
    assert cli.main([*args, "--config.sampling.max_new_tokens=251"]) == 0
    capsys.readouterr()
    assert cli.main([*args, "--config.sampling.max_new_tokens=252"]) == 2
    assert "the longest prompt (49 tokens) plus sampling.max_new_tokens 252" in _error(capsys)


def test_the_context_check_reads_generate_inputs_and_the_task_default(capsys, tmp_path):
    model = _model_dir(tmp_path / "m", context=300)
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": 1, "prompt": "x " * 150}) + "\n")
    args = ["generate", f"--config.model.name={model}", f"--config.generate.input={tmp_path / 'p.jsonl'}", f"--config.workdir={tmp_path / 'w'}", "--dry-run"]
    assert cli.main(args) == 2  # 150 words + the default 256 new tokens
    assert "plus sampling.max_new_tokens 256 exceeds" in _error(capsys)
    assert cli.main([*args, "--config.sampling.max_new_tokens=50"]) == 0
