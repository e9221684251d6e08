"""H1, PID 1 of the sandbox's PID namespace: the trusted harness of one job.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
Mounts a private /proc, makes every mount read-only but /tmp and /dev/shm, drops every
privilege, forks the worker, and only then reads the job (program, tests, nonce) from stdin. It
runs the tests (`judging.judge`) and writes the one verdict line to its private copy of stdout.
When it exits, the kernel kills everything else in the namespace.
"""

import json
import os
import resource
import signal
import time

from .channel import MAX_MSG, Rpc
from .judging import judge
from .kernel import (
    CFG,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    PR_SET_PDEATHSIG,
    die,
    errtext,
    libc,
    mount_setattr,
    no_int_digit_limit,
    prctl,
)
from .lockdown import drop_privileges
from .worker import worker


def h1(devices):
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, what="PR_SET_PDEATHSIG")
    if libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        die("cannot mount a private /proc: %s (the host /proc must be fully visible, e.g. "
            "docker --security-opt systempaths=unconfined)" % errtext())
    mount_setattr("/", True, set_=MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    mount_setattr("/tmp", False, clr=MOUNT_ATTR_RDONLY)
    mount_setattr("/dev/shm", False, clr=MOUNT_ATTR_RDONLY)
    for name in devices:
        mount_setattr("/dev/" + name, False, clr=MOUNT_ATTR_NODEV)
    os.chdir("/tmp/work")
    os.umask(0o022)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    drop_privileges()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    h1_mb = CFG["memory_mb"] + 1024
    resource.setrlimit(resource.RLIMIT_AS, (h1_mb << 20, h1_mb << 20))
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    worker_pid = os.fork()
    if worker_pid == 0:
        try:
            worker(req_r, resp_w)
        finally:
            os._exit(70)
    os.close(req_r)
    os.close(resp_w)
    # Only now, with the worker running, the job: the worker never sees the tests or the nonce.
    chunks, size = [], 0
    while True:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_MSG:
            os.write(2, b"job too large\n")
            os._exit(4)
    job = json.loads(b"".join(chunks))
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    verdict_fd = os.dup(1)
    os.dup2(devnull, 1)  # test code that prints cannot reach the verdict channel
    no_int_digit_limit()
    try:
        status, detail, ran = judge(job, Rpc(resp_r, req_w, worker_pid, time.monotonic() + CFG["timeout"]))
    except BaseException as exc:
        status, detail, ran = "error", "harness error: %r" % (exc,), 0
    line = json.dumps({"nonce": job["nonce"], "status": status, "detail": detail[:2000],
                       "tests_run": ran, "tests_total": len(job["tests"])})
    os.write(verdict_fd, (line + "\n").encode("ascii"))
    os._exit(0)  # as PID 1: the kernel now kills the worker and everything it started
