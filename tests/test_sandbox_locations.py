"""The code sandbox wherever the checkout and its venv live: /tmp, folders of mode 0700.

Each case copies the package into a fresh folder (made by `tempfile.mkdtemp`, mode 0700 like
`mktemp -d`), makes a venv there, and from that venv's interpreter, with the copy on
PYTHONPATH, runs `check_sandbox`, a correct program, the hostile programs of
tests/test_code_judge.py and attempts to write the folder's own files. The private /tmp of the
sandbox hides the host's /tmp, and the sandbox uid (65534 when the tests run as root) cannot
traverse a 0700 folder: the interpreter's directories must be bound back anyway, read-only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.test_code_judge import FAST, HOSTILE_PROGRAMS

REPO = Path(__file__).resolve().parents[1]

# Runs in the folder's venv: the judge of the copied package, the jobs from stdin, JSON out.
JUDGE_SCRIPT = """
import json, sys
import s3ft_jax
from s3ft_jax.judges.code import CodeJob, check_sandbox, run_many
spec = json.load(sys.stdin)
check_sandbox()
results = run_many([CodeJob(program, tests) for program, tests in spec["jobs"]], timeout_s=spec["timeout_s"])
print(json.dumps({"executable": sys.executable, "package": s3ft_jax.__file__,
                  "results": [[r.passed, r.status, r.detail] for r in results]}))
"""


@pytest.mark.fast
@pytest.mark.parametrize(
    "parent, mode, copies",
    [("/tmp", 0o700, False), ("/tmp", 0o700, True), ("/tmp", 0o755, False), ("/var/tmp", 0o700, False)],
    ids=["tmp-0700", "tmp-0700-copied-python", "tmp-0755", "var-tmp-0700"],
)
def test_sandbox_holds_with_the_interpreter_and_package_in_a_private_folder(parent, mode, copies):
    folder = Path(tempfile.mkdtemp(dir=parent))  # mode 0700, as `mktemp -d` makes it
    try:
        os.chmod(folder, mode)
        shutil.copytree(REPO / "s3ft_jax", folder / "repo" / "s3ft_jax", ignore=shutil.ignore_patterns("__pycache__"))
        # The sandbox needs no site-packages; the venv only places the interpreter in the folder.
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", *(["--copies"] if copies else []), str(folder / "venv")],
            check=True, capture_output=True, timeout=60,
        )
        tag = uuid.uuid4().hex
        targets = [
            folder / f"pwned-{tag}",
            folder / "venv" / f"pwned-{tag}",
            folder / "venv" / "bin" / f"pwned-{tag}",
            folder / "repo" / "s3ft_jax" / f"pwned-{tag}",
            folder / "repo" / "s3ft_jax" / "__init__.py",
        ]
        before = targets[-1].read_bytes()
        write_folder = f"""
            import os
            def write_folder():
                done = []
                for path in {[str(t) for t in targets]!r}:
                    try:
                        with open(path, "a") as f:
                            f.write("pwned")
                        done.append(path)
                    except OSError:
                        pass
                return done
            """
        run_interpreter = """
            import subprocess, sys
            def f():
                return subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True).stdout
            """
        jobs = (
            [["def f(x):\n    return x\n", ["assert f(1) == 1", "assert f(2) == 2"]]]
            + [[program, ["assert f(1) == 1", "assert f(2) == 2"]] for program in HOSTILE_PROGRAMS.values()]
            + [[textwrap.dedent(write_folder), ["assert write_folder() != []"]],
               [textwrap.dedent(run_interpreter), ['assert f() == b"42\\n"']]]
        )
        out = subprocess.run(
            [str(folder / "venv" / "bin" / "python"), "-s", "-c", JUDGE_SCRIPT],
            input=json.dumps({"jobs": jobs, "timeout_s": FAST}),
            capture_output=True, text=True, timeout=180, cwd=folder,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(folder / "repo"),
                 "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert out.returncode == 0, out.stderr[-2000:]
        report = json.loads(out.stdout)
        # The judge really ran from the folder: its venv's interpreter, the package's copy.
        assert Path(report["executable"]).parent == folder / "venv" / "bin", report["executable"]
        assert Path(report["package"]).is_relative_to(folder / "repo"), report["package"]
        results = dict(zip(["correct", *HOSTILE_PROGRAMS, "write-folder", "run-interpreter"], report["results"]))
        assert results["correct"][:2] == [True, "passed"], results["correct"]
        assert results["run-interpreter"][:2] == [True, "passed"], results["run-interpreter"]
        assert {name for name in HOSTILE_PROGRAMS if results[name][0]} == set()
        # Read-only inside, even where the folder's directories are rebuilt in the private /tmp.
        passed, status, detail = results["write-folder"]
        assert not passed and status == "failed" and "got []" in detail, detail
        for target in targets[:-1]:
            assert not target.exists(), target
        assert targets[-1].read_bytes() == before
    finally:
        shutil.rmtree(folder, ignore_errors=True)
