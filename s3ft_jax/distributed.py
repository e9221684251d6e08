"""Multi-process runs: joining the other processes, agreeing on the work, failing together.

Every process of a multi-host run executes the same command; `initialize_from_env` joins them
through JAX's coordination service. The same service carries small protocols, all over its
key-value store, none through XLA, so they work before any compile and while a process is
stuck in a collective:

- `check_same`: every process publishes what it was asked to do (command + resolved config);
  any difference stops all of them before work starts, naming the differing keys.
- failures: a process that fails publishes one line under `s3ft/failed/<id>` and exits; a
  watcher thread in every other process polls for such lines and ends its own process with a
  one-line error, where it would otherwise wait in its next collective for a process that
  is gone.
- heartbeats: the same watcher thread bumps `s3ft/alive/<id>` every half second. A process
  that dies without a word (kill -9, out of memory) stops bumping it; after
  S3FT_HEARTBEAT_TIMEOUT seconds (default 20) every other process ends with one line naming
  it (`process 0 of 2 stopped: process 1 died (no heartbeat for 20 s ...)`), exit status 3.
  The beat comes from a thread, so a long compile or step in the main thread does not stop it.
- `finish`: a barrier once the command is done, so that no process leaves while another is
  still working.

JAX has its own heartbeats, but a death they detect ends every other process from C++ (a
fatal log and a stack dump), and the death of process 0 even at once: the coordination
service lives inside process 0 and every other process aborts the moment its connection
drops. So JAX's heartbeat timeout is set well above ours (a backstop only), and process 0
runs the service in a small child process of its own (`_ServiceProcess`), which outlives a
killed process 0 long enough for the others to notice through the missing heartbeats. Only
the loss of process 0's whole host still ends the others through JAX's abort.

Settings come from the environment: S3FT_COORDINATOR (host:port), S3FT_NUM_PROCESSES,
S3FT_PROCESS_ID, or JAX's JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID; when
none is set, JAX's own cluster detection (TPU VMs, SLURM, Open MPI) fills them in.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

from s3ft_jax.errors import S3FTError

_POLL_S = 0.5  # how often the watcher beats and looks for failures of the other processes
_HEARTBEAT_TIMEOUT_S = 20  # S3FT_HEARTBEAT_TIMEOUT's default: silence that means a process died
_LEAVE_WAIT_S = 10.0  # how long process 0, failing, waits for the others to leave first
_AGREE_TIMEOUT_S = 120.0  # how long `check_same` waits for the slowest process's settings
_FINISH_TIMEOUT_S = 3600.0  # the last process may still be writing a report or an export
_SYNC_TIMEOUT_S = 3600.0  # process 0 may be writing a large file (an export) meanwhile

_watcher: _Watcher | None = None
_own_service = False  # the coordination service runs in a child process of process 0
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
    heartbeat = _HEARTBEAT_TIMEOUT_S if heartbeat is None else heartbeat
    if heartbeat < 2:
        raise S3FTError(f"S3FT_HEARTBEAT_TIMEOUT={heartbeat} is too short: give at least 2 seconds")
    # JAX's own heartbeats only as a backstop (their verdict aborts every process from C++):
    # ours must always speak first.
    kwargs["heartbeat_timeout_seconds"] = max(100, 4 * heartbeat)
    init_timeout = _env_int(environ, "S3FT_INIT_TIMEOUT")
    if init_timeout is not None:
        kwargs["initialization_timeout"] = init_timeout
    try:
        with _service_in_child_process(grace_s=heartbeat + 10):
            jax.distributed.initialize(**kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        line = next((s.strip() for s in str(e).splitlines() if s.strip()), type(e).__name__)
        raise S3FTError(f"cannot join the other processes: {line}") from None
    if jax.process_count() > 1:
        _watcher = _Watcher(jax.process_index(), jax.process_count(), heartbeat)
        _watcher.start()


@contextlib.contextmanager
def _service_in_child_process(grace_s: float):
    """Within: `jax.distributed.initialize` in process 0 starts the coordination service in a
    child process (`_ServiceProcess`) instead of its own. JAX has no option for that, so its
    module's handle on jaxlib is swapped for one that starts the child; a JAX without that
    handle keeps the service in-process (a killed process 0 then ends the others via JAX)."""
    from jax._src import distributed as jax_distributed

    real = getattr(jax_distributed, "_jax", None)
    if real is None or not hasattr(real, "get_distributed_runtime_service"):
        yield
        return

    class Jaxlib:
        def __getattr__(self, name):
            return getattr(real, name)

        def get_distributed_runtime_service(self, address, num_nodes, **options):
            global _own_service
            service = _ServiceProcess(address, num_nodes, options, grace_s)
            _own_service = True
            return service

    jax_distributed._jax = Jaxlib()
    try:
        yield
    finally:
        jax_distributed._jax = real


class _ServiceProcess:
    """JAX's coordination service, run by `python -m s3ft_jax.distributed` for process 0.

    It lives as long as process 0 holds the pipe to its stdin: `shutdown` (JAX's, at the end
    of a run) says "stop"; a pipe closed without a word means process 0 died, and the service
    stays `grace_s` seconds more, for the other processes to miss its heartbeats and leave
    with a line of their own (without it they would abort in JAX's C++ at once).
    """

    def __init__(self, address: str, num_nodes: int, options: dict, grace_s: float):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        spec = json.dumps({"address": address, "num_nodes": num_nodes, "options": options, "grace_s": grace_s})
        # Its own session: a Ctrl-C in the terminal reaches the workers, which still need the
        # service to tell each other; its C++ log (nothing in a good run) is not ours to show.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "s3ft_jax.distributed", spec], env=env, start_new_session=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        said = self._proc.stdout.readline().decode("utf-8", "replace").strip()
        self._proc.stdout.close()
        if said != "ready":
            self._proc.wait()
            raise RuntimeError(said or f"the coordination service's process ended with status {self._proc.returncode}")

    def shutdown(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(b"stop\n")
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()


def _serve(spec: str) -> None:
    """The child process of `_ServiceProcess`."""
    spec = json.loads(spec)
    try:
        from jax._src.lib import _jax

        service = _jax.get_distributed_runtime_service(spec["address"], spec["num_nodes"], **spec["options"])
    except Exception as e:  # e.g. the port is taken: process 0 reports it
        print(next((s.strip() for s in str(e).splitlines() if s.strip()), type(e).__name__), flush=True)
        os._exit(1)
    print("ready", flush=True)
    if sys.stdin.readline().strip() == "stop":
        service.shutdown()
    elif spec["num_nodes"] > 1:
        time.sleep(spec["grace_s"])  # process 0 died: the others must still hear each other
    os._exit(0)


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


def _leave(me: int, n: int, code: int, dead: frozenset = frozenset()) -> None:
    """End this process. Where the coordination service lives inside process 0 (a JAX
    without the swap of `_service_in_child_process`), process 0 goes last, once the others
    have said they are leaving, since any process still connected when the service vanishes
    dies with JAX's fatal-error dump instead of our line. A process that died never says so:
    process 0 does not wait for those in `dead`, and gives up on the others after a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        client = _client()
        client.key_value_set(f"s3ft/leaving/{me}", "1", allow_overwrite=True)
        if me == 0 and not _own_service:
            deadline = time.monotonic() + _LEAVE_WAIT_S
            while time.monotonic() < deadline:
                leaving = {int(k.rsplit("/", 1)[1]) for k, _ in client.key_value_dir_get("s3ft/leaving/")}
                if leaving | dead >= set(range(1, n)):
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
        # Its key-value call in flight must return before the client goes away: shutting the
        # client down under it aborted the process from C++ ("terminate called ...").
        _watcher.join(timeout=30)
    jax.distributed.shutdown()


def await_peers() -> None:
    """Before reporting a crash: return once every other process is known alive (it beat
    since this call), or end this process with the watcher's line if one died. A collective
    whose partner was killed fails in the survivor at once, long before the heartbeat
    timeout; the dead process, not that error's traceback, is what the user needs to hear."""
    if _watcher is not None:
        _watcher.await_peers()


class _Watcher(threading.Thread):
    """Beats for this process, and ends it when another failed or stopped beating."""

    def __init__(self, me: int, n: int, timeout_s: float):
        super().__init__(name="s3ft-peer-watcher", daemon=True)
        self.me, self.n, self.timeout_s = me, n, timeout_s
        self._stopped = threading.Event()
        self._exiting = threading.Event()  # `_exit` is ending the process
        # Per other process: its last beat value and when (our clock) it changed. Every
        # process starts its watcher right after `initialize`, which all leave together.
        now = time.monotonic()
        self._seen = {p: (None, now) for p in range(n) if p != me}

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        client = _client()
        beat = 0
        while not self._stopped.wait(_POLL_S):
            beat += 1
            try:
                client.key_value_set(f"s3ft/alive/{self.me}", str(beat), allow_overwrite=True)
                failed = [(int(k.rsplit("/", 1)[1]), v) for k, v in client.key_value_dir_get("s3ft/failed/")]
                beats = dict(client.key_value_dir_get("s3ft/alive/"))
            except Exception:
                if self._stopped.is_set():
                    return
                self._exit("lost contact with process 0's coordination service (its host is down or unreachable)")
                return
            failed = [(p, v) for p, v in failed if p != self.me]
            if failed:
                p, why = failed[0]
                self._exit(f"process {p} failed ({why})")
                return
            now = time.monotonic()
            for p, (value, since) in self._seen.items():
                latest = beats.get(f"s3ft/alive/{p}")
                if latest != value:
                    self._seen[p] = (latest, now)
                elif now - since > self.timeout_s:
                    why = f"process {p} died (no heartbeat for {self.timeout_s:.0f} s: killed, out of memory, or its host is down)"
                    self._exit(why, dead=frozenset({p}))
                    return

    def await_peers(self) -> None:
        asked = time.monotonic()
        while not self._stopped.is_set() and time.monotonic() < asked + self.timeout_s + 5:
            if all(since > asked for _, since in self._seen.values()):
                return
            time.sleep(0.1)
        if self._exiting.is_set():
            time.sleep(_LEAVE_WAIT_S + 5)  # `_exit` ends the process meanwhile, with its line

    def _exit(self, why: str, dead: frozenset = frozenset()) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._exiting.set()
        print(f"s3ft: error: process {self.me} of {self.n} stopped: {why}", file=sys.stderr, flush=True)
        _leave(self.me, self.n, 3, dead)


if __name__ == "__main__":
    _serve(sys.argv[1])
