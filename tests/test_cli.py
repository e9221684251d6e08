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
    for split in ("train", "test"):
        (data / "gsm8k" / f"{split}.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
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
