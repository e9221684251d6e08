"""H0, one per job: new namespaces, the sandbox's mounts, then H1; kills H1 past its deadline.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
Forked by the zygote with the job's stdin/stdout/stderr on fds 0-2 and `kernel.CFG` filled in.
Builds the filesystem view (everything read-only later, in H1; masks over /root, /home, $HOME,
/run; a private /tmp and /dev/shm; a /dev with harmless devices only; the interpreter's
directories bound back wherever they are hidden, /tmp included), forks H1 as PID 1 of the
new PID namespace, and waits: H1 has its own deadline, this is the second line of defence.
"""

import os
import select
import signal
import sys

from .kernel import (
    CFG,
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    NAMESPACE_FLAGS,
    SETUP_FAILED,
    die,
    errtext,
    libc,
    mount,
    outside_id,
    root_mode,
    under,
    write_id_maps,
)
from .pid1 import h1

DEVICES = ("null", "zero", "full", "random", "urandom")
SCRATCH = "/tmp"  # the sandbox's private, writable tmpfs (see scaffold_of for what else it shows)
WORKDIR = SCRATCH + "/work"  # the program's working directory and $HOME


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


def scaffold_of(p):
    """The directory under the private /tmp whose read-only tmpfs holds `p`, an exposed path under /tmp.

    The private /tmp hides the host's /tmp, so an interpreter or venv there (a `mktemp -d`
    checkout) is bound back into it; the directories leading to it live on a small tmpfs of
    their own, which H1 leaves read-only: they are not scratch space, and the program cannot
    write beside the host files it is shown. /tmp/work is the program's writable working
    directory, so a path below it gets its scaffold one level deeper."""
    parts = p[len(SCRATCH) + 1:].split("/")
    top = SCRATCH + "/" + parts[0]
    return top + "/" + parts[1] if top == WORKDIR else top


def unexposable(expose):
    """Why the interpreter cannot be shown inside the sandbox, or None: the sandbox mounts its
    own /tmp/work, /dev and /proc over the host's, so its directories cannot live there."""
    for p in expose:
        if under(WORKDIR, p) or any(under(p, own) for own in ("/dev", "/proc")):
            return ("the interpreter's directory %s is /tmp or /tmp/work or lies under /dev or /proc, which "
                    "the sandbox replaces with its own; use a Python (or venv) installed elsewhere" % p)
    return None


def masked_paths(expose, as_other_uid, requested):
    """Mount points of empty tmpfs, outermost only: the `requested` directories, the scaffold of
    every exposed path under /tmp and, `as_other_uid`, the first ancestor of an exposed path
    that the sandbox uid may not traverse (e.g. /root). The exposed paths are bound back in."""
    masks = set()
    for m in requested:
        if not m or not os.path.isabs(m):
            continue
        m = os.path.realpath(m)
        # /tmp, /dev and /proc get their own mounts below.
        if m != "/" and os.path.isdir(m) and not any(under(m, top) for top in (SCRATCH, "/dev", "/proc")):
            masks.add(m)
    for p in expose:
        if under(p, SCRATCH):
            # The private /tmp hides it (however traversable on the host): bind it into a scaffold.
            masks.add(scaffold_of(p))
        elif as_other_uid:
            # The sandbox uid may not traverse e.g. /root: hide the first such ancestor, re-expose below.
            cur = ""
            for part in p.strip("/").split("/"):
                cur += "/" + part
                if not os.stat(cur).st_mode & 0o001:
                    masks.add(cur)
                    break
    return sorted(m for m in masks if not any(q != m and under(m, q) for q in masks))


def h0(sync=None):
    """`sync`: in root mode, a pipe pair to the zygote, which writes our uid/gid maps."""
    as_root = root_mode()
    uid, gid = (CFG["uid"], CFG["gid"]) if as_root else (os.geteuid(), os.getegid())
    if as_root and (outside_id("uid", uid) is None or outside_id("gid", gid) is None):
        die("running as root, but uid/gid %d is not mapped in this user namespace, so the sandbox "
            "could only run as root; run the judge as an unprivileged user" % uid)
    expose = exposed_paths()
    why = unexposable(expose)
    if why:
        die(why)
    masks = masked_paths(expose, as_root, CFG["masks"])
    if as_root:
        try:
            os.setgroups([])  # no supplementary group (gid 0...) may follow us into the sandbox
        except OSError as exc:
            die("cannot drop supplementary groups: %s" % exc)
    if libc.unshare(NAMESPACE_FLAGS) != 0:
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
    mount("tmpfs", SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=%dm,nr_inodes=8192" % mb)
    os.mkdir(WORKDIR, 0o755)
    # A minimal /dev: a few harmless character devices bound from the host, nothing else. Built
    # before the masks, so that its staging directory cannot meet a scaffold in /tmp.
    stage = SCRATCH + "/.s3ft-dev"
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
    for m in masks:
        if under(m, SCRATCH):
            os.makedirs(m, 0o755, exist_ok=True)  # a scaffold's mount point, in the private /tmp
        mount("tmpfs", m, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m,nr_inodes=512")
    for p, fd in expose_fds:
        # Every exposed path under /tmp is under its scaffold, so this binds all of those too.
        if any(under(p, m) for m in masks):
            os.makedirs(p, exist_ok=True)
            mount("/proc/self/fd/%d" % fd, p, None, MS_BIND | MS_REC)
        os.close(fd)

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
