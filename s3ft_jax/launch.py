"""Try a multi-host run on one machine: N local processes of one `s3ft` command.

    python -m s3ft_jax.launch -n 2 -- run --config=configs/demo.py --config.workdir=runs/mp
    python -m s3ft_jax.launch -n 2 --devices 2 -- train --config.workdir=runs/x

Each process gets the coordinator (a free port on 127.0.0.1), its id, the process count and
its own number of forced CPU devices (`--devices`, default 2), exactly what every host of a
real cluster gets from its scheduler, so the same code paths run: a mesh over all processes'
devices, each process feeding its shard of every batch, cross-process collectives (gloo),
only process 0 writing files. Their output is printed line by line as `[p0] ...`, `[p1] ...`.

The exit status is 0 when every process succeeds, else the first failure's status. When one
process fails, the others normally stop by themselves within seconds, and when one is killed,
within S3FT_HEARTBEAT_TIMEOUT seconds (s3ft_jax.distributed); any still running `--grace`
seconds later are killed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(base: dict, *, process_id: int, num_processes: int, port: int, devices: int) -> dict:
    """The environment of local process `process_id`: coordinator, id, forced CPU devices."""
    env = dict(base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env.update(
        S3FT_DISTRIBUTED="1",
        S3FT_COORDINATOR=f"127.0.0.1:{port}",
        S3FT_NUM_PROCESSES=str(num_processes),
        S3FT_PROCESS_ID=str(process_id),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=" ".join([*flags, f"--xla_force_host_platform_device_count={devices}"]),
        PYTHONUNBUFFERED="1",  # lines reach the prefixer as they are printed
    )
    env.setdefault("S3FT_INIT_TIMEOUT", "120")
    return env


@dataclasses.dataclass
class Result:
    returncodes: list[int]
    output: list[list[str]]  # per process, its stdout and stderr lines in arrival order
    seconds: list[float]  # per process, from the launch to its exit (seen within 0.1 s)

    @property
    def returncode(self) -> int:
        return next((c if c > 0 else 128 - c for c in self.returncodes if c != 0), 0)


def launch(
    commands: Sequence[Sequence[str]],
    *,
    devices: int = 2,
    cwd: Sequence[str | os.PathLike | None] | None = None,
    env: Sequence[dict] | None = None,
    grace_s: float = 30.0,
    echo=None,
) -> Result:
    """Run commands[i] as process i of len(commands) and wait for all of them.

    `env[i]` is added to process i's environment, `cwd[i]` is its working directory; each
    output line is passed to `echo` (default: printed with its `[pi] ` prefix).
    """
    n = len(commands)
    port = free_port()
    echo = echo or (lambda i, stream, line: print(f"[p{i}] {line}", file=stream, flush=True))
    output: list[list[str]] = [[] for _ in range(n)]
    procs: list[subprocess.Popen] = []
    threads = []
    lock = threading.Lock()
    started, ended = time.monotonic(), {}

    def pump(i: int, pipe, stream) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with lock:
                output[i].append(line)
                echo(i, stream, line)
        pipe.close()

    try:
        for i, command in enumerate(commands):
            child_env = process_env(os.environ, process_id=i, num_processes=n, port=port, devices=devices)
            child_env.update((env[i] if env else None) or {})
            proc = subprocess.Popen(
                list(command), cwd=(cwd[i] if cwd else None), env=child_env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            procs.append(proc)
            for pipe, stream in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
                t = threading.Thread(target=pump, args=(i, pipe, stream), daemon=True)
                t.start()
                threads.append(t)
        _wait(procs, grace_s, ended)
    except KeyboardInterrupt:
        _stop(procs, signal.SIGINT, grace_s=5.0)
    finally:
        _stop(procs, signal.SIGKILL, grace_s=0.0)
    for t in threads:
        t.join(timeout=5.0)
    now = time.monotonic()
    seconds = [ended.get(i, now) - started for i in range(len(procs))]
    return Result([p.returncode if p.returncode is not None else -9 for p in procs], output, seconds)


def _wait(procs: list[subprocess.Popen], grace_s: float, ended: dict) -> None:
    """Until all exit; once one has failed, the rest get `grace_s` seconds before a kill.
    Each process's time of exit goes into `ended`."""
    deadline = None
    while True:
        for i, p in enumerate(procs):
            if p.poll() is not None:
                ended.setdefault(i, time.monotonic())
        if len(ended) == len(procs):
            return
        if deadline is None and any(p.returncode not in (None, 0) for p in procs):
            deadline = time.monotonic() + grace_s
        if deadline is not None and time.monotonic() > deadline:
            for i, p in enumerate(procs):
                if p.poll() is None:
                    print(f"launch: process {i} still running {grace_s:.0f}s after another failed: killing it", file=sys.stderr, flush=True)
            return
        time.sleep(0.1)


def _stop(procs: list[subprocess.Popen], sig: int, grace_s: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.0) if sig != signal.SIGKILL else 10.0)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10.0)


def s3ft_command(args: Sequence[str]) -> list[str]:
    """`s3ft ARGS` run by this interpreter (so the child imports this very s3ft_jax)."""
    return [sys.executable, "-m", "s3ft_jax.cli", *args]


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m s3ft_jax.launch",
        description="Run one s3ft command as N processes on this machine, as on N hosts.",
        epilog="example: python -m s3ft_jax.launch -n 2 -- run --config=configs/demo.py --config.workdir=runs/mp",
    )
    parser.add_argument("-n", "--processes", type=int, default=2, help="number of processes (default 2)")
    parser.add_argument("--devices", type=int, default=2, help="forced CPU devices per process (default 2)")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds the others get to stop after one fails (default 30)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the s3ft command and its --config flags, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the s3ft command after --, e.g. -- run --config=configs/demo.py")
    if args.processes < 1 or args.devices < 1:
        parser.error("--processes and --devices must be at least 1")
    result = launch([s3ft_command(command)] * args.processes, devices=args.devices, grace_s=args.grace)
    failed = [(i, c) for i, c in enumerate(result.returncodes) if c != 0]
    if failed:
        print("launch: " + ", ".join(f"process {i}: {_describe(c)}" for i, c in failed), file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
