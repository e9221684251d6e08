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

There is no unprotected fallback: `check_sandbox()` runs a probe through the real sandbox once
per process and raises `SandboxUnavailable` with a one-line reason when the machine cannot
provide the isolation (no unprivileged user namespaces, no private /proc, kernel < 5.12, an
unsupported architecture); `run_tests` and `run_many` call it first.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from s3ft_jax.errors import S3FTError

__all__ = [
    "CodeJob",
    "CodeResult",
    "SandboxUnavailable",
    "check_sandbox",
    "run_many",
    "run_tests",
]

STATUSES = ("passed", "failed", "timeout", "error", "crashed")
DETAIL_CHARS = 500

# Host uid/gid the sandbox runs as when the judge itself runs as root (the "nobody" ids).
SANDBOX_UID = 65534
SANDBOX_GID = 65534
# Directories replaced by empty read-only mounts inside the sandbox (plus the caller's $HOME).
MASKED_DIRS = ("/root", "/home", "/run", "/var/tmp")
MAX_PROCESSES = 32  # RLIMIT_NPROC of the worker: tasks (processes and threads) of the sandbox
MAX_OPEN_FILES = 256
MAX_FILE_MB = 64  # RLIMIT_FSIZE, and the size of the private /tmp and /dev/shm
HARD_KILL_GRACE_S = 5.0  # the parent kills the whole sandbox at timeout_s + this
_SETUP_FAILED = 3  # harness exit status: the sandbox could not be built
_SUPPORTED_MACHINES = ("x86_64", "amd64", "aarch64", "arm64")


class SandboxUnavailable(S3FTError):
    """The machine cannot isolate untrusted code; nothing was run."""


@dataclass(frozen=True)
class CodeResult:
    """`passed` only when every test ran to completion in the trusted harness."""

    passed: bool
    status: str  # one of STATUSES
    detail: str


@dataclass(frozen=True)
class CodeJob:
    program: str
    tests: tuple[str, ...] | list[str]
    setup_code: str = ""


