"""The resolved config as a file: `s3ft config` prints one and a run's workdir holds one
(`config.py`), and `--config=` that file gives back the same tree."""

from __future__ import annotations

import pytest
from ml_collections import ConfigDict

from s3ft_jax import cli
from s3ft_jax.configfile import config_file_text


def _load(path, *overrides):
    return cli.parse_config([f"--config={path}", *overrides])


@pytest.mark.parametrize("argv", [
    [],
    ["--config=configs/demo.py"],
    ["--config=configs/paper.py:gsm8k", "--config.task.limit=64", "--config.model.param_dtype=bfloat16",
     "--config.lora.targets=q_proj,v_proj", "--config.eval.benchmarks=('mmlu', 'boolq')",
     "--config.task.prompts.prediction=Say {question}\n\"quoted\""],
])
def test_printed_config_loads_back_to_the_same_tree(tmp_path, capsys, argv):
    assert cli.main(["config", *argv]) == 0
    path = tmp_path / "mine.py"
    path.write_text(capsys.readouterr().out)
    original = cli.parse_config(argv)
    loaded = _load(path)
    assert loaded.to_dict() == original.to_dict()
    assert config_file_text(loaded) == config_file_text(original)  # types too: a fixed point


def test_an_unset_typed_field_stays_typed(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(config_file_text(cli.parse_config([])))
    assert _load(path).model.param_dtype is None
    assert _load(path, "--config.model.param_dtype=bfloat16").model.param_dtype == "bfloat16"
    with pytest.raises(Exception, match="param_dtyp"):  # misspelt keys are still refused
        _load(path, "--config.model.param_dtyp=bfloat16")


def test_a_value_that_is_not_a_literal_is_refused():
    with pytest.raises(ValueError, match="'x': nan is not a Python literal"):
        config_file_text(ConfigDict({"x": float("nan")}))


def test_a_run_directory_holds_its_resolved_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--config.task.name=gsm8k", "--config.task.limit=2", "--config.judge.audit_limit=2",
            f"--config.workdir={tmp_path / 'run'}", "--config.sampling.temperature=0.5"]
    assert cli.main(["judge-audit", *argv]) == 0
    written = tmp_path / "run" / "config.py"
    assert _load(written).to_dict() == cli.parse_config(argv).to_dict()
    # and it reruns: the same command from the file alone
    assert cli.main(["judge-audit", f"--config={written}"]) == 0
    assert _load(written).to_dict() == cli.parse_config(argv).to_dict()
