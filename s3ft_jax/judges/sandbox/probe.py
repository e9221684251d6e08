"""The isolation probe: a program `check_sandbox` runs in the sandbox like any untrusted one.

Its test is `assert sandbox_problems() == []`; the judge's setup code sets ROOT_MODE (whether
the judge is root of its user namespace, `kernel.root_mode`), the only thing the probe cannot
see from inside. Every check is a breakout or leak the sandbox must prevent. Standard library
only (it runs in the isolated interpreter); importing it does nothing.
"""

import ctypes
import os
import resource
import socket
import sys

ROOT_MODE = False  # replaced by the judge's setup code


def sandbox_problems():
    problems = []
    # The interpreter's bin and the folder above it (a venv's root): bound into the private /tmp
    # when they live in /tmp, where they must stay read-only all the same.
    interpreter = os.path.dirname(sys.executable)
    for path in ("/s3ft-probe", "/usr/s3ft-probe", "/etc/s3ft-probe", "/root/s3ft-probe",
                 os.path.join(os.path.dirname(os.__file__), "s3ft-probe"), "/proc/sys/kernel/s3ft-probe",
                 "/proc/sys/kernel/core_pattern", os.path.join(interpreter, "s3ft-probe"),
                 os.path.join(os.path.dirname(interpreter), "s3ft-probe")):
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
