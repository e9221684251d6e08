"""Unit tests of the code sandbox's parts, outside any sandbox (tests/test_code_judge.py runs it whole).

The harness modules are imported here as ordinary modules: the wire format between H1 and the
worker, the seccomp filter (assembled, never installed, and run through a small BPF
interpreter), how tests find the program's names, and the rule that the harness imports only
the standard library.
"""

from __future__ import annotations

import ast
import ctypes
import errno
import json
import math
import os
import struct
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from s3ft_jax.judges.sandbox import boot, channel, judging, kernel, lockdown, namespaces, proxies
from s3ft_jax.judges.sandbox.launcher import HARNESS_MODULES, harness_sources, interpreter_command

pytestmark = pytest.mark.fast  # `make test-fast`

REPO = Path(__file__).resolve().parents[1]
SANDBOX = REPO / "s3ft_jax" / "judges" / "sandbox"
JUDGE_SIDE = {"__init__", "outcome", "launcher", "execute"}  # run in the judge's process
ISOLATED = set(HARNESS_MODULES) | {"boot", "probe"}  # run in the isolated interpreter


# ---------------------------------------------------------------------------------------------
# What the isolated interpreter is given.


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(level, module, names) for every import statement anywhere in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(0, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or "", [alias.name for alias in node.names]))
    return found


def test_every_sandbox_file_is_either_judge_side_or_isolated():
    files = {path.stem for path in SANDBOX.glob("*.py")}
    assert files == JUDGE_SIDE | ISOLATED, files ^ (JUDGE_SIDE | ISOLATED)
    assert not JUDGE_SIDE & ISOLATED


@pytest.mark.parametrize("name", sorted(ISOLATED))
def test_isolated_files_import_only_the_standard_library(name):
    earlier = HARNESS_MODULES[: HARNESS_MODULES.index(name)] if name in HARNESS_MODULES else ()
    for level, module, names in _imports(SANDBOX / f"{name}.py"):
        if level == 0:
            assert module.split(".")[0] in sys.stdlib_module_names, f"{name}.py imports {module}"
        else:
            # A sibling harness module, loaded before this one (boot executes them in order).
            assert level == 1, f"{name}.py: relative import of level {level}"
            siblings = [module] if module else names
            assert siblings and all(s in earlier for s in siblings), f"{name}.py imports .{module} {names}"


def test_harness_modules_show_no_sign_of_the_repository():
    for name in ISOLATED:
        text = (SANDBOX / f"{name}.py").read_text(encoding="utf-8")
        assert "s3ft_jax" not in text, name
        assert text.isascii(), name  # passed as command-line arguments, whatever the locale


def test_interpreter_command_hands_over_the_files_as_they_are():
    command = interpreter_command(7)
    flags = ["-s", "-S", "-B"] + (["-P"] if sys.version_info >= (3, 11) else [])
    assert command[: 2 + len(flags)] == [sys.executable, *flags, "-c"]
    assert command[2 + len(flags)] == (SANDBOX / "boot.py").read_text(encoding="utf-8")
    assert command[3 + len(flags)] == "7"
    pairs = command[4 + len(flags) :]
    assert pairs[0::2] == list(HARNESS_MODULES)
    assert pairs[1::2] == [(SANDBOX / f"{name}.py").read_text(encoding="utf-8") for name in HARNESS_MODULES]
    assert harness_sources() is harness_sources()  # read once per process


