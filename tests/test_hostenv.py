"""The CLI's one re-exec with the malloc tunable: arguments, streams, exit status and other
tunables survive it, and it happens once."""

import os
import subprocess
import sys

import pytest

from s3ft_jax import hostenv

pytestmark = pytest.mark.fast  # `make test-fast`

CHILD = (
    "import os, sys\n"
    "from s3ft_jax import hostenv\n"
    "print('start', flush=True)\n"
    "hostenv.reexec_tuned()\n"
    "print(os.environ.get('GLIBC_TUNABLES'), sys.argv[1:], sys.stdin.read().strip(), flush=True)\n"
    "sys.exit(7)\n"
)


def _run(env_changes: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "S3FT_HUGEPAGES", "_S3FT_REEXECUTED")}
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "-c", CHILD, "a b", "--flag=1"], input="from stdin", capture_output=True, text=True, env=env, timeout=60
    )


def test_tuned_environ_adds_the_tunable_once_and_keeps_others():
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "PATH": "/bin"}
    tuned = hostenv.tuned_environ(env)
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "PATH": "/bin"}  # a copy, not an edit
    if hostenv.applicable(env):
        assert tuned["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
        assert hostenv.tuned_environ(tuned) == tuned
        assert hostenv.tuned_environ({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    else:
        assert tuned == env
    # The user's own choice of the tunable wins, and the opt-out is honoured.
    assert hostenv.tuned_environ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"
    assert "GLIBC_TUNABLES" not in hostenv.tuned_environ({"S3FT_HUGEPAGES": "0"})


def test_reexec_keeps_arguments_streams_and_exit_status():
    result = _run({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert result.returncode == 7, result.stderr
    lines = result.stdout.splitlines()
    expected_tunables = "glibc.malloc.arena_max=2" + (":glibc.malloc.hugetlb=1" if hostenv.applicable() else "")
    # The first process prints 'start' and is replaced; the re-executed one prints it again.
    assert lines[0] == "start"
    assert lines[-1] == f"{expected_tunables} ['a b', '--flag=1'] from stdin"
    assert lines.count("start") == (2 if hostenv.applicable() else 1)


def test_no_reexec_when_turned_off_or_already_tuned():
    off = _run({"S3FT_HUGEPAGES": "0"})
    assert off.returncode == 7 and off.stdout.splitlines() == ["start", "None ['a b', '--flag=1'] from stdin"]
    tuned = _run({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
    assert tuned.stdout.splitlines() == ["start", "glibc.malloc.hugetlb=1 ['a b', '--flag=1'] from stdin"]
