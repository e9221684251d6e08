"""`s3ft answer` (what `make demo` runs) end to end on the embedded model."""

from s3ft_jax import cli
from tests.conftest import shared_data_dir


def test_answer_prints_the_models_answer(embedded_home, capsys):
    args = ["answer", "--config=configs/demo.py:gsm8k", f"--config.data.data_dir={shared_data_dir()}", "--config.sampling.max_new_tokens=24"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "Janet’s ducks lay 16 eggs per day" in out
    answer = next(line for line in out.splitlines() if line.startswith("answer:"))
    assert len(answer.removeprefix("answer:").strip()) > 20  # real text, decoded
    assert "gold:     18" in out


def test_answer_rejects_an_index_outside_the_split(embedded_home, capsys):
    args = ["answer", f"--config.data.data_dir={shared_data_dir()}", "--config.task.index=99999"]
    assert cli.main(args) == 2
    assert "task.index 99999 is outside gsm8k test" in capsys.readouterr().err


def test_answer_reports_a_missing_data_dir(tmp_path, capsys):
    assert cli.main(["answer", f"--config.data.data_dir={tmp_path / 'absent'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
