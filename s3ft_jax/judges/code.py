"""A sandboxed judge for untrusted, model-written Python (MBPP-style assert tests).

`run_tests(program, tests)` says whether `program` passes every assert in `tests`; `run_many`
judges many programs in parallel. The program is hostile until proven otherwise: it runs in a
throw-away Linux sandbox and it never gets to say whether it passed. docs/code_sandbox.md
describes the guarantees; in short:

* One fresh interpreter per program (`sys.executable -s -S -B -P`, a clean environment), which
  sets up, with ctypes and no external tools, new user, mount, network, PID, IPC, UTS and cgroup
  namespaces. As root the sandbox runs as uid/gid 65534 (never as host root); otherwise as the
  calling user.
* The whole filesystem is remounted read-only (recursively, `mount_setattr`), /root, /home, the
  caller's $HOME and /run are hidden behind empty mounts, only a private /tmp (with the working
  directory /tmp/work) and /dev/shm are writable, /dev holds null/zero/full/random/urandom only,
  /proc is private to the sandbox's PID namespace. No network: only a down loopback.
* All capabilities are dropped, no_new_privs is set, and a seccomp filter refuses namespace
  creation, mounts, ptrace, bpf, io_uring, keyrings and every socket family except AF_INET/INET6
  (so no AF_VSOCK/AF_UNIX path to the host). rlimits bound CPU time, address space, processes,
  open files and file size; a wall-clock deadline is enforced by the harness and, as a backstop,
  by the parent process.
* The verdict comes from a trusted process. The sandbox's PID 1 (the harness) forks a worker,
  *before* it has seen the tests, that execs the program. Each test is then executed by the
  harness, not the worker: names the program defines are proxies, and every operation on them
  (calls, comparisons, iteration...) is a request to the worker, whose answers come back as
  plain data (ints, strs, lists...) or as handles to worker-side objects. So `assert f(x) == 3`
  calls `f` in the worker and compares the returned value with 3 in the harness. The worker
  cannot reach the harness's memory (it is non-dumpable and the worker has no capabilities),
  cannot signal it (PID-namespace init) and holds no descriptor of the verdict channel; exiting
  early, hooking excepthook/atexit, printing markers, patching builtins or the harness code in
  its own process only changes what the worker answers, never whether the harness's asserts
  ran. A program can still lie about its *own values* (an object whose `__eq__` is always true),
  which is out of scope: we defend the harness, not the quality of the answer.
* When PID 1 exits, the kernel kills everything left in the namespace (children, setsid
  daemons, double forks) before the call returns.

The sandbox itself is the package `s3ft_jax.judges.sandbox` (its `__init__` lists the modules);
this module is the judge's API over it.

There is no unprotected fallback: `check_sandbox()` runs a probe through the real sandbox once
per process and raises `SandboxUnavailable` with a one-line reason when the machine cannot
provide the isolation (no unprivileged user namespaces, no private /proc, kernel < 5.12, an
unsupported architecture); `run_tests` and `run_many` call it first.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from s3ft_jax.judges.sandbox.execute import execute as _execute
from s3ft_jax.judges.sandbox.kernel import root_mode
from s3ft_jax.judges.sandbox.lockdown import SYSCALLS
from s3ft_jax.judges.sandbox.outcome import STATUSES, CodeResult, SandboxUnavailable, short

__all__ = [
    "CodeJob",
    "CodeResult",
    "STATUSES",
    "SandboxUnavailable",
    "check_sandbox",
    "run_many",
    "run_tests",
]

@dataclass(frozen=True)
class CodeJob:
    program: str
    tests: tuple[str, ...] | list[str]
    setup_code: str = ""


# ---------------------------------------------------------------------------------------------
# The self-check.

# Run as an untrusted program, so it is handed over as text, read from its file.
PROBE_PROGRAM = (Path(__file__).parent / "sandbox" / "probe.py").read_text(encoding="utf-8")

_sandbox_lock = threading.Lock()
_sandbox_state: SandboxUnavailable | bool | None = None


def check_sandbox() -> None:
    """Verify (once per process) that untrusted code can be isolated; raise SandboxUnavailable if not."""
    global _sandbox_state
    with _sandbox_lock:
        if _sandbox_state is None:
            try:
                _probe_sandbox()
                _sandbox_state = True
            except SandboxUnavailable as exc:
                _sandbox_state = exc
        if isinstance(_sandbox_state, SandboxUnavailable):
            raise SandboxUnavailable(str(_sandbox_state))


def _probe_sandbox() -> None:
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"code sandbox unavailable: needs Linux namespaces, this is {sys.platform}")
    machine = os.uname().machine.lower()
    if machine not in SYSCALLS:
        raise SandboxUnavailable(f"code sandbox unavailable: no seccomp policy for {machine} (x86_64, aarch64)")
    if not sys.executable or not os.path.exists(sys.executable):
        raise SandboxUnavailable("code sandbox unavailable: sys.executable is not set")
    result = _execute(PROBE_PROGRAM, ["assert sandbox_problems() == []"], f"ROOT_MODE = {root_mode()}", 20.0, 512)
    if not result.passed:
        raise SandboxUnavailable(short("code sandbox unavailable: isolation probe failed: " + result.detail, 300))
    if os.path.exists("/s3ft-probe"):
        raise SandboxUnavailable("code sandbox unavailable: the probe wrote to the host filesystem")


# ---------------------------------------------------------------------------------------------
# The API.


def run_tests(
    program: str,
    tests: Sequence[str],
    setup_code: str = "",
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
) -> CodeResult:
    """Run `program`, then `setup_code`, then each assert in `tests`, inside the sandbox.

    status: passed | failed (an assert failed or raised, or the program died mid-test) |
    timeout | error (the program or a test does not compile, or the program fails to load) |
    crashed (the program's process was killed by a signal, e.g. a segfault).
    """
    check_sandbox()
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError("timeout_s and memory_mb must be positive")
    return _execute(program, tests, setup_code, timeout_s, memory_mb)


def run_many(
    jobs: Sequence[CodeJob],
    workers: int | None = None,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
) -> list[CodeResult]:
    """Judge many programs in parallel (each in its own sandbox); results in input order."""
    check_sandbox()
    jobs = list(jobs)
    if not jobs:
        return []
    workers = workers or min(os.cpu_count() or 1, 8)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
        return list(
            pool.map(lambda job: run_tests(job.program, job.tests, job.setup_code, timeout_s, memory_mb), jobs)
        )
