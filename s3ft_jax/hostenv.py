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

import glob
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


# libtpu, when installed (the plan and test extras), looks for TPU metadata as soon as JAX
# starts its backends, and on a host without a TPU prints its failures first ("Failed to find
# host bounds", "could not determine TPU worker hostnames", an INVALID_ARGUMENT log line).
# These settings answer its questions for a host that has none; `s3ft plan` compiles for a
# slice with them. A real TPU host is left alone.
NO_TPU_SETTINGS = {
    "TPU_SKIP_MDS_QUERY": "1", "TPU_ACCELERATOR_TYPE": "v5litepod-8", "TPU_WORKER_HOSTNAMES": "localhost",
    "TPU_WORKER_ID": "0", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
}  # fmt: skip


def has_tpu() -> bool:
    """A TPU chip on this host: /dev/accel* (v2 to v5e) or a VFIO device (v5p, v6e)."""
    vfio = [p for p in glob.glob("/dev/vfio/*") if os.path.basename(p) != "vfio"]
    return bool(glob.glob("/dev/accel*") or vfio)


def quiet_libtpu(environ=None, *, tpu: bool | None = None) -> bool:
    """Give libtpu the settings of a TPU-less host (kept where already set), unless this host
    has a TPU. Before JAX starts its backends: at the package's import. True when applied."""
    environ = os.environ if environ is None else environ
    if has_tpu() if tpu is None else tpu:
        return False
    for key, value in NO_TPU_SETTINGS.items():
        environ.setdefault(key, value)
    return True
