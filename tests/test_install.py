"""A quiet install and set-up: no setuptools deprecation warnings, no matplotlib font-cache
news in a report, and a TPU VM set-up script that installs a repository that exists."""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

REPO = Path(__file__).resolve().parents[1]


def test_package_metadata_builds_without_deprecation_warnings(tmp_path):
    for name in ("setup.cfg", "pyproject.toml", "README.md", "s3ft_jax/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    done = subprocess.run([sys.executable, "-W", "always", "-c", "from setuptools import setup; setup()", "egg_info"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr and "deprecated" not in done.stderr, done.stderr
    info = (tmp_path / "s3ft_jax.egg-info" / "PKG-INFO").read_text()
    assert "License-Expression: Apache-2.0" in info and "License ::" not in info


def test_report_plots_do_not_pass_on_matplotlibs_font_cache_notice(tmp_path, caplog):
    from s3ft_jax.report import plots

    data = {"methods": ["sft"], "indomain": {}, "generalization": {}, "drift": {}, "loss": {"sft": [(1, 2.0), (2, 1.5)]}}
    with caplog.at_level(logging.INFO):
        assert plots(data, tmp_path) == ["loss.png"]
        # What matplotlib logs when it builds the cache slowly (on a fresh machine).
        logging.getLogger("matplotlib.font_manager").warning("Matplotlib is building the font cache; this may take a moment.")
        logging.getLogger("matplotlib.font_manager").error("a real error still shows")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("matplotlib")] == ["a real error still shows"]


def _setup_script(tmp_path, *args):
    """Run scripts/tpu_vm_setup.sh with a stand-in `gcloud` that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gcloud").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >> "$GCLOUD_LOG"; echo ---- >> "$GCLOUD_LOG"\n')
    (bin_dir / "gcloud").chmod(0o755)
    log = tmp_path / "gcloud.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GCLOUD_LOG": str(log)}
    done = subprocess.run(["bash", str(REPO / "scripts" / "tpu_vm_setup.sh"), *args], env=env, capture_output=True, text=True, timeout=60)
    return done, (log.read_text().split("----\n")[:-1] if log.exists() else [])


def test_tpu_setup_copies_this_checkout_without_a_repository(tmp_path):
    done, calls = _setup_script(tmp_path, "my-tpu", "us-central2-b")
    assert done.returncode == 0, done.stderr
    scp, ssh = (call.splitlines() for call in calls)
    assert scp[:4] == ["compute", "tpus", "tpu-vm", "scp"] and scp[5] == "my-tpu:s3ft-jax.tar.gz" and "--worker=all" in scp
    assert not Path(scp[4]).exists()  # the archive is removed afterwards
    command = "\n".join(ssh[ssh.index("--command") + 1:])
    assert "tar -xzf ~/s3ft-jax.tar.gz -C ~/s3ft-jax" in command and "git clone" not in command and "github.com" not in command


def test_tpu_setup_clones_a_given_repository_and_needs_its_arguments(tmp_path):
    done, calls = _setup_script(tmp_path, "my-tpu", "us-central2-b", "https://example.org/me/s3ft-jax.git")
    assert done.returncode == 0, done.stderr
    (ssh,) = calls
    assert "git clone -q 'https://example.org/me/s3ft-jax.git' ~/s3ft-jax" in ssh
    done, calls = _setup_script(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path, "my-tpu")
    assert done.returncode != 0 and "usage: tpu_vm_setup.sh TPU_NAME ZONE [REPO_URL]" in done.stderr and calls == []
