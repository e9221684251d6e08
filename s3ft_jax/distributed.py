"""Multi-process runs: joining the other processes, agreeing on the work, failing together.

Every process of a multi-host run executes the same command; `initialize_from_env` joins them
through JAX's coordination service (process 0 hosts it). The same service carries three small
protocols, all over its key-value store, none through XLA, so they work before any compile
and while a process is stuck in a collective:

- `check_same`: every process publishes what it was asked to do (command + resolved config);
  any difference stops all of them before work starts, naming the differing keys.
- failures: a process that fails publishes one line under `s3ft/failed/<id>` and exits; a
  watcher thread in every other process polls for such lines and ends its own process with a
  one-line error, where it would otherwise wait in its next collective for a process that
  is gone. A process that dies without a word (kill -9, out of memory) stops sending JAX's
  heartbeats: after S3FT_HEARTBEAT_TIMEOUT seconds (JAX's default 100) the service ends every
  other process with JAX's own fatal-error message ("... another task died ...").
- `finish`: a barrier once the command is done, so process 0, which hosts the service, does
  not leave while another is still working.

Settings come from the environment: S3FT_COORDINATOR (host:port), S3FT_NUM_PROCESSES,
S3FT_PROCESS_ID, or JAX's JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID; when
none is set, JAX's own cluster detection (TPU VMs, SLURM, Open MPI) fills them in.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from s3ft_jax.errors import S3FTError

_POLL_S = 0.5  # how often the watcher looks for failures of the other processes
_LEAVE_WAIT_S = 10.0  # how long process 0, failing, waits for the others to leave first
_AGREE_TIMEOUT_S = 120.0  # how long `check_same` waits for the slowest process's settings
_FINISH_TIMEOUT_S = 3600.0  # the last process may still be writing a report or an export
_SYNC_TIMEOUT_S = 3600.0  # process 0 may be writing a large file (an export) meanwhile

_watcher: _Watcher | None = None
_syncs = 0  # `sync` calls so far: the n-th call of every process must meet the others' n-th


def requested(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get("S3FT_DISTRIBUTED") == "1" or bool(environ.get("S3FT_NUM_PROCESSES"))


def _env_int(environ, *names: str) -> int | None:
    for name in names:
        value = environ.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                raise S3FTError(f"{name}={value!r} is not a whole number") from None
    return None


def initialize_from_env(environ=None) -> None:
    """Join the other processes (call before any other JAX call), then watch them."""
    global _watcher
    import jax

    environ = os.environ if environ is None else environ
    # CPU devices of different processes can only exchange data through a collectives
    # library; XLA's CPU client has none by default and would fail at the first cross-process op.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {
        "coordinator_address": environ.get("S3FT_COORDINATOR") or environ.get("JAX_COORDINATOR_ADDRESS") or None,
        "num_processes": _env_int(environ, "S3FT_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
        "process_id": _env_int(environ, "S3FT_PROCESS_ID", "JAX_PROCESS_ID"),
    }
    heartbeat = _env_int(environ, "S3FT_HEARTBEAT_TIMEOUT")
    if heartbeat is not None:
        kwargs["heartbeat_timeout_seconds"] = heartbeat
    init_timeout = _env_int(environ, "S3FT_INIT_TIMEOUT")
    if init_timeout is not None:
        kwargs["initialization_timeout"] = init_timeout
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        line = next((s.strip() for s in str(e).splitlines() if s.strip()), type(e).__name__)
        raise S3FTError(f"cannot join the other processes: {line}") from None
    if jax.process_count() > 1:
        _watcher = _Watcher(jax.process_index(), jax.process_count())
        _watcher.start()


def _client():
    from jax._src.distributed import global_state

    return global_state.client


def active() -> bool:
    return _watcher is not None


def process_label() -> str:
    return f"process {_watcher.me} of {_watcher.n}" if _watcher else "process 0"


def is_writer() -> bool:
    """Whether this process writes the run's files: process 0 of a multi-process run."""
    import jax

    return jax.process_index() == 0


def _flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(value, sort_keys=True, default=str)}


def _exchange(key: str, mine: str, timeout_s: float, missing: str) -> dict[int, str]:
    """Publish `mine` under key/<this process>; every other process's value under key/<it>."""
    client, me = _client(), _watcher.me
    client.key_value_set(f"{key}/{me}", mine)
    theirs = {}
    for other in (p for p in range(_watcher.n) if p != me):
        try:
            theirs[other] = client.blocking_key_value_get(f"{key}/{other}", int(timeout_s * 1000))
        except Exception:
            raise S3FTError(f"process {other} did not {missing} within {timeout_s:.0f}s") from None
    return theirs


