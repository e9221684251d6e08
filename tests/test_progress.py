"""Progress in logs: with stderr not a terminal, every long stage writes a plain line every
S3FT_PROGRESS_SECONDS seconds (stage, done/total, rate, ETA; training adds loss and lr)."""

import io
import re
import sys

import pytest

from s3ft_jax import progress
from s3ft_jax.progress import LogProgress, progress_bar

pytestmark = pytest.mark.fast


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_line_every_interval_with_rate_eta_and_the_stage_figures():
    clock, out = FakeClock(), io.StringIO()
    bar = LogProgress(100, desc="generate", unit="prompt", interval=30, stream=out, clock=clock)
    for _ in range(5):  # 5 prompts in 25 s: no line yet
        clock.now += 5
        bar.update(1)
    assert out.getvalue() == ""
    clock.now += 5
    bar.set_postfix(tok_s="12.5")
    bar.update(1)  # 30 s: the first line
    (line,) = out.getvalue().splitlines()
    assert line.endswith("progress generate: 6/100 prompt (6%), 0.2 prompt/s, ETA 7m50s, tok_s 12.5"), line
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d progress ", line)
    for _ in range(5):
        clock.now += 5
        bar.update(1)  # 55 s since the start, 25 since the last line: nothing new
    assert len(out.getvalue().splitlines()) == 1
    clock.now += 5
    bar.update(1)
    assert len(out.getvalue().splitlines()) == 2
    bar.close()
    bar.close()  # once
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "generate: 12/100 prompt (12%), 0.2 prompt/s, done in 1m00s" in lines[2]


def test_resumed_stage_counts_its_rate_from_where_it_started():
    clock, out = FakeClock(), io.StringIO()
    bar = LogProgress(10, desc="judge", unit="ex", initial=6, interval=0, stream=out, clock=clock)
    clock.now += 2
    bar.update(2)
    assert "judge: 8/10 ex (80%), 1 ex/s, ETA 2s" in out.getvalue()


def test_nothing_is_written_when_nothing_was_done():
    out = io.StringIO()
    LogProgress(5, desc="score", stream=out, clock=FakeClock()).close()
    assert out.getvalue() == ""


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("S3FT_PROGRESS_SECONDS", raising=False)
    assert progress.interval_seconds() == 30.0
    monkeypatch.setenv("S3FT_PROGRESS_SECONDS", "2.5")
    assert progress.interval_seconds() == 2.5
    monkeypatch.setenv("S3FT_PROGRESS_SECONDS", "soon")
    assert progress.interval_seconds() == 30.0


def test_stderr_into_a_file_gets_lines_not_a_bar(monkeypatch, tmp_path):
    monkeypatch.setenv("S3FT_PROGRESS_SECONDS", "0")
    with open(tmp_path / "log", "w") as log:
        monkeypatch.setattr(sys, "stderr", log)
        bar = progress_bar(3, desc="predict", unit="ex")
        assert isinstance(bar, LogProgress)
        bar.update(2)
        bar.close()
        assert not isinstance(progress_bar(3, desc="x", enabled=False), LogProgress)
    text = (tmp_path / "log").read_text()
    assert "\r" not in text and len(text.splitlines()) == 2
    assert "predict: 2/3 ex (67%)" in text and "done in" in text


def test_training_lines_show_the_step_and_the_loss_to_4_significant_digits(monkeypatch, tmp_path):
    from s3ft_jax.training.metrics import MetricsWriter

    monkeypatch.setenv("S3FT_PROGRESS_SECONDS", "0")
    with open(tmp_path / "log", "w") as log:
        monkeypatch.setattr(sys, "stderr", log)
        writer = MetricsWriter(tmp_path / "run", total_steps=4, start_step=0, progress=True)
        for step, loss in ((1, 2.3456789012345678), (2, 0.012345678901234)):
            writer.write({"step": step, "loss": loss, "learning_rate": 1e-4})
        writer.close()
    lines = [line for line in (tmp_path / "log").read_text().splitlines() if " progress " in line]
    assert len(lines) == 3, lines
    assert "train: 1/4 step (25%)" in lines[0] and "loss 2.346, lr 1.00e-04" in lines[0]
    assert "train: 2/4 step (50%)" in lines[1] and "loss 0.01235," in lines[1]
    assert "2.3456789" not in "".join(lines)
