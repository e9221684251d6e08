"""Process settings that only take effect when the interpreter starts: the CLI re-executes
itself once to apply them.

glibc's malloc serves each allocation above 32 MB with a fresh `mmap` and unmaps it on free.
XLA's CPU runtime allocates an executable's temporary memory once per run (over a gigabyte
for a SmolLM2-135M training step), so every step faulted in hundreds of thousands of new
4 KiB pages, seconds of kernel time. glibc >= 2.35 reads the tunable
`glibc.malloc.hugetlb=1`, which makes malloc ask for transparent huge pages on those
mappings: far fewer faults and a faster step (docs/performance.md). Tunables are read once,
at process start, hence the re-exec. `S3FT_HUGEPAGES=0` turns this off.
"""

from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
_REEXEC_MARK = "_S3FT_REEXECUTED"  # set in the child: never re-exec twice
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):
        return None


def _transparent_huge_pages() -> bool:
    """True unless the kernel has them off ("[never]") or does not say."""
    try:
        with open(_THP_SETTING) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def applicable(environ: dict | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if environ.get("S3FT_HUGEPAGES", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    version = _glibc_version()
    return version is not None and version >= (2, 35) and _transparent_huge_pages()


def tuned_environ(environ: dict | None = None) -> dict:
    """A copy of `environ` (default: this process's) with the malloc tunable added where it
    applies; other tunables already there are kept."""
    env = dict(os.environ if environ is None else environ)
    if not applicable(env):
        return env
    current = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb=" not in current:
        env["GLIBC_TUNABLES"] = f"{current}:{TUNABLE}" if current else TUNABLE
    return env


def reexec_tuned() -> None:
    """Replace this process with the same command under `tuned_environ()`, if that differs.

    Call it first thing in a command-line entry point, before any thread or file exists:
    `exec` keeps the open standard streams and the arguments, nothing else.
    """
    if os.environ.get(_REEXEC_MARK) or not getattr(sys, "orig_argv", None):
        return
    env = tuned_environ()
    if env.get("GLIBC_TUNABLES") == os.environ.get("GLIBC_TUNABLES"):
        return
    env[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:
        return  # cannot re-exec (odd interpreter setup): run untuned rather than fail