def _short(text: str, limit: int = DETAIL_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _normalise(source: str) -> str:
    return source.replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------------------------------------
# The harness: the source of the sandboxed process, run with `python -c`. It is three processes:
#   H0  the process we spawn: unshares the namespaces, builds the mounts, forks H1, and kills H1
#       if it outlives its deadline (a second line of defence behind H1's own deadline).
#   H1  PID 1 of the new PID namespace: private /proc, read-only remount, drops every privilege,
#       forks the worker W, then reads the job from stdin and runs each test, asking W to
#       evaluate what the program defines. It writes the verdict to its private copy of stdout.
#   W   the worker: execs the untrusted program and answers H1's requests.
# Only the standard library; it must not import anything from this repository.

_HARNESS = r'''
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]  # never import from the working directory
import ast, builtins, ctypes, errno, fcntl, importlib, json, math, operator, os, resource
import select, signal, socket, struct, sys, time, types

CFG = {}  # the job's limits, set in each forked job process
SETUP_FAILED = 3
MAX_MSG = 32 << 20

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 8192, 16384, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE = 442, -100, 0x8000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_READ, PR_CAPBSET_DROP = 1, 4, 23, 24
PR_SET_SECCOMP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 22, 28, 38, 47
DEVICES = ("null", "zero", "full", "random", "urandom")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.unshare.argtypes = [ctypes.c_int]
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def die(msg):
    try:
        os.write(2, ("S3FT-SANDBOX-SETUP-FAILED: %s\n" % msg).encode("utf-8", "replace"))
    finally:
        os._exit(SETUP_FAILED)


def errtext():
    e = ctypes.get_errno()
    return "%s (%s)" % (os.strerror(e), errno.errorcode.get(e, e))


def b(s):
    return None if s is None else s.encode()


def mount(src, tgt, fstype, flags, data=None):
    if libc.mount(b(src), b(tgt), b(fstype), flags, b(data)) != 0:
        die("mount %s on %s failed: %s" % (fstype or src, tgt, errtext()))


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(path, recursive, set_=0, clr=0):
    attr = MountAttr(set_, clr, 0, 0)
    rc = libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), b(path),
                      ctypes.c_uint(AT_RECURSIVE if recursive else 0), ctypes.byref(attr),
                      ctypes.c_size_t(ctypes.sizeof(attr)))
    if rc != 0:
        die("mount_setattr(%s) failed: %s; Linux >= 5.12 is needed" % (path, errtext()))


def prctl(option, a=0, b_=0, c=0, d=0, what=None):
    if libc.prctl(option, a, b_, c, d) != 0:
        die("prctl(%s) failed: %s" % (what or option, errtext()))


def under(path, top):
    return path == top or path.startswith(top.rstrip("/") + "/")


# ----------------------------------------------------------------------------- H0: namespaces

def exposed_paths():
    """Directories the interpreter needs (prefix, stdlib, lib-dynload, bin), outermost only."""
    found = set()
    executable = [os.path.dirname(os.path.abspath(sys.executable)), os.path.dirname(os.path.realpath(sys.executable))]
    for p in [sys.base_prefix, sys.prefix] + executable + sys.path:
        if not p:
            continue
        p = os.path.realpath(p)
        if os.path.isfile(p):
            p = os.path.dirname(p)
        if os.path.isdir(p) and p != "/":
            found.add(p)
    return sorted(p for p in found if not any(q != p and under(p, q) for q in found))


def masked_paths(expose, as_other_uid):
    masks = set()
    for m in CFG["masks"]:
        if not m or not os.path.isabs(m):
            continue
        m = os.path.realpath(m)
        # /tmp, /dev and /proc get their own mounts below.
        if m != "/" and os.path.isdir(m) and not any(under(m, top) for top in ("/tmp", "/dev", "/proc")):
            masks.add(m)
    if as_other_uid:
        # The sandbox uid may not traverse e.g. /root: hide the first such ancestor, re-expose below.
        for p in expose:
            cur = ""
            for part in p.strip("/").split("/"):
                cur += "/" + part
                if not os.stat(cur).st_mode & 0o001:
                    masks.add(cur)
                    break
    return sorted(m for m in masks if not any(q != m and under(m, q) for q in masks))


def write_id_maps(pid, uid, gid):
    for name, text in (("setgroups", "deny"), ("uid_map", "0 %d 1\n" % uid), ("gid_map", "0 %d 1\n" % gid)):
        fd = os.open("/proc/%d/%s" % (pid, name), os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def id_map(kind):
    with open("/proc/self/%s_map" % kind) as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]


def outside_id(kind, inside):
    for first, outside, count in id_map(kind):
        if first <= inside < first + count:
            return outside + inside - first
    return None


def root_mode():
    """True when we are root of the parent namespace: the sandbox must then use another uid."""
    return os.geteuid() == 0 and outside_id("uid", 0) == 0


def h0(sync=None):
    """`sync`: in root mode, a pipe pair to the zygote, which writes our uid/gid maps."""
    as_root = root_mode()
    uid, gid = (CFG["uid"], CFG["gid"]) if as_root else (os.geteuid(), os.getegid())
    if as_root and (outside_id("uid", uid) is None or outside_id("gid", gid) is None):
        die("running as root, but uid/gid %d is not mapped in this user namespace, so the sandbox "
            "could only run as root; run the judge as an unprivileged user" % uid)
    expose = exposed_paths()
    masks = masked_paths(expose, as_root)
    if as_root:
        try:
            os.setgroups([])  # no supplementary group (gid 0...) may follow us into the sandbox
        except OSError as exc:
            die("cannot drop supplementary groups: %s" % exc)
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    if libc.unshare(flags) != 0:
        die("cannot create user namespaces: unshare failed: %s; unprivileged user namespaces must be "
            "enabled (user.max_user_namespaces > 0, kernel.unprivileged_userns_clone = 1, no AppArmor "
            "restriction, a container that permits unshare)" % errtext())
    if as_root:
        # An unprivileged user namespace may only map its creator; mapping to another host uid
        # needs CAP_SETUID in the parent namespace: the zygote, still outside, writes the maps.
        ask, answer = sync
        os.write(ask, b"u")
        reply = os.read(answer, 400)
        os.close(ask)
        os.close(answer)
        if reply != b"k":
            die(reply.decode("utf-8", "replace") or "the uid/gid map writer gave no answer")
    else:
        try:
            write_id_maps(os.getpid(), uid, gid)
        except OSError as exc:
            die("writing uid/gid maps failed: %s" % exc)
    # Opened while we may still traverse e.g. /root (as host root); bound after the masks hide it.
    expose_fds = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)) for p in expose]
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as exc:
        die("cannot become root of the new user namespace: %s" % exc)

    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mb = CFG["tmp_mb"]
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=%dm,nr_inodes=8192" % mb)
    os.mkdir("/tmp/work", 0o755)
    for m in masks:
        mount("tmpfs", m, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=512")
    for p, fd in expose_fds:
        if any(under(p, m) for m in masks) or under(p, "/tmp"):
            os.makedirs(p, exist_ok=True)
            mount("/proc/self/fd/%d" % fd, p, None, MS_BIND | MS_REC)
        os.close(fd)
    # A minimal /dev: a few harmless character devices bound from the host, nothing else.
    stage = "/tmp/.s3ft-dev"
    os.mkdir(stage, 0o755)
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64")
    devices = []
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            os.close(os.open(stage + "/" + name, os.O_WRONLY | os.O_CREAT, 0o666))
            mount("/dev/" + name, stage + "/" + name, None, MS_BIND)
            devices.append(name)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, stage + "/" + name)
    os.mkdir(stage + "/shm", 0o1777)
    mount(stage, "/dev", None, MS_MOVE)
    os.rmdir(stage)
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=%dm,nr_inodes=1024" % mb)

    h1_pid = os.fork()
    if h1_pid == 0:
        try:
            h1(devices)
        except BaseException as exc:
            die("harness crashed during setup: %r" % (exc,))
        os._exit(SETUP_FAILED)
    os.close(0)
    os.close(1)
    # The parent also kills us at timeout + grace; we kill H1 a little earlier so it gets reaped.
    limit = CFG["timeout"] + CFG["h0_grace"]
    pidfd = os.pidfd_open(h1_pid)
    ready, _, _ = select.select([pidfd], [], [], limit)
    if not ready:
        os.kill(h1_pid, signal.SIGKILL)
        os.waitpid(h1_pid, 0)
        os._exit(124)
    _, status = os.waitpid(h1_pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


# ----------------------------------------------------------------------------- H1: lock down

SYSCALLS = {
    # arch: (AUDIT_ARCH, x32 bit?, clone, clone3, socket, denied...)
    "x86_64": (0xC000003E, True, 56, 435, 41, {
        "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250,
        "add_key": 248, "request_key": 249, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "acct": 163, "swapon": 167, "swapoff": 168,
        "reboot": 169, "quotactl": 179, "name_to_handle_at": 303, "open_by_handle_at": 304,
        "syslog": 103}),
    "aarch64": (0xC00000B7, False, 220, 435, 198, {
        "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "mount_setattr": 442, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 219,
        "add_key": 217, "request_key": 218, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "acct": 89, "swapon": 224, "swapoff": 225,
        "reboot": 142, "quotactl": 60, "name_to_handle_at": 264, "open_by_handle_at": 265,
        "syslog": 116}),
}
SYSCALLS["amd64"] = SYSCALLS["x86_64"]
SYSCALLS["arm64"] = SYSCALLS["aarch64"]


def seccomp_program():
    arch = os.uname().machine.lower()
    if arch not in SYSCALLS:
        die("no seccomp policy for architecture %s (x86_64 and aarch64 are supported)" % arch)
    audit, x32, clone, clone3, socket_nr, denied = SYSCALLS[arch]
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, KILL = 0x7FFF0000, 0x80000000
    def err(e): return 0x00050000 | e
    ns_flags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
    ops = [("ld", 4), ("jeq", audit, "arch_ok", None), ("ret", KILL), ("label", "arch_ok"), ("ld", 0)]
    if x32:
        ops += [("jge", 0x40000000, "enosys", None)]
    for nr in sorted(set(denied.values())):
        ops += [("jeq", nr, "eperm", None)]
    ops += [("jeq", clone3, "enosys", None),
            ("jeq", clone, None, "not_clone"), ("ld", 16), ("jset", ns_flags, "eperm", "allow"),
            ("label", "not_clone"),
            ("jeq", socket_nr, None, "allow"), ("ld", 16), ("jeq", 2, "allow", None),
            ("jeq", 10, "allow", None), ("ret", err(errno.EAFNOSUPPORT)),
            ("label", "allow"), ("ret", ALLOW),
            ("label", "eperm"), ("ret", err(errno.EPERM)),
            ("label", "enosys"), ("ret", err(errno.ENOSYS))]
    labels, pc = {}, 0
    for op in ops:
        if op[0] == "label":
            labels[op[1]] = pc
        else:
            pc += 1
    code, pc = [], 0
    for op in ops:
        if op[0] == "label":
            continue
        if op[0] == "ld":
            code.append((LD, 0, 0, op[1]))
        elif op[0] == "ret":
            code.append((RET, 0, 0, op[1]))
        else:
            kind = {"jeq": JEQ, "jge": JGE, "jset": JSET}[op[0]]
            jt = 0 if op[2] is None else labels[op[2]] - pc - 1
            jf = 0 if op[3] is None else labels[op[3]] - pc - 1
            assert 0 <= jt < 256 and 0 <= jf < 256
            code.append((kind, jt, jf, op[1]))
        pc += 1
    return code


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


SECCOMP = None  # (filter array, count); built once in the zygote
N_CAPS = 0


def prepare():
    global SECCOMP, N_CAPS
    code = seccomp_program()
    SECCOMP = ((SockFilter * len(code))(*[SockFilter(*c) for c in code]), len(code))
    while libc.prctl(PR_CAPBSET_READ, N_CAPS, 0, 0, 0) >= 0:
        N_CAPS += 1


def drop_privileges():
    # Securebits: uid 0 never regains capabilities through execve or setuid.
    prctl(PR_SET_SECUREBITS, 0x2F, what="PR_SET_SECUREBITS")
    for cap in range(N_CAPS):
        prctl(PR_CAPBSET_DROP, cap, what="PR_CAPBSET_DROP")
    prctl(PR_CAP_AMBIENT, 4, what="PR_CAP_AMBIENT_CLEAR_ALL")
    header, data = CapHeader(0x20080522, 0), (CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        die("capset failed: %s" % errtext())
    prctl(PR_SET_NO_NEW_PRIVS, 1, what="PR_SET_NO_NEW_PRIVS")
    filters, count = SECCOMP
    prog = SockFprog(count, filters)
    if libc.prctl(PR_SET_SECCOMP, 2, ctypes.cast(ctypes.pointer(prog), ctypes.c_void_p).value, 0, 0) != 0:
        die("installing the seccomp filter failed: %s" % errtext())
    # No ptrace, no /proc/1/mem, /proc/1/fd or /proc/1/environ for the (capability-less) worker.
    prctl(PR_SET_DUMPABLE, 0, what="PR_SET_DUMPABLE")


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
    try:
        sys.set_int_max_str_digits(0)
    except AttributeError:
        pass
    try:
        status, detail, ran = judge(job, Rpc(resp_r, req_w, worker_pid, time.monotonic() + CFG["timeout"]))
    except BaseException as exc:
        status, detail, ran = "error", "harness error: %r" % (exc,), 0
    line = json.dumps({"nonce": job["nonce"], "status": status, "detail": detail[:2000],
                       "tests_run": ran, "tests_total": len(job["tests"])})
    os.write(verdict_fd, (line + "\n").encode("ascii"))
    os._exit(0)  # as PID 1: the kernel now kills the worker and everything it started


# ----------------------------------------------------------------------------- H1: the judge

class WorkerGone(BaseException):
    """The worker died, stopped talking, broke the protocol, or ran out of time."""


class Rpc:
    def __init__(self, rfd, wfd, pid, deadline):
        self.rfd, self.wfd, self.pid, self.deadline = rfd, wfd, pid, deadline
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        self.seq = 0
        self.buf = bytearray()
        self.dead = None  # (status, detail) once the worker is unusable

    def _end(self, status, detail):
        if self.dead is None:
            self.dead = (status, detail)
            if self.pid > 0:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
        raise WorkerGone(detail)

    def _timeout(self):
        self._end("timeout", "exceeded the %gs time limit" % CFG["timeout"])

    def protocol(self, what):
        self._end("failed", "protocol violation by the program's process: %s" % what)

    def _gone(self):
        # The channel closed: find out how the worker ended (it may still be running).
        end = min(self.deadline, time.monotonic() + 0.5)
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > end:
                if time.monotonic() > self.deadline:
                    self._timeout()
                self._end("failed", "the program's process closed the harness channel")
            time.sleep(0.005)
        self.pid = -1
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU:
                self._end("timeout", "exceeded the CPU time limit")
            self._end("crashed", "the program's process was killed by %s" % signal.Signals(sig).name)
        self._end("exited", "the program's process exited with status %d" % os.waitstatus_to_exitcode(status))

    def _wait(self, fd, write):
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._timeout()
        r, w, _ = select.select([] if write else [fd], [fd] if write else [], [], left)
        if not r and not w:
            self._timeout()

    def request(self, *msg):
        if self.dead is not None:
            raise WorkerGone(self.dead[1])
        self.seq += 1
        try:
            data = json.dumps([self.seq] + list(msg)).encode("ascii")
        except (ValueError, TypeError, RecursionError) as exc:
            raise TypeError("cannot send this value to the program: %s" % exc) from None
        view = memoryview(struct.pack(">I", len(data)) + data)
        while view:
            self._wait(self.wfd, True)
            try:
                view = view[os.write(self.wfd, view):]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                self._gone()
        (n,) = struct.unpack(">I", self._read(4))
        if n > MAX_MSG:
            self._end("failed", "the program's reply is too large (%d bytes; the limit is %d MiB)" % (n, MAX_MSG >> 20))
        try:
            reply = json.loads(self._read(n))
        except (ValueError, RecursionError):
            self.protocol("malformed reply")
        if type(reply) is not list or len(reply) < 2 or reply[0] != self.seq:
            self.protocol("unexpected reply")
        if reply[1] == "ok" and len(reply) == 3:
            return reply[2]
        if reply[1] == "exc" and len(reply) == 5:
            raise remote_exception(self, reply[2], reply[3], reply[4])
        self.protocol("unexpected reply")

    def _read(self, n):
        while len(self.buf) < n:
            self._wait(self.rfd, False)
            try:
                chunk = os.read(self.rfd, max(1 << 16, n - len(self.buf)))
            except BlockingIOError:
                continue
            if not chunk:
                self._gone()
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class RemoteError(Exception):
    """An exception the program raised that is not a built-in one."""


def remote_exception(rpc, name, module, message):
    if not all(type(x) is str for x in (name, module, message)):
        rpc.protocol("malformed exception")
    message = message[:2000]
    cls = getattr(builtins, name, None) if module == "builtins" else None
    # Built-in Exception subclasses keep their type (StopIteration ends a loop, KeyError is a
    # KeyError); never BaseException-only types such as SystemExit or KeyboardInterrupt.
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            exc = cls(message)
        except Exception:
            exc = RemoteError("%s: %s" % (name, message))
    else:
        exc = RemoteError("%s.%s: %s" % (module, name, message))
    exc.s3ft_remote = "%s: %s" % (name, message)
    return exc


# Side-effect-free stdlib modules: when the program imported one of these, tests use the
# harness's own (unpatched) copy; any other module stays a handle into the worker.
LOCAL_MODULES = {
    "array", "bisect", "builtins", "calendar", "cmath", "collections", "collections.abc", "copy",
    "dataclasses", "datetime", "decimal", "enum", "fractions", "functools", "hashlib", "heapq",
    "itertools", "json", "math", "numbers", "operator", "os", "os.path", "posixpath", "random", "re",
    "statistics", "string", "struct", "sys", "textwrap", "time", "types", "typing", "unicodedata",
}


def local_module(name):
    if type(name) is not str or name not in LOCAL_MODULES:
        return None
    try:
        return importlib.import_module(name)
    except Exception:
        return None


RPC = None


def call(op, *args, **kwargs):
    return decode(RPC.request("op", op, [encode(a) for a in args], {k: encode(v) for k, v in kwargs.items()}))


class Proxy:
    """A handle to an object living in the worker; every operation is a request to it."""

    __slots__ = ("_s3ft_id", "_s3ft_type")

    def __init__(self, hid, tname):
        object.__setattr__(self, "_s3ft_id", hid)
        object.__setattr__(self, "_s3ft_type", tname)

    def __getattr__(self, name):
        if name.startswith("_s3ft_"):
            raise AttributeError(name)
        return call("getattr", self, name)

    def __setattr__(self, name, value):
        call("setattr", self, name, value)

    def __delattr__(self, name):
        call("delattr", self, name)

    def __call__(self, *args, **kwargs):
        return call("call", self, *args, **kwargs)

    def __repr__(self):
        try:
            text = call("repr", self)
            return text if type(text) is str else "<%s>" % self._s3ft_type
        except BaseException:
            return "<%s object in the program>" % self._s3ft_type

    def __str__(self):
        return call("str", self)

    def __format__(self, spec):
        return call("format", self, spec)

    def __hash__(self):
        return call("hash", self)

    def __bool__(self):
        return call("bool", self)

    def __len__(self):
        return call("len", self)

    def __contains__(self, item):
        return call("contains", self, item)

    def __getitem__(self, key):
        return call("getitem", self, key)

    def __setitem__(self, key, value):
        call("setitem", self, key, value)

    def __delitem__(self, key):
        call("delitem", self, key)

    def __iter__(self):
        it = call("iter", self)
        if type(it) is not Proxy:
            RPC.protocol("iter() did not return an iterator")
        return RemoteIterator(it)

    def __next__(self):
        items, state = next_batch(self, 1)
        if items:
            return items[0]
        if state is None:
            raise StopIteration
        raise state

    def __reversed__(self):
        return call("reversed", self)

    def __round__(self, ndigits=None):
        return call("round", self) if ndigits is None else call("round", self, ndigits)

    def __pow__(self, other, mod=None):
        return call("pow", self, other) if mod is None else call("pow", self, other, mod)

    def __rpow__(self, other):
        return call("pow", other, self)


def _unary(op):
    return lambda self: call(op, self)


def _binary(op):
    return lambda self, other: call(op, self, other)


def _reflected(op):
    return lambda self, other: call(op, other, self)


for _name in ("neg", "pos", "abs", "invert", "int", "float", "complex", "index", "trunc", "floor", "ceil"):
    setattr(Proxy, "__%s__" % _name, _unary(_name))
for _name in ("eq", "ne", "lt", "le", "gt", "ge"):
    setattr(Proxy, "__%s__" % _name, _binary(_name))
for _name, _op in (("add", "add"), ("sub", "sub"), ("mul", "mul"), ("matmul", "matmul"),
                   ("truediv", "truediv"), ("floordiv", "floordiv"), ("mod", "mod"),
                   ("divmod", "divmod"), ("lshift", "lshift"), ("rshift", "rshift"),
                   ("and", "and_"), ("or", "or_"), ("xor", "xor")):
    setattr(Proxy, "__%s__" % _name, _binary(_op))
    setattr(Proxy, "__r%s__" % _name, _reflected(_op))


def next_batch(proxy, n):
    reply = RPC.request("next", proxy._s3ft_id, n)
    if type(reply) is not list or len(reply) != 2 or type(reply[0]) is not list:
        RPC.protocol("malformed next() reply")
    items = [decode(v) for v in reply[0]]
    state = reply[1]
    if state == "more":
        return items, False
    if state == "stop":
        return items, None
    if type(state) is list and len(state) == 3:
        return items, remote_exception(RPC, *state)
    RPC.protocol("malformed next() reply")


class RemoteIterator:
    """Iterates a worker-side iterator, fetching items in growing batches."""

    def __init__(self, proxy):
        self.proxy, self.items, self.state, self.batch = proxy, [], False, 1

    def __iter__(self):
        return self

    def __next__(self):
        if not self.items:
            if self.state is None:
                raise StopIteration
            if self.state is not False:
                exc, self.state = self.state, None
                raise exc
            items, self.state = next_batch(self.proxy, self.batch)
            self.batch = min(self.batch * 2, 1024)
            self.items = items[::-1]
            if not self.items:
                return self.__next__()
        return self.items.pop()


PLAIN = (type(None), bool, int, float, str)


def encode(x):
    """Harness value -> wire. Only plain data and handles cross; never harness objects."""
    t = type(x)
    if t is int and not -(1 << 62) < x < (1 << 62):
        return ["i", hex(x)]
    if t in PLAIN:
        return x
    if t is Proxy:
        return ["h", x._s3ft_id]
    if t is list:
        return ["l", [encode(v) for v in x]]
    if t is tuple:
        return ["t", [encode(v) for v in x]]
    if t is set:
        return ["s", [encode(v) for v in x]]
    if t is frozenset:
        return ["fs", [encode(v) for v in x]]
    if t is dict:
        return ["d", [[encode(k), encode(v)] for k, v in x.items()]]
    if t is bytes:
        return ["b", x.hex()]
    if t is bytearray:
        return ["ba", x.hex()]
    if t is complex:
        return ["c", x.real, x.imag]
    if t is range:
        return ["r", x.start, x.stop, x.step]
    if t is types.ModuleType:
        return ["m", x.__name__, 0]
    if t is RemoteIterator and not x.items and x.state is False:
        return ["h", x.proxy._s3ft_id]
    if hasattr(t, "__next__") and hasattr(t, "__iter__") and t.__module__ in ("builtins", "itertools"):
        return ["it", [encode(v) for v in x]]
    ref = reference(x)
    if ref is not None:
        return ["ref"] + ref
    raise TypeError("cannot pass a %s from a test to the program" % t.__name__)


def reference(x):
    """[module, qualname] naming a stdlib class/function (int, str.upper, math.sqrt), or None."""
    module, qualname = getattr(x, "__module__", None), getattr(x, "__qualname__", None)
    if type(module) is not str or type(qualname) is not str or "<" in qualname:
        return None
    if module != "builtins" and local_module(module) is None:
        return None
    found = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return [module, qualname] if found is x else None


def decode(v):
    """Wire -> harness value, checking every piece the worker sent."""
    t = type(v)
    if t in PLAIN:
        return v
    if t is not list or not v or type(v[0]) is not str:
        RPC.protocol("malformed value")
    tag, n = v[0], len(v)
    try:
        if tag in ("l", "t", "s", "fs", "it") and n == 2 and type(v[1]) is list:
            items = [decode(x) for x in v[1]]
            return {"l": list, "t": tuple, "s": set, "fs": frozenset, "it": iter}[tag](items)
        if tag == "d" and n == 2 and type(v[1]) is list:
            out = {}
            for pair in v[1]:
                if type(pair) is not list or len(pair) != 2:
                    RPC.protocol("malformed dict")
                out[decode(pair[0])] = decode(pair[1])
            return out
        if tag == "i" and n == 2 and type(v[1]) is str and len(v[1]) < MAX_MSG:
            return int(v[1], 16)
        if tag in ("b", "ba") and n == 2 and type(v[1]) is str:
            return (bytes if tag == "b" else bytearray).fromhex(v[1])
        if tag == "c" and n == 3 and type(v[1]) in (int, float) and type(v[2]) in (int, float):
            return complex(v[1], v[2])
        if tag == "r" and n == 4 and all(type(x) is int for x in v[1:]):
            return range(v[1], v[2], v[3])
        if tag == "h" and n == 3 and type(v[1]) is int and type(v[2]) is str:
            return Proxy(v[1], v[2][:200])
        if tag == "m" and n == 3 and type(v[2]) is int:
            module = local_module(v[1])
            return module if module is not None else Proxy(v[2], "module")
    except WorkerGone:
        raise
    except (TypeError, ValueError) as exc:
        RPC.protocol("bad value: %s" % exc)
    RPC.protocol("malformed value")


GOT = "__s3ft_got__"


def with_got(src):
    """`assert a == b` -> `got = a; assert got == b`: same evaluation order, and the failure
    detail can show what the program returned."""
    tree = ast.parse(src)
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
        test = tree.body[0].test
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            keep = tree.body[0]
            grab = ast.Assign(targets=[ast.Name(GOT, ast.Store())], value=test.left)
            test.left = ast.Name(GOT, ast.Load())
            tree.body = [grab, keep]
            return ast.fix_missing_locations(tree)
    return tree


def global_names(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def describe(exc):
    remote = getattr(exc, "s3ft_remote", None)
    if remote:
        return "raised " + remote
    text = str(exc)
    return "%s%s" % (type(exc).__name__, ": " + text if text else "")


def judge(job, rpc):
    global RPC
    RPC = rpc
    tests = job["tests"]
    if not tests:
        return "error", "no tests to run", 0
    compiled = []
    for i, src in enumerate(tests):
        try:
            compiled.append(compile(with_got(src), "<test %d>" % (i + 1), "exec", dont_inherit=True, optimize=0))
        except (SyntaxError, ValueError) as exc:
            return "error", "test %d does not compile: %s" % (i + 1, exc), 0
    try:
        rpc.request("load", job["program"], job["setup"])
    except WorkerGone:
        status, detail = rpc.dead
        return ("error" if status in ("exited", "failed") else status), detail + " while loading the program", 0
    except Exception as exc:
        return "error", "program failed to load: " + describe(exc), 0
    env = {"__builtins__": builtins, "__name__": "__test__"}
    provided, assigned = {}, set()  # names from the program / names the tests themselves bound
    for i, (src, code) in enumerate(zip(tests, compiled)):
        where = "test %d (%s)" % (i + 1, " ".join(src.split())[:200])
        try:
            env.pop(GOT, None)
            wanted = sorted(n for n in global_names(code) if n not in assigned and n != GOT)
            found = rpc.request("lookup", wanted) if wanted else {}
            if type(found) is not dict:
                rpc.protocol("malformed lookup reply")
            injected = {name: decode(found[name]) for name in wanted if name in found}
            env.update(injected)
            provided.update(injected)
            exec(code, env)
            if rpc.dead is not None:
                raise WorkerGone(rpc.dead[1])
            for name, value in env.items():
                if name not in ("__builtins__", "__name__", GOT) and value is not provided.get(name, provided):
                    assigned.add(name)
        except WorkerGone:
            status, detail = rpc.dead
            return ("failed" if status == "exited" else status), "%s during %s" % (detail, where), i
        except AssertionError as exc:
            got = ""
            if GOT in env:
                try:
                    got = "; got " + repr(env[GOT])[:300]
                except BaseException:
                    pass
            return "failed", "failed: %s%s%s" % (where, ": " + str(exc) if str(exc) else "", got), i
        except BaseException as exc:
            if rpc.dead is not None:
                status, detail = rpc.dead
                return ("failed" if status == "exited" else status), "%s during %s" % (detail, where), i
            return "failed", "%s %s" % (where, describe(exc)), i
    return "passed", "%d/%d tests passed" % (len(tests), len(tests)), len(tests)


# ----------------------------------------------------------------------------- W: the worker

def worker(req_r, resp_w):
    os.setsid()  # kill(0, ...) must not reach H0, which shares our original process group
    os.dup2(req_r, 3)
    os.dup2(resp_w, 4)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(5, 1 << 20)  # the job pipe, the verdict channel, the parent's stderr: gone
    for fd in (3, 4):
        os.set_inheritable(fd, False)
    cpu = int(math.ceil(CFG["timeout"])) + 1
    for limit, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                         (resource.RLIMIT_AS, (CFG["memory_mb"] << 20,) * 2),
                         (resource.RLIMIT_NPROC, (CFG["nproc"],) * 2),
                         (resource.RLIMIT_NOFILE, (CFG["nofile"],) * 2),
                         (resource.RLIMIT_FSIZE, (CFG["fsize_mb"] << 20,) * 2),
                         (resource.RLIMIT_CORE, (0, 0)), (resource.RLIMIT_MSGQUEUE, (0, 0))):
        resource.setrlimit(limit, value)
    try:
        sys.set_int_max_str_digits(0)
    except AttributeError:
        pass
    serve(3, 4)


def serve(rfd, wfd):
    objs, ids = {}, {}
    module = types.ModuleType("solution")
    sys.modules["solution"] = module
    ns = module.__dict__

    def handle(x):
        hid = ids.get(id(x))
        if hid is None or objs[hid] is not x:
            hid = len(objs) + 1
            objs[hid] = x
            ids[id(x)] = hid
        return hid

    def enc(x):
        t = type(x)
        if t is int and not -(1 << 62) < x < (1 << 62):
            return ["i", hex(x)]
        if x is None or t in (bool, int, float, str):
            return x
        if t is list:
            return ["l", [enc(v) for v in x]]
        if t is tuple:
            return ["t", [enc(v) for v in x]]
        if t is set:
            return ["s", [enc(v) for v in x]]
        if t is frozenset:
            return ["fs", [enc(v) for v in x]]
        if t is dict:
            return ["d", [[enc(k), enc(v)] for k, v in x.items()]]
        if t is bytes:
            return ["b", x.hex()]
        if t is bytearray:
            return ["ba", x.hex()]
        if t is complex:
            return ["c", x.real, x.imag]
        if t is range:
            return ["r", x.start, x.stop, x.step]
        if t is types.ModuleType:
            return ["m", str(getattr(x, "__name__", "")), handle(x)]
        return ["h", handle(x), t.__qualname__]

    def value(x):
        try:
            return enc(x)
        except RecursionError:  # self-referencing containers stay in the worker
            return ["h", handle(x), type(x).__qualname__]

    def dec(v):
        if type(v) is list:
            tag = v[0]
            if tag in ("l", "t", "s", "fs", "it"):
                return {"l": list, "t": tuple, "s": set, "fs": frozenset, "it": iter}[tag](dec(x) for x in v[1])
            if tag == "d":
                return {dec(k): dec(x) for k, x in v[1]}
            if tag == "i":
                return int(v[1], 16)
            if tag == "b":
                return bytes.fromhex(v[1])
            if tag == "ba":
                return bytearray.fromhex(v[1])
            if tag == "c":
                return complex(v[1], v[2])
            if tag == "r":
                return range(v[1], v[2], v[3])
            if tag == "h":
                return objs[v[1]]
            if tag == "m":
                return objs[v[2]] if v[2] in objs else importlib.import_module(v[1])
            if tag == "ref":
                found = importlib.import_module(v[1])
                for part in v[2].split("."):
                    found = getattr(found, part)
                return found
        return v

    def excinfo(exc):
        try:
            message = str(exc)[:2000]
        except BaseException:
            message = "<unprintable>"
        t = type(exc)
        return [str(getattr(t, "__qualname__", "?")), str(getattr(t, "__module__", "?")), message]

    ops = {"call": lambda f, *a, **k: f(*a, **k), "getattr": getattr, "setattr": setattr,
           "delattr": delattr, "getitem": operator.getitem, "setitem": operator.setitem,
           "delitem": operator.delitem, "contains": operator.contains, "len": len, "bool": bool,
           "hash": hash, "iter": iter, "repr": repr, "str": str, "format": format, "int": int,
           "float": float, "complex": complex, "index": operator.index, "round": round,
           "reversed": reversed, "abs": abs, "neg": operator.neg, "pos": operator.pos,
           "invert": operator.invert, "trunc": math.trunc, "floor": math.floor, "ceil": math.ceil,
           "divmod": divmod, "pow": pow}
    for name in ("eq", "ne", "lt", "le", "gt", "ge", "add", "sub", "mul", "matmul", "truediv",
                 "floordiv", "mod", "lshift", "rshift", "and_", "or_", "xor"):
        ops[name] = getattr(operator, name)

    def read(n):
        data = b""
        while len(data) < n:
            chunk = os.read(rfd, n - len(data))
            if not chunk:
                os._exit(0)
            data += chunk
        return data

    def send(msg):
        try:
            data = json.dumps(msg).encode("ascii")
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            data = json.dumps([msg[0], "exc"] + excinfo(exc)).encode("ascii")
        data = struct.pack(">I", len(data)) + data
        while data:
            data = data[os.write(wfd, data):]

    while True:
        (n,) = struct.unpack(">I", read(4))
        req = json.loads(read(n))
        seq, kind = req[0], req[1]
        try:
            if kind == "load":
                exec(compile(req[2], "<program>", "exec", dont_inherit=True), ns)
                if req[3].strip():
                    exec(compile(req[3], "<setup>", "exec", dont_inherit=True), ns)
                result = None
            elif kind == "lookup":
                result = {name: value(ns[name]) for name in req[2] if name in ns}
            elif kind == "op":
                result = value(ops[req[2]](*[dec(a) for a in req[3]], **{k: dec(a) for k, a in req[4].items()}))
            elif kind == "next":
                it, items, state = objs[req[2]], [], "more"
                for _ in range(req[3]):
                    try:
                        items.append(value(next(it)))
                    except StopIteration:
                        state = "stop"
                        break
                    except BaseException as exc:
                        state = excinfo(exc)
                        break
                result = [items, state]
            else:
                raise ValueError("unknown request %r" % (kind,))
        except BaseException as exc:
            send([seq, "exc"] + excinfo(exc))
        else:
            send([seq, "ok", result])


# ----------------------------------------------------------------------------- the launcher

def zygote(sock_fd):
    """Forks one H0 per job: the interpreter starts and imports once, not once per program.

    Requests come from the judge over a SEQPACKET socket, with the job's stdin, stdout and
    stderr descriptors attached (SCM_RIGHTS): the program and its tests go straight from the
    judge to the job's stdin and never pass through here. Replies: the job's pid, then its exit
    status. Never runs untrusted code; exits when the judge closes the socket.
    """
    global CFG
    sock = socket.socket(fileno=sock_fd)
    children = {}  # pidfd -> (job id, pid)
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    as_root = root_mode()
    prepare_error = None
    try:
        prepare()
    except BaseException as exc:
        prepare_error = "sandbox launcher cannot prepare: %r" % (exc,)
    import gc
    gc.collect()
    gc.freeze()  # forked jobs then do not copy the whole heap when their collector runs
    while True:
        for item, _ in poller.poll():
            if item == sock_fd:
                try:
                    msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
                except OSError:
                    os._exit(0)
                if not msg:
                    os._exit(0)
                req = json.loads(msg)
                if req["op"] == "spawn":
                    if len(fds) != 3:
                        for fd in fds:
                            os.close(fd)
                        sock.send(json.dumps({"id": req["id"], "exit": 125}).encode())
                        continue
                    sync = (os.pipe(), os.pipe()) if as_root else None
                    pid = os.fork()
                    if pid == 0:
                        try:
                            os.setsid()
                            for target, fd in enumerate(fds):
                                os.dup2(fd, target)
                            if prepare_error:
                                die(prepare_error)
                            keep = []
                            if sync:  # to fds 3 and 4, via high numbers so that nothing collides
                                high = [fcntl.fcntl(sync[0][1], fcntl.F_DUPFD, 100), fcntl.fcntl(sync[1][0], fcntl.F_DUPFD, 100)]
                                keep = [os.dup2(high[0], 3), os.dup2(high[1], 4)]
                            os.closerange(3 + len(keep), 1 << 20)  # the judge socket, other jobs' fds
                            CFG = req["cfg"]
                            h0(keep or None)
                        except BaseException as exc:
                            die("sandbox launcher: %r" % (exc,))
                        os._exit(SETUP_FAILED)
                    for fd in fds:
                        os.close(fd)
                    if sync:
                        (ask_r, ask_w), (ans_r, ans_w) = sync
                        os.close(ask_w)
                        os.close(ans_r)
                        waiter = select.poll()
                        waiter.register(ask_r, select.POLLIN)
                        if waiter.poll(10000) and os.read(ask_r, 1) == b"u":
                            try:
                                write_id_maps(pid, int(req["cfg"]["uid"]), int(req["cfg"]["gid"]))
                                reply = b"k"
                            except OSError as exc:
                                reply = ("writing uid/gid maps failed: %s" % exc).encode()[:300]
                            try:
                                os.write(ans_w, reply)
                            except OSError:
                                pass
                        os.close(ask_r)
                        os.close(ans_w)
                    pidfd = os.pidfd_open(pid)
                    children[pidfd] = (req["id"], pid)
                    poller.register(pidfd, select.POLLIN)
                    sock.send(json.dumps({"id": req["id"], "pid": pid}).encode())
                elif req["op"] == "kill":
                    for job, pid in children.values():
                        if job == req["id"]:
                            try:
                                os.killpg(pid, signal.SIGKILL)  # H0 and H1; the rest dies with H1
                            except OSError:
                                pass
            elif item in children:
                job, pid = children.pop(item)
                poller.unregister(item)
                os.close(item)
                _, status = os.waitpid(pid, 0)
                sock.send(json.dumps({"id": job, "exit": os.waitstatus_to_exitcode(status)}).encode())


if __name__ == "__main__":
    zygote(int(sys.argv[1]))
'''


# ---------------------------------------------------------------------------------------------
# The parent side.


def _child_env() -> dict[str, str]:
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


def _config(timeout_s: float, memory_mb: int) -> dict:
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


def _interpreter_command() -> list[str]:
    # The isolation of `-I`, spelled out: -s (no user site), -S (no site-packages at all),
    # -B (no .pyc writes), -P (no script directory on sys.path; the harness also scrubs it for
    # Python 3.10, which lacks -P). -E is left out on purpose: the
    # environment is ours entirely (see _child_env), and PYTHONHASHSEED=0 must apply so that a
    # program's set/dict order, and thus its verdict, is reproducible.
    flags = ["-s", "-S", "-B"] + (["-P"] if sys.version_info >= (3, 11) else [])
    return [sys.executable, *flags, "-c", _HARNESS]


class _Launcher:
    """The parent's end of the zygote (see `zygote` in the harness): spawn, kill, wait."""

    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                _interpreter_command() + [str(child.fileno())],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_child_env(),
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
_launcher: _Launcher | None = None


def _get_launcher() -> _Launcher:
    global _launcher
    with _launcher_lock:
        if _launcher is None or not _launcher.alive():
            _launcher = _Launcher()
        return _launcher


def _exchange(stdin_w: int, payload: bytes, out_r: int, err_r: int, deadline: float) -> tuple[bytes, bytes, bool]:
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


def _execute(program: str, tests: Sequence[str], setup_code: str, timeout_s: float, memory_mb: int) -> CodeResult:
    if isinstance(tests, str):
        raise TypeError("tests must be a list of test strings, not one string")
    tests = [str(t) for t in tests]
    result = _execute_once(program, tests, setup_code, timeout_s, memory_mb)
    if result is None:  # the launcher died before starting the job: nothing ran, run it again
        result = _execute_once(program, tests, setup_code, timeout_s, memory_mb)
    if result is None:
        raise SandboxUnavailable("code sandbox unavailable: the sandbox launcher keeps dying")
    return result


def _execute_once(
    program: str, tests: list[str], setup_code: str, timeout_s: float, memory_mb: int
) -> CodeResult | None:
    nonce = secrets.token_hex(16)
    payload = json.dumps(
        {"nonce": nonce, "program": _normalise(program), "setup": _normalise(setup_code or ""), "tests": tests}
    ).encode("ascii")
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        for attempt in range(2):  # a launcher that died since the last job is replaced once
            launcher = _get_launcher()
            try:
                job = launcher.spawn(_config(timeout_s, memory_mb), [stdin_r, out_w, err_w])
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
    out, err, finished = _exchange(stdin_w, payload, out_r, err_r, time.monotonic() + timeout_s + HARD_KILL_GRACE_S)
    if not finished:
        launcher.kill(job)
        launcher.wait(job, 10.0)
        return CodeResult(False, "timeout", f"exceeded the {timeout_s:g}s time limit (killed by the judge)")
    verdict = _parse_verdict(out, nonce, len(tests))
    returncode, started = launcher.wait(job, 0.0 if verdict is not None else 10.0)
    if verdict is not None:
        return verdict
    if returncode is None and not started and not launcher.alive():
        return None
    message = err.decode("utf-8", "replace").strip()
    setup_lines = [ln for ln in message.splitlines() if ln.startswith("S3FT-SANDBOX-SETUP-FAILED: ")]
    if returncode == _SETUP_FAILED and setup_lines:
        raise SandboxUnavailable("code sandbox unavailable: " + setup_lines[-1].split(": ", 1)[1])
    if returncode is None and not launcher.alive():
        return CodeResult(False, "error", "the sandbox launcher died while the job ran")
    if returncode == 124:
        return CodeResult(False, "timeout", f"exceeded the {timeout_s:g}s time limit")
    return CodeResult(False, "error", _short(f"sandbox harness exited with status {returncode}: {message[-400:]}"))


def _parse_verdict(out: bytes, nonce: str, n_tests: int) -> CodeResult | None:
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
    return CodeResult(passed, status, _short(str(verdict.get("detail", ""))))


# ---------------------------------------------------------------------------------------------
# The self-check.

_PROBE_PROGRAM = r'''
import ctypes, os, resource, socket

def sandbox_problems():
    problems = []
    for path in ("/s3ft-probe", "/usr/s3ft-probe", "/etc/s3ft-probe", "/root/s3ft-probe",
                 os.path.join(os.path.dirname(os.__file__), "s3ft-probe"), "/proc/sys/kernel/s3ft-probe",
                 "/proc/sys/kernel/core_pattern"):
        try:
            with open(path, "a"):
                pass
            problems.append("could write " + path)
        except OSError:
            pass
    try:
        with open("probe.txt", "w") as f:
            f.write("ok")
    except OSError as exc:
        problems.append("working directory not writable: %s" % exc)
    if os.getcwd() != "/tmp/work":
        problems.append("unexpected working directory " + os.getcwd())
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(1)
        s.connect(("1.1.1.1", 53))
        problems.append("network reachable")
    except OSError:
        pass
    with open("/proc/net/dev") as f:
        devices = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    if devices != ["lo"]:
        problems.append("network devices %s" % devices)
    for family in (socket.AF_UNIX, getattr(socket, "AF_VSOCK", 40), socket.AF_NETLINK):
        try:
            socket.socket(family, socket.SOCK_STREAM if family != socket.AF_NETLINK else socket.SOCK_RAW).close()
            problems.append("socket family %d allowed" % family)
        except OSError:
            pass
    if os.getpid() != 2 or os.getppid() != 1:
        problems.append("not in a private PID namespace (pid %d)" % os.getpid())
    if len([p for p in os.listdir("/proc") if p.isdigit()]) > 4:
        problems.append("/proc shows other processes")
    with open("/proc/self/uid_map") as f:
        inside, outside, count = f.read().split()
    if count != "1" or (ROOT_MODE and outside == "0"):  # as root, never root of the parent namespace
        problems.append("uid map %s %s %s" % (inside, outside, count))
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            status[key] = val.strip()
    for key, want in (("CapEff", "0000000000000000"), ("CapPrm", "0000000000000000"),
                      ("CapBnd", "0000000000000000"), ("NoNewPrivs", "1"), ("Seccomp", "2")):
        if status.get(key) != want:
            problems.append("%s is %s" % (key, status.get(key)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) == 0:
        problems.append("could create a user namespace")
    try:
        with open("/proc/1/environ", "rb") as f:
            f.read()
        problems.append("harness memory readable")
    except OSError:
        pass
    extra = set(os.environ) - {"PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED", "LC_CTYPE"}
    if extra:
        problems.append("environment has %s" % sorted(extra))
    for limit in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE):
        if resource.getrlimit(limit)[0] == resource.RLIM_INFINITY:
            problems.append("rlimit %d not set" % limit)
    return problems
'''

def _root_mode() -> bool:
    """Root of the parent user namespace (the harness's `root_mode`): the sandbox then runs as 65534."""
    if os.geteuid() != 0:
        return False
    with open("/proc/self/uid_map") as f:
        for line in f:
            first, outside, count = (int(x) for x in line.split())
            if first <= 0 < first + count:
                return outside - first == 0
    return False


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
    if machine not in _SUPPORTED_MACHINES:
        raise SandboxUnavailable(f"code sandbox unavailable: no seccomp policy for {machine} (x86_64, aarch64)")
    if not sys.executable or not os.path.exists(sys.executable):
        raise SandboxUnavailable("code sandbox unavailable: sys.executable is not set")
    result = _execute(_PROBE_PROGRAM, ["assert sandbox_problems() == []"], f"ROOT_MODE = {_root_mode()}", 20.0, 512)
    if not result.passed:
        raise SandboxUnavailable(_short("code sandbox unavailable: isolation probe failed: " + result.detail, 300))
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
