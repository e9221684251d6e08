"""benchmarks/device_suite.sh and sampler_gpu.py's CPU-runnable parts: arguments, the JSON rows."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "device_suite.sh"


def _sampler_gpu():
    spec = importlib.util.spec_from_file_location("sampler_gpu", ROOT / "benchmarks" / "sampler_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _suite(*args, env=None):
    return subprocess.run(["bash", str(SUITE), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})})


def test_dry_run_prints_the_gpu_commands_within_eight_minutes():
    proc = _suite("--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    parts = {line["part"]: line["command"] for line in lines}
    assert set(parts) == {"decode", "train"}
    assert "--batches 1,64,256" in parts["decode"] and "--tiny" not in parts["decode"]
    assert "--seq 2048" in parts["train"]
    limits = [int(cmd.split()[1]) for cmd in parts.values() if cmd.startswith("timeout ")]
    assert len(limits) == 2 and sum(limits) <= 8 * 60
    tiny = {json.loads(line)["part"]: json.loads(line)["command"] for line in _suite("--tiny", "--dry-run").stdout.splitlines()}
    assert all("--tiny" in cmd for cmd in tiny.values())
    assert "--new-tokens 64" in _suite("--dry-run", env={"SUITE_NEW_TOKENS": "64"}).stdout


@pytest.mark.parametrize("args, env", [(("--fast",), None), (("--dry-run",), {"SUITE_NEW_TOKENS": "many"})])
def test_bad_arguments_are_one_line_and_status_2(args, env):
    proc = _suite(*args, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "device_suite.sh" in proc.stderr


def test_sampler_gpu_arguments():
    m = _sampler_gpu()
    a = m.parse_args([])
    assert (a.batches, a.repeats, a.tiny) == ([1, 64, 256], 3, False)
    assert m.parse_args(["--batches", "2,8", "--repeats", "1"]).batches == [2, 8]
    for bad in (["--batches", "a,b"], ["--batches", "0"], ["--new-tokens", "1"], ["--repeats", "0"]):
        with pytest.raises(SystemExit) as e:
            m.parse_args(bad)
        assert e.value.code == 2


def test_sampler_gpu_rows_carry_roofline_and_the_fair_hf_baseline():
    m = _sampler_gpu()
    a = argparse.Namespace(batches=[1, 64], prompt_len=128, new_tokens=257, repeats=2)
    ours = {"device": "NVIDIA H200", "copy_bw": 4.0e12}
    hf = {"static_cache": True, "compiled": True}
    for batch in a.batches:
        step_bytes = 2.5e9  # a step's ideal bytes: 1 ms at 2.5 TB/s, 0.52 ms at the H200's 4.8 TB/s
        ours[str(batch)] = {"decode_tok_s": batch * 500.0, "e2e_tok_s": batch * 400.0, "ms_per_step": 2.0, "compile_s": 9.0,
                            "bytes_per_step_ideal": step_bytes}
        hf[str(batch)] = {"decode_tok_s": batch * 250.0, "warmup_s": 30.0}
    rows, summary = m.summarize(a, {"params": 1_235_814_400}, hf, ours)
    assert [r["batch"] for r in rows] == [1, 64] and all(r["bench"] == "decode" for r in rows)
    r = rows[1]
    assert r["roofline_datasheet_tok_s"] == round(64 * 4.8e12 / 2.5e9)
    assert r["of_roofline_datasheet"] == round(64 * 500 / (64 * 4.8e12 / 2.5e9), 3)
    assert r["of_roofline_measured"] == round(64 * 500 / (64 * 4.0e12 / 2.5e9), 3)
    assert (r["vs_hf"], r["hf_static_cache"], r["hf_compiled"]) == (2.0, True, True)
    assert summary["batch_64"]["ours_decode_tok_s"] == 32000 and summary["datasheet_bw_tb_s"] == 4.8
    rows, _ = m.summarize(a, {"params": 1}, {}, {**ours, "device": "cpu"})  # --skip-hf, unknown card
    assert "vs_hf" not in rows[0] and "of_roofline_datasheet" not in rows[0] and "of_roofline_measured" in rows[0]


def test_each_part_reports_its_lines_or_its_error_and_a_suite_line_last(tmp_path):
    # A stand-in interpreter: the suite's plumbing without a model (its own runs take minutes).
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\ncase "$1" in *sampler_gpu.py) echo \'{"bench": "decode", "batch": 1}\'; echo \'{"summary": 1}\';;\n'
                    '*) echo "no GPU here" >&2; exit 3;; esac\n')
    fake.chmod(0o755)
    proc = _suite("--tiny", env={"PYTHON": str(fake)})
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0] == {"bench": "decode", "batch": 1}  # the summary line is left out
    assert lines[1] == {"bench": "train", "error": "exit status 3", "stderr_tail": "no GPU here"}
    assert lines[2]["bench"] == "suite" and lines[2]["ok"] is False and lines[2]["failed"] == ["train"]
    assert proc.returncode == 1
    fake.write_text('#!/bin/sh\necho \'{"bench": "x"}\'\n')
    proc = _suite("--tiny", env={"PYTHON": str(fake)})
    last = json.loads(proc.stdout.splitlines()[-1])
    assert proc.returncode == 0 and last["ok"] is True and last["failed"] == []
