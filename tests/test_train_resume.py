"""Exact resume after a real kill -9, fallback past corrupt checkpoints, and HF export."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from s3ft_jax.sharding import make_mesh
from s3ft_jax.training.metrics import read_metrics
from tests.train_helpers import check_export_matches, make_tiny_dir, train_run, write_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    model = make_tiny_dir(root / "model")
    write_dataset(root / "d.jsonl", 6, seed=1)
    return model, root / "d.jsonl"


def _cli(model, data, workdir, *extra, kill_at=None):
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    args = [
        f"--config.model.name={model}", f"--config.workdir={workdir}", f"--config.train.dataset={data}",
        "--config.train.batch_size=2", "--config.train.max_steps=7", "--config.train.checkpoint_every=2",
        "--config.train.keep_checkpoints=3", "--config.train.learning_rate=0.01", "--config.train.progress=False",
        "--config.train.warmup_steps=2", *extra,
    ]  # fmt: skip
    # kill_at: the same command under a driver whose training callback kills it with SIGKILL.
    runner = ["s3ft_jax.cli"] if kill_at is None else ["tests.kill_after_step", str(kill_at)]
    return subprocess.run([sys.executable, "-m", *runner, "train", *args], env=env, capture_output=True, text=True, timeout=600)


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(Path(workdir) / "train" / "metrics.jsonl")]


def test_killed_run_resumes_on_the_same_trajectory(tiny, tmp_path):
    model, data = tiny
    # LoRA with dropout, 6 examples in batches of 2 over 3 epochs: resume must restore the
    # optimizer state, the dropout randomness and the data order.
    reference = _cli(model, data, tmp_path / "ref")
    assert reference.returncode == 0, reference.stderr[-2000:]
    killed = _cli(model, data, tmp_path / "run", kill_at=5)
    assert killed.returncode == -signal.SIGKILL
    # Killed after step 5: checkpoints 2 and 4 are complete, step 5 was logged but not saved.
    assert [s for s, _ in _losses(tmp_path / "run")] == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (tmp_path / "run/train/checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
    resumed = _cli(model, data, tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from checkpoint 4" in resumed.stderr
    ref, got = _losses(tmp_path / "ref"), _losses(tmp_path / "run")
    assert [s for s, _ in got] == list(range(1, 8))
    np.testing.assert_allclose([l for _, l in got], [l for _, l in ref], rtol=0, atol=1e-6)
    # Finished runs resume to nothing and leave the record unchanged.
    again = _cli(model, data, tmp_path / "run")
    assert again.returncode == 0 and _losses(tmp_path / "run") == got


def _corrupt_truncate(step_dir: Path):
    data_files = sorted((step_dir / "state").rglob("d/*"), key=lambda p: p.stat().st_size)
    with open(data_files[-1], "r+b") as f:
        f.truncate(data_files[-1].stat().st_size // 2)


def _corrupt_delete(step_dir: Path):
    (step_dir / "state" / "_METADATA").unlink()


def _corrupt_flip(step_dir: Path):
    biggest = max((step_dir / "state").rglob("d/*"), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    biggest.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [_corrupt_truncate, _corrupt_delete, _corrupt_flip])
def test_corrupt_latest_checkpoint_falls_back_to_previous(tiny, tmp_path, corrupt, caplog):
    from s3ft_jax.training import train

    model, data = tiny
    mesh = make_mesh({"fsdp": 1}, jax.devices()[:1])
    kw = {"lora.enabled": False, "train.batch_size": 2, "train.max_steps": 6, "train.checkpoint_every": 2, "train.keep_checkpoints": 3, "train.learning_rate": 0.01}
    run = train_run(model, tmp_path / "run", data, **kw)
    first = _losses(train(*run, mesh=mesh).run_dir.parent)
    corrupt(tmp_path / "run/train/checkpoints/6")
    with caplog.at_level("WARNING", logger="s3ft_jax"):
        second = train(*run, mesh=mesh)
    assert any("checkpoint 6" in r.message for r in caplog.records)
    # Resumed from 4: steps 5 and 6 redone, the same losses; the broken checkpoint replaced.
    again = _losses(second.run_dir.parent)
    assert [s for s, _ in again] == [s for s, _ in first] == list(range(1, 7))
    np.testing.assert_allclose([l for _, l in again], [l for _, l in first], rtol=0, atol=1e-6)
    assert sorted(int(p.name) for p in second.checkpoint_dir.iterdir() if p.name.isdigit()) == [2, 4, 6]


def test_export_loads_in_transformers_with_equal_logits(tiny, tmp_path):
    """LoRA on every projection, merged and exported: transformers' logits equal ours."""
    from s3ft_jax import cli
    from s3ft_jax.training import train

    model, data = tiny
    mesh = make_mesh({"fsdp": 1}, jax.devices()[:1])
    overrides = {"train.batch_size": 2, "train.max_steps": 3, "train.learning_rate": 0.05, "lora.targets": ("*_proj",)}
    run = train_run(model, tmp_path / "run", data, **overrides)
    train(*run, mesh=mesh)
    out = tmp_path / "hf"
    # The CLI on the default mesh (all 8 devices): the 1-device checkpoint is resharded on restore.
    args = [f"--config.model.name={model}", f"--config.workdir={tmp_path / 'run'}", f"--config.export.output={out}"]
    assert cli.main(["export", *args, "--config.lora.targets=('*_proj',)"]) == 0
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()
    check_export_matches(run, model, out, mesh)
