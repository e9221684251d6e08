"""train.report_to: TensorBoard, W&B (a fake `wandb` module in sys.modules: the package is
not installed here and there is no network), or neither; a missing wandb is said up front."""

from __future__ import annotations

import sys
import types

import jax
import pytest

from s3ft_jax import cli
from s3ft_jax.errors import ConfigError, S3FTError
from s3ft_jax.sharding import make_mesh
from s3ft_jax.training.metrics import read_metrics
from tests.train_helpers import make_tiny_dir, train_run, write_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dir(tmp_path_factory.mktemp("tiny_wandb"))


class FakeRun:
    def __init__(self, **kwargs):
        self.init, self.logged, self.finished = kwargs, [], False

    def log(self, values, step):
        assert not self.finished
        self.logged.append((step, dict(values)))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**kwargs):
        module.runs.append(FakeRun(**kwargs))
        return module.runs[-1]

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.setenv("WANDB_MODE", "offline")
    return module


def _train(tiny, tmp_path, **overrides):
    from s3ft_jax.training import train

    tmp_path.mkdir(parents=True, exist_ok=True)
    write_dataset(tmp_path / "d.jsonl", 4)
    run = train_run(tiny, tmp_path / "run", tmp_path / "d.jsonl", **{"train.batch_size": 4, "train.max_steps": 3,
                                                                       "train.log_every": 2, **overrides})
    return train(*run, mesh=make_mesh({"fsdp": 1}, jax.devices()[:1]))


def test_wandb_gets_every_step_record(tiny, tmp_path, fake_wandb):
    result = _train(tiny, tmp_path, **{"train.report_to": "wandb"})
    (run,) = fake_wandb.runs
    records = read_metrics(result.metrics_path)
    assert [step for step, _ in run.logged] == [1, 2, 3]
    assert run.logged == [(r["step"], {f"train/{k}": v for k, v in r.items() if k != "step"}) for r in records]
    assert run.finished
    assert run.init["dir"] == str(tmp_path / "run" / "train") and run.init["resume"] == "allow"
    assert run.init["config"]["train"]["max_steps"] == 3 and run.init["config"]["steps"] == 3
    assert not (tmp_path / "run" / "train" / "tensorboard").exists()  # not asked for
    # A rerun of the same run (nothing left to do) continues the same W&B run.
    _train(tiny, tmp_path, **{"train.report_to": "wandb"})
    assert fake_wandb.runs[1].init["id"] == run.init["id"] and fake_wandb.runs[1].finished


def test_metrics_writer_writes_tensorboard_only_when_asked(tmp_path):
    from s3ft_jax.training.metrics import MetricsWriter

    record = {"step": 1, "loss": 2.0, "learning_rate": 0.1}
    for name, tensorboard in (("tb", True), ("none", False)):
        writer = MetricsWriter(tmp_path / name, total_steps=1, start_step=0, progress=False, tensorboard=tensorboard)
        writer.write(record)
        writer.close()
        assert (tmp_path / name / "tensorboard").is_dir() == tensorboard
        assert read_metrics(tmp_path / name / "metrics.jsonl") == [record]  # metrics.jsonl always


def test_missing_wandb_is_said_before_anything_loads(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    write_dataset(tmp_path / "d.jsonl", 4)
    args = [f"--config.model.name={tiny}", f"--config.workdir={tmp_path / 'run'}", f"--config.train.dataset={tmp_path / 'd.jsonl'}"]
    assert cli.main(["train", *args, "--config.train.report_to=tensorboard,wandb"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "s3ft: error: train.report_to=wandb needs the wandb package: pip install 's3ft-jax[wandb]' (or leave wandb out of train.report_to)"
    assert not (tmp_path / "run").exists()
    assert cli.main(["train", *args, "--config.train.report_to=none", "--dry-run"]) == 0
    from s3ft_jax.training import train

    with pytest.raises(S3FTError, match="needs the wandb package"):  # the library says it too
        train(*train_run(tiny, tmp_path / "lib", tmp_path / "d.jsonl", **{"train.report_to": "wandb"}))


@pytest.mark.parametrize("value", ["wandbb", "none,wandb", ""])
def test_unknown_reporter_is_refused(value):
    with pytest.raises(ConfigError, match="train.report_to must be none or a comma-separated list"):
        cli.parse_config([f"--config.train.report_to={value}"])