def test_importing_the_isolated_files_changes_nothing():
    # In a fresh interpreter: no import of a harness module may touch sys.path, argv, the
    # environment, the working directory, signal handlers or open descriptors.
    script = """
import os, signal, sys
def state():
    return (list(sys.path), list(sys.argv), dict(os.environ), os.getcwd(),
            [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)],
            sorted(os.listdir("/proc/self/fd")))
before = state()
import importlib
for name in sys.argv[1:]:
    importlib.import_module("s3ft_jax.judges.sandbox." + name)
after = state()
assert before[:5] == after[:5], (before, after)
assert len(after[5]) == len(before[5]), (before[5], after[5])
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", script, *sorted(ISOLATED)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_boot_loads_the_harness_as_one_package():
    _, modules = harness_sources()
    package = "s3ft_sandbox_unit_test"
    try:
        root = boot.load(zip(modules[0::2], modules[1::2]), package=package)
        assert sys.modules[package] is root
        assert [name for name in HARNESS_MODULES if sys.modules[f"{package}.{name}"] is getattr(root, name)] == list(
            HARNESS_MODULES
        )
        # One CFG dict shared by every module: the zygote fills it in each job process.
        assert root.namespaces.CFG is root.kernel.CFG is root.worker.CFG is root.channel.CFG
        assert root.zygote.h0 is root.namespaces.h0 and root.pid1.judge is root.judging.judge
        assert root.judging.proxies is root.proxies  # not the judge-side copy
    finally:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]


# ---------------------------------------------------------------------------------------------
# Where the interpreter's directories go in the sandbox's mount namespace (H0's plan).


@pytest.fixture
def private_folders():
    """Two `mktemp -d`-like folders (mode 0700): one in /tmp, one in /var/tmp."""
    made = [Path(tempfile.mkdtemp(dir=parent)) for parent in ("/tmp", "/var/tmp")]
    yield made
    for folder in made:
        shutil.rmtree(folder)


def test_paths_under_tmp_are_rebuilt_on_a_scaffold_of_their_own(private_folders):
    in_tmp, _ = private_folders
    venv_bin = in_tmp / "clone" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    # The private /tmp hides the host's: the folder becomes a (read-only) scaffold whether the
    # sandbox uid may traverse it or not, never a mask of a path the private /tmp lacks.
    for as_other_uid in (True, False):
        assert namespaces.masked_paths([str(venv_bin), "/usr"], as_other_uid, []) == [str(in_tmp)]
    assert namespaces.scaffold_of(str(venv_bin)) == str(in_tmp)
    assert namespaces.scaffold_of("/tmp/work/clone/.venv/bin") == "/tmp/work/clone"  # /tmp/work stays writable
    assert namespaces.masked_paths(["/usr"], True, []) == []


def test_requested_masks_and_untraversable_folders_outside_tmp(private_folders):
    in_tmp, in_var_tmp = private_folders
    venv_bin = in_var_tmp / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    # A 0700 folder hides only from another uid; /var/tmp, when asked for, covers it.
    assert namespaces.masked_paths([str(venv_bin)], True, []) == [str(in_var_tmp)]
    assert namespaces.masked_paths([str(venv_bin)], False, []) == []
    assert namespaces.masked_paths([str(venv_bin)], True, ["/var/tmp"]) == ["/var/tmp"]
    # Requests under /tmp, /dev or /proc (which get their own mounts), relative or absent are dropped.
    requested = [str(in_tmp), "/tmp", "/dev/shm", "/proc/sys", "relative", "/", str(in_var_tmp / "absent"), "/etc"]
    assert namespaces.masked_paths(["/usr"], False, requested) == ["/etc"]


@pytest.mark.parametrize("path", ["/tmp", "/tmp/work", "/dev/shm/python", "/proc/self"])
def test_an_interpreter_where_the_sandbox_mounts_its_own_is_refused(path):
    why = namespaces.unexposable(["/usr", path])
    assert why and path in why and "\n" not in why


def test_an_interpreter_elsewhere_is_accepted():
    assert namespaces.unexposable(["/usr", "/tmp/tmp.abc/.venv/bin", "/tmp/work/clone/bin", "/tmp/workshop"]) is None


# ---------------------------------------------------------------------------------------------
# The seccomp filter, run through a classic-BPF interpreter written from linux/filter.h.

EPERM = lockdown.ERRNO | errno.EPERM
ENOSYS = lockdown.ERRNO | errno.ENOSYS
EAFNOSUPPORT = lockdown.ERRNO | errno.EAFNOSUPPORT
# Syscall numbers of ordinary calls, from the kernel's tables (not the harness's).
ORDINARY = {"x86_64": {"read": 0, "write": 1, "openat": 257, "mmap": 9, "exit_group": 231},
            "aarch64": {"read": 63, "write": 64, "openat": 56, "mmap": 222, "exit_group": 94}}


def _run_filter(code, arch_value: int, nr: int, arg0: int = 0) -> int:
    data = struct.pack("<iIQ6Q", nr, arch_value, 0, arg0, 0, 0, 0, 0, 0)  # struct seccomp_data
    acc, pc = 0, 0
    for _ in range(len(code)):  # classic BPF only jumps forward: at most len(code) steps
        op, jt, jf, k = code[pc]
        cls = op & 0x07
        if cls == 0x00:  # BPF_LD: only BPF_W | BPF_ABS, a 32-bit load from seccomp_data
            assert op == 0x00 | 0x00 | 0x20 and k % 4 == 0 and k + 4 <= len(data)
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif cls == 0x05:  # BPF_JMP with a constant operand (BPF_K)
            assert op & 0x08 == 0
            hit = {0x10: acc == k, 0x30: acc >= k, 0x40: bool(acc & k)}[op & 0xF0]
            pc += 1 + (jt if hit else jf)
        else:
            assert op == 0x06, hex(op)  # BPF_RET | BPF_K
            return k
    raise AssertionError("the filter ran off its end")


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_seccomp_program_structure(arch):
    code = lockdown.seccomp_program(arch)
    audit = lockdown.SYSCALLS[arch][0]
    assert code[:3] == [(0x20, 0, 0, 4), (0x15, 1, 0, audit), (0x06, 0, 0, lockdown.KILL)]  # arch check first
    assert code[-3:] == [(0x06, 0, 0, lockdown.ALLOW), (0x06, 0, 0, EPERM), (0x06, 0, 0, ENOSYS)]
    assert len(code) < 256  # every jump offset fits in a u8, as the assembler asserts
    for pc, (op, jt, jf, _) in enumerate(code):
        if op & 0x07 == 0x05:
            assert pc + 1 + max(jt, jf) < len(code)
    assert ctypes.sizeof(lockdown.SockFilter) == 8  # struct sock_filter


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_seccomp_program_refuses_what_it_lists_and_allows_the_rest(arch):
    code = lockdown.seccomp_program(arch)
    audit, x32, clone, clone3, socket_nr, denied = lockdown.SYSCALLS[arch]
    run = lambda nr, arg0=0: _run_filter(code, audit, nr, arg0)  # noqa: E731
    assert {"unshare", "setns", "mount", "ptrace", "bpf", "io_uring_setup", "keyctl", "mount_setattr"} <= set(denied)
    for name, nr in denied.items():
        assert run(nr) == EPERM, name
    for name, nr in ORDINARY[arch].items():
        assert run(nr) == lockdown.ALLOW, name
    # Another architecture's calling convention is killed outright.
    assert _run_filter(code, 0x40000003, ORDINARY[arch]["read"]) == lockdown.KILL
    assert run(0x40000000 + ORDINARY["x86_64"]["read"]) == (ENOSYS if x32 else lockdown.ALLOW)
    # clone: threads and forks pass, any new namespace is refused; clone3 falls back to clone.
    assert run(clone, 0x003D0F00) == lockdown.ALLOW  # pthread_create's flags
    assert run(clone, 17) == lockdown.ALLOW  # fork: SIGCHLD
    for flag in (kernel.CLONE_NEWNS, kernel.CLONE_NEWUSER, kernel.CLONE_NEWPID, kernel.CLONE_NEWNET,
                 kernel.CLONE_NEWIPC, kernel.CLONE_NEWUTS, kernel.CLONE_NEWCGROUP):
        assert run(clone, 17 | flag) == EPERM, hex(flag)
    assert run(clone3) == ENOSYS
    # socket: only AF_INET and AF_INET6 (AF_UNIX 1, AF_NETLINK 16, AF_PACKET 17, AF_VSOCK 40 are not).
    assert run(socket_nr, 2) == run(socket_nr, 10) == lockdown.ALLOW
    for family in (1, 16, 17, 40):
        assert run(socket_nr, family) == EAFNOSUPPORT, family


# ---------------------------------------------------------------------------------------------
# How a test finds the program's names.


def _names(source: str) -> set[str]:
    return judging.global_names(compile(source, "<test>", "exec"))


def test_global_names_reaches_nested_code():
    names = _names("assert f(x) == [g(y) for y in items] and (lambda: h(1))() == {k: v for k, v in d}")
    assert {"f", "x", "g", "items", "h", "d"} <= names
    assert not {"y", "k", "v"} & names  # the comprehensions' own locals are not globals


def test_global_names_of_a_test_that_defines_a_function():
    names = _names("def helper(a):\n    return a + offset\nassert helper(1) == total\n")
    assert {"helper", "offset", "total"} <= names and "a" not in names


def test_with_got_keeps_the_value_of_the_left_side():
    tree = judging.with_got("assert f(2) == 5")
    env = {"f": lambda n: n * 2}
    with pytest.raises(AssertionError):
        exec(compile(tree, "<test>", "exec"), env)
    assert env[judging.GOT] == 4
    assert len(judging.with_got("assert f(2) == 5 == g()").body) == 1  # chained: left as it is


# ---------------------------------------------------------------------------------------------
# The wire between H1 and the worker: the harness's encode/decode against the real worker loop.

WORKER = "import sys\nfrom s3ft_jax.judges.sandbox.worker import serve\nserve(0, 1)\n"
# A worker that answers every request with the bytes given in hex on its command line.
FAKE_WORKER = (
    "import os, struct, sys\n"
    "n = struct.unpack('>I', os.read(0, 4))[0]\n"
    "os.read(0, n)\n"
    "os.write(1, bytes.fromhex(sys.argv[1]))\n"
    "os.read(0, 1)\n"
)


@pytest.fixture
def connect(monkeypatch):
    monkeypatch.setitem(kernel.CFG, "timeout", 5.0)
    started = []

    def start(script: str = WORKER, *args: str, deadline_s: float = 20.0) -> channel.Rpc:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        started.append(proc)
        rpc = channel.Rpc(proc.stdout.fileno(), proc.stdin.fileno(), proc.pid, time.monotonic() + deadline_s)
        proxies.attach(rpc)
        return rpc

    yield start
    proxies.attach(None)
    for proc in started:
        proc.kill()
        proc.stdin.close()
        proc.stdout.close()
        proc.wait()


def _program(rpc: channel.Rpc, source: str, *names: str) -> list:
    rpc.request("load", source, "")
    found = rpc.request("lookup", list(names))
    return [proxies.decode(found[name]) for name in names]


ROUND_TRIP = [
    None, True, False, 0, -7, 1 << 70, -(1 << 90), 2.5, float("inf"), "text \u00e9\u2603", "",
    [1, [2, [3]]], (1, "a", (2.0,)), {1, 2, 3}, frozenset({"x"}), {"a": [1, (2, 3)], 4: None},
    b"\x00\xff bytes", bytearray(b"ab"), complex(1, -2), range(1, 10, 3), [], (), {},
]


def test_plain_values_round_trip_through_the_worker(connect):
    rpc = connect()
    (echo,) = _program(rpc, "def echo(x):\n    return x\n", "echo")
    assert type(echo) is proxies.Proxy
    for value in ROUND_TRIP:
        back = echo(value)
        assert type(back) is type(value) and back == value, value
        assert json.loads(json.dumps(proxies.encode(value))) == proxies.encode(value)  # JSON data only
    assert echo(x=[1]) == [1]


def test_worker_objects_stay_in_the_worker(connect):
    rpc = connect()
    source = (
        "class Box:\n    def __init__(self, v):\n        self.v = v\n    def __len__(self):\n        return 3\n"
        "def gen(n):\n    yield from range(n)\n"
        "def boom():\n    raise KeyError('k')\n"
        "class Mine(Exception):\n    pass\n"
        "def mine():\n    raise Mine('no')\n"
        "def same(a, b):\n    return a is b\n"
    )
    box_cls, gen, boom, mine, same = _program(rpc, source, "Box", "gen", "boom", "mine", "same")
    box = box_cls(41)
    assert type(box) is proxies.Proxy and box._s3ft_type == "Box"
    assert box.v + 1 == 42 and len(box) == 3
    assert list(gen(2500)) == list(range(2500))  # fetched in growing batches
    assert same(box, box) is True and same(box, box_cls(41)) is False  # handles go back as the objects
    with pytest.raises(KeyError) as caught:
        boom()
    assert caught.value.s3ft_remote == "KeyError: 'k'"
    with pytest.raises(channel.RemoteError, match="Mine: no"):
        mine()
    assert rpc.dead is None


def test_encode_sends_no_harness_object():
    assert proxies.encode(len) == ["ref", "builtins", "len"]
    assert proxies.encode(int) == ["ref", "builtins", "int"]
    assert proxies.encode(math.sqrt) == ["ref", "math", "sqrt"]
    for value in (lambda: 0, object(), Path("/"), proxies.Proxy.__init__):
        with pytest.raises(TypeError, match="cannot pass"):
            proxies.encode(value)


@pytest.mark.parametrize(
    "bad",
    [["zz", 1], ["d", [[1]]], ["i", "not hex"], ["c", "1", 2], ["h", "1", "T"], ["r", 1, 2], {"a": 1}, []],
)
def test_decode_turns_malformed_values_into_a_protocol_violation(bad):
    rpc = channel.Rpc(*os.pipe(), -1, time.monotonic() + 5)  # no worker: pid -1 is never signalled
    proxies.attach(rpc)
    try:
        with pytest.raises(channel.WorkerGone):
            proxies.decode(bad)
        assert rpc.dead[0] == "failed" and "protocol violation" in rpc.dead[1]
    finally:
        proxies.attach(None)
        os.close(rpc.rfd)
        os.close(rpc.wfd)


def _frame(reply) -> str:
    data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
    return (struct.pack(">I", len(data)) + data).hex()


@pytest.mark.parametrize(
    "reply, why",
    [
        (b"not json", "malformed reply"),
        ([2, "ok", 1], "unexpected reply"),  # wrong sequence number
        ([1, "ok"], "unexpected reply"),
        ([1, "exc", 1, 2, 3], "malformed exception"),
    ],
)
def test_bad_replies_end_the_worker(connect, reply, why):
    rpc = connect(FAKE_WORKER, _frame(reply))
    with pytest.raises(channel.WorkerGone):
        rpc.request("lookup", ["f"])
    assert rpc.dead == ("failed", "protocol violation by the program's process: " + why)


def test_an_oversized_reply_is_refused_before_it_is_read(connect):
    rpc = connect(FAKE_WORKER, struct.pack(">I", channel.MAX_MSG + 1).hex())
    with pytest.raises(channel.WorkerGone):
        rpc.request("lookup", ["f"])
    assert rpc.dead[0] == "failed" and "too large" in rpc.dead[1]


def test_a_silent_worker_runs_out_of_time(connect):
    rpc = connect("import time\ntime.sleep(60)\n", deadline_s=0.5)
    start = time.monotonic()
    with pytest.raises(channel.WorkerGone):
        rpc.request("lookup", ["f"])
    assert rpc.dead == ("timeout", "exceeded the 5s time limit")
    assert time.monotonic() - start < 5.0
