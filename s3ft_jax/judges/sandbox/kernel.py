"""The harness's ground floor: the job's limits, how setup fails, and the libc calls it needs.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
Python 3.11 has no `os.unshare` or `os.mount`: namespaces, mounts and prctl go through ctypes.
Importing this module only binds libc; it changes nothing.
"""

import ctypes
import errno
import os
import sys

CFG = {}  # the job's limits (see the launcher's `job_config`), filled in each forked job process
SETUP_FAILED = 3  # exit status of a harness that could not build the sandbox
SETUP_FAILED_MARKER = "S3FT-SANDBOX-SETUP-FAILED: "  # starts the one stderr line that says why

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
NAMESPACE_FLAGS = (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
                   | CLONE_NEWCGROUP)
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 8192, 16384, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE = 442, -100, 0x8000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_READ, PR_CAPBSET_DROP = 1, 4, 23, 24
PR_SET_SECCOMP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 22, 28, 38, 47

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.unshare.argtypes = [ctypes.c_int]
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def die(msg):
    try:
        os.write(2, (SETUP_FAILED_MARKER + "%s\n" % msg).encode("utf-8", "replace"))
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


def no_int_digit_limit():
    # Python 3.11 refuses int <-> str beyond 4300 digits; programs and tests may need more
    # (3.10 has no limit and no setter).
    try:
        sys.set_int_max_str_digits(0)
    except AttributeError:
        pass


def under(path, top):
    return path == top or path.startswith(top.rstrip("/") + "/")


# ----------------------------------------------------------------------------- user ids

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
    """True when we are root of the parent namespace: the sandbox must then use another uid.

    The judge asks the same question (its probe checks that the sandbox is not root then)."""
    return os.geteuid() == 0 and outside_id("uid", 0) == 0
