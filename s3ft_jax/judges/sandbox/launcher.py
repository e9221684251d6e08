"""The judge's end of the zygote: start the isolated interpreter, then spawn, kill, wait for jobs.

One zygote per judge process (restarted if it dies, or after a fork of the judge). It is a
fresh `python -s -S -B -P -c <boot.py>` with a fixed environment; the harness modules' sources
are read from the files beside this one and handed to it as arguments (see `boot`).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from s3ft_jax.judges.sandbox.outcome import SandboxUnavailable

# The harness modules, each after those it imports (the order `boot` executes them in).
HARNESS_MODULES = (
    "kernel", "lockdown", "channel", "wire", "proxies", "judging", "worker", "pid1", "namespaces", "zygote",
)
HERE = Path(__file__).resolve().parent


def child_env() -> dict[str, str]:
    # A fixed, minimal environment: nothing of ours (tokens, S3FT_*, proxies) is passed on.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": "/tmp/work",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


@functools.lru_cache(maxsize=None)
def harness_sources() -> tuple[str, tuple[str, ...]]:
    """(boot.py's text, [name, source, ...] of HARNESS_MODULES): read once per judge process, so
    every zygote it starts runs the same code even if the files change meanwhile."""
    modules: list[str] = []
    for name in HARNESS_MODULES:
        modules += [name, (HERE / f"{name}.py").read_text(encoding="utf-8")]
    return (HERE / "boot.py").read_text(encoding="utf-8"), tuple(modules)


def interpreter_command(sock_fd: int) -> list[str]:
    # The isolation of `-I`, spelled out: -s (no user site), -S (no site-packages at all),
    # -B (no .pyc writes), -P (no script directory on sys.path; boot also scrubs it for
    # Python 3.10, which lacks -P). -E is left out on purpose: the
    # environment is ours entirely (see child_env), and PYTHONHASHSEED=0 must apply so that a
    # program's set/dict order, and thus its verdict, is reproducible.
    flags = ["-s", "-S", "-B"] + (["-P"] if sys.version_info >= (3, 11) else [])
    boot, modules = harness_sources()
    return [sys.executable, *flags, "-c", boot, str(sock_fd), *modules]


class Launcher:
    """The parent's end of the zygote (see `zygote.zygote`): spawn, kill, wait."""

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                interpreter_command(child.fileno()),
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=child_env(),
                cwd="/",
                start_new_session=True,
            )
        except OSError as exc:
            parent.close()
            raise SandboxUnavailable(f"code sandbox unavailable: cannot start {sys.executable}: {exc}") from None
        finally:
            child.close()
        self.owner = os.getpid()
        self.sock = parent
        self.send_lock = threading.Lock()
        self.cond = threading.Condition()
        self.exits: dict[int, int] = {}
        self.started: set[int] = set()
        self.abandoned: set[int] = set()  # jobs already returned: their late messages are dropped
        self.dead = False
        self.ids = itertools.count(1)
        threading.Thread(target=self._read, name="s3ft-code-sandbox", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.sock.recv(1 << 16)
            except OSError:
                msg = b""
            with self.cond:
                if not msg:
                    self.dead = True
                    self.cond.notify_all()
                    return
                reply = json.loads(msg)
                job = reply["id"]
                if job in self.abandoned:
                    if "exit" in reply:
                        self.abandoned.discard(job)
                    continue
                if "pid" in reply:
                    self.started.add(job)
                if "exit" in reply:
                    self.exits[job] = reply["exit"]
                    self.cond.notify_all()

    def alive(self) -> bool:
        return not self.dead and self.owner == os.getpid() and self.proc.poll() is None

    def spawn(self, config: dict, fds: list[int]) -> int:
        job = next(self.ids)
        request = json.dumps({"op": "spawn", "id": job, "cfg": config}).encode()
        with self.send_lock:
            socket.send_fds(self.sock, [request], fds, socket.MSG_NOSIGNAL)
        return job

    def kill(self, job: int) -> None:
        with self.send_lock:
            try:
                self.sock.send(json.dumps({"op": "kill", "id": job}).encode(), socket.MSG_NOSIGNAL)
            except OSError:
                pass

    def wait(self, job: int, timeout: float) -> tuple[int | None, bool]:
        """(exit status or None, whether the job was started at all)."""
        with self.cond:
            self.cond.wait_for(lambda: job in self.exits or self.dead, timeout)
            started = job in self.started
            self.started.discard(job)
            if job not in self.exits:
                self.abandoned.add(job)
            return self.exits.pop(job, None), started


_launcher_lock = threading.Lock()
_launcher: Launcher | None = None


def get_launcher() -> Launcher:
    global _launcher
    with _launcher_lock:
        if _launcher is None or not _launcher.alive():
            _launcher = Launcher()
        return _launcher