def check_same(name: str, value) -> None:
    """Raise in every process unless all of them hold an equal `value` (JSON-able)."""
    if _watcher is None:
        return
    mine = json.dumps(value, sort_keys=True, default=str)
    for other, theirs in _exchange(f"s3ft/same/{name}", mine, _AGREE_TIMEOUT_S, f"report its {name}").items():
        if theirs != mine:
            a, b = _flatten(json.loads(mine)), _flatten(json.loads(theirs))
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            shown = ", ".join(f"{k}: {a.get(k, '-')} here, {b.get(k, '-')} there" for k in keys[:3])
            raise S3FTError(
                f"process {other} was started with a different {name} ({shown}{', ...' if len(keys) > 3 else ''}): "
                "every process must run the same command"
            )


def sync(tag: str) -> None:
    """Wait until every process reaches its matching `sync` call.

    Process 0 alone writes the run's files, and every process then reads them back (stage
    metadata, generations, prompts): a process that read before process 0 had written would
    go its own way, and its next collective would pair with a different one. A sync after each
    write and between reading a stage's state and changing it keeps them in step. Each
    process publishes `tag` for its n-th sync, so two processes on different paths fail at
    once with both places named instead of waiting forever.
    """
    global _syncs
    if _watcher is None:
        return
    _syncs += 1
    for other, theirs in _exchange(f"s3ft/sync/{_syncs}", tag, _SYNC_TIMEOUT_S, f"reach '{tag}'").items():
        if theirs != tag:
            raise S3FTError(f"processes out of step: process {other} reached '{theirs}' where this one reached '{tag}' (a bug: please report it)")


def fail(message: str, code: int) -> None:
    """Multi-process: publish this process's failure so the others stop too, end the process.

    `os._exit` skips JAX's shutdown, which would wait for every other process to shut down as
    well, possibly for minutes, while they wait for this one in a collective.
    """
    if _watcher is None:
        return  # one process: the caller returns its exit status as usual
    _watcher.stop()
    try:
        _client().key_value_set(f"s3ft/failed/{_watcher.me}", message.splitlines()[0][:300] if message else "?", allow_overwrite=True)
    except Exception:
        pass  # the service is gone already: nothing left to tell
    _leave(_watcher.me, _watcher.n, code)


def _leave(me: int, n: int, code: int) -> None:
    """End this process. Process 0 hosts the coordination service: it goes last, once the
    others have said they are leaving (or stopped responding), since any process still
    connected when the service vanishes dies with JAX's fatal-error dump instead of our line.
    A process that died (kill -9) never says so: process 0 gives up waiting after a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        client = _client()
        client.key_value_set(f"s3ft/leaving/{me}", "1", allow_overwrite=True)
        if me == 0:
            deadline = time.monotonic() + _LEAVE_WAIT_S
            while time.monotonic() < deadline:
                leaving = {int(k.rsplit("/", 1)[1]) for k, _ in client.key_value_dir_get("s3ft/leaving/")}
                if leaving >= set(range(1, n)):
                    time.sleep(0.5)  # their os._exit, after they set the key
                    break
                time.sleep(0.1)
    except Exception:
        pass
    os._exit(code)


def finish() -> None:
    """Wait for every process to finish the command, then leave the service together."""
    if _watcher is None:
        return
    import jax

    try:
        _client().wait_at_barrier("s3ft/finished", int(_FINISH_TIMEOUT_S * 1000))
    finally:
        _watcher.stop()
    jax.distributed.shutdown()


class _Watcher(threading.Thread):
    def __init__(self, me: int, n: int):
        super().__init__(name="s3ft-peer-watcher", daemon=True)
        self.me, self.n = me, n
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        client = _client()
        while not self._stopped.wait(_POLL_S):
            try:
                failed = [(int(k.rsplit("/", 1)[1]), v) for k, v in client.key_value_dir_get("s3ft/failed/")]
                failed = [(p, v) for p, v in failed if p != self.me]
                if failed:
                    p, why = failed[0]
                    self._exit(f"process {p} failed ({why})")
            except Exception:
                if self._stopped.is_set():
                    return
                self._exit("lost contact with process 0, which coordinates the run (it died or was killed)")

    def _exit(self, why: str) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        print(f"s3ft: error: process {self.me} of {self.n} stopped: {why}", file=sys.stderr, flush=True)
        _leave(self.me, self.n, 3)
