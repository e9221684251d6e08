"""Run one job in a fresh sandbox: its limits, its payload, the exchange, and the verdict.

The program and its tests go straight from here to H1's stdin (the zygote only passes the
pipes on). The verdict is the single line H1 writes on stdout, carrying the job's nonce; any
other output means no verdict. `execute` raises `SandboxUnavailable` only when the sandbox could
not be built (the harness's setup-failure line) or the launcher keeps dying.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import time
from typing import Sequence

from s3ft_jax.judges.sandbox.kernel import SETUP_FAILED, SETUP_FAILED_MARKER
from s3ft_jax.judges.sandbox.launcher import get_launcher
from s3ft_jax.judges.sandbox.outcome import STATUSES, CodeResult, SandboxUnavailable, short

# Host uid/gid the sandbox runs as when the judge itself runs as root (the "nobody" ids).
SANDBOX_UID = 65534
SANDBOX_GID = 65534
# Directories replaced by empty read-only mounts inside the sandbox (plus the caller's $HOME).
MASKED_DIRS = ("/root", "/home", "/run", "/var/tmp")
MAX_PROCESSES = 32  # RLIMIT_NPROC of the worker: tasks (processes and threads) of the sandbox
MAX_OPEN_FILES = 256
MAX_FILE_MB = 64  # RLIMIT_FSIZE, and the size of the private /tmp and /dev/shm
HARD_KILL_GRACE_S = 5.0  # the parent kills the whole sandbox at timeout_s + this


def normalise(source: str) -> str:
    return source.replace("\r\n", "\n").replace("\r", "\n")


def job_config(timeout_s: float, memory_mb: int) -> dict:
    """The job's limits, as the harness reads them (`kernel.CFG`)."""
    masks = list(MASKED_DIRS)
    home = os.path.expanduser("~")
    if home and home != "/" and os.path.isabs(home):
        masks.append(home)
    return {
        "timeout": float(timeout_s),
        "memory_mb": int(memory_mb),
        "uid": SANDBOX_UID,
        "gid": SANDBOX_GID,
        "masks": masks,
        "nproc": MAX_PROCESSES,
        "nofile": MAX_OPEN_FILES,
        "fsize_mb": MAX_FILE_MB,
        "tmp_mb": MAX_FILE_MB,
        "h0_grace": 2.0,
    }


def exchange(stdin_w: int, payload: bytes, out_r: int, err_r: int, deadline: float) -> tuple[bytes, bytes, bool]:
    """Write the job, read stdout/stderr to EOF; False as the last item if the deadline passed."""
    os.set_blocking(stdin_w, False)
    pending = memoryview(payload)
    outputs = {out_r: bytearray(), err_r: bytearray()}
    poller = select.poll()  # not select(): a big host process may hold descriptors >= 1024
    for fd in (out_r, err_r):
        poller.register(fd, select.POLLIN)
    poller.register(stdin_w, select.POLLOUT)
    reading, writing = 2, True
    try:
        while reading:
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(outputs[out_r]), bytes(outputs[err_r]), False
            for fd, events in poller.poll(left * 1000):
                if fd == stdin_w:
                    try:
                        pending = pending[os.write(stdin_w, pending[: 1 << 16]) :]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:
                        pending = pending[:0]
                    if not pending:
                        poller.unregister(stdin_w)
                        os.close(stdin_w)
                        writing = False
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    poller.unregister(fd)
                    reading -= 1
                elif len(outputs[fd]) < (1 << 20):
                    outputs[fd] += chunk
        return bytes(outputs[out_r]), bytes(outputs[err_r]), True
    finally:
        if writing:
            os.close(stdin_w)
        os.close(out_r)
        os.close(err_r)


def execute(program: str, tests: Sequence[str], setup_code: str, timeout_s: float, memory_mb: int) -> CodeResult:
    if isinstance(tests, str):
        raise TypeError("tests must be a list of test strings, not one string")
    tests = [str(t) for t in tests]
    result = execute_once(program, tests, setup_code, timeout_s, memory_mb)
    if result is None:  # the launcher died before starting the job: nothing ran, run it again
        result = execute_once(program, tests, setup_code, timeout_s, memory_mb)
    if result is None:
        raise SandboxUnavailable("code sandbox unavailable: the sandbox launcher keeps dying")
    return result


def execute_once(
    program: str, tests: list[str], setup_code: str, timeout_s: float, memory_mb: int
) -> CodeResult | None:
    nonce = secrets.token_hex(16)
    payload = json.dumps(
        {"nonce": nonce, "program": normalise(program), "setup": normalise(setup_code or ""), "tests": tests}
    ).encode("ascii")
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        for attempt in range(2):  # a launcher that died since the last job is replaced once
            launcher = get_launcher()
            try:
                job = launcher.spawn(job_config(timeout_s, memory_mb), [stdin_r, out_w, err_w])
                break
            except OSError as exc:
                launcher.dead = True
                if attempt:
                    for fd in (stdin_w, out_r, err_r):
                        os.close(fd)
                    raise SandboxUnavailable(f"code sandbox unavailable: the sandbox launcher is gone ({exc})") from None
    finally:
        for fd in (stdin_r, out_w, err_w):
            os.close(fd)
    out, err, finished = exchange(stdin_w, payload, out_r, err_r, time.monotonic() + timeout_s + HARD_KILL_GRACE_S)
    if not finished:
        launcher.kill(job)
        launcher.wait(job, 10.0)
        return CodeResult(False, "timeout", f"exceeded the {timeout_s:g}s time limit (killed by the judge)")
    verdict = parse_verdict(out, nonce, len(tests))
    returncode, started = launcher.wait(job, 0.0 if verdict is not None else 10.0)
    if verdict is not None:
        return verdict
    if returncode is None and not started and not launcher.alive():
        return None
    message = err.decode("utf-8", "replace").strip()
    setup_lines = [ln for ln in message.splitlines() if ln.startswith(SETUP_FAILED_MARKER)]
    if returncode == SETUP_FAILED and setup_lines:
        raise SandboxUnavailable("code sandbox unavailable: " + setup_lines[-1][len(SETUP_FAILED_MARKER) :])
    if returncode is None and not launcher.alive():
        return CodeResult(False, "error", "the sandbox launcher died while the job ran")
    if returncode == 124:
        return CodeResult(False, "timeout", f"exceeded the {timeout_s:g}s time limit")
    return CodeResult(False, "error", short(f"sandbox harness exited with status {returncode}: {message[-400:]}"))


def parse_verdict(out: bytes, nonce: str, n_tests: int) -> CodeResult | None:
    lines = out.decode("ascii", "replace").strip().splitlines()
    if len(lines) != 1:
        return None
    try:
        verdict = json.loads(lines[0])
    except ValueError:
        return None
    if not isinstance(verdict, dict) or verdict.get("nonce") != nonce or verdict.get("status") not in STATUSES:
        return None
    status = verdict["status"]
    passed = status == "passed" and verdict.get("tests_run") == n_tests == verdict.get("tests_total") and n_tests > 0
    if status == "passed" and not passed:
        return CodeResult(False, "error", "inconsistent verdict from the sandbox harness")
    return CodeResult(passed, status, short(str(verdict.get("detail", ""))))
