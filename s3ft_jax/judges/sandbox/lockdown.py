"""How H1 gives up every privilege: capabilities, no_new_privs, and a seccomp filter.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
`prepare` runs once in the zygote (the filter is assembled before any job exists);
`drop_privileges` runs in each job's H1, after its mounts are final and before it forks the worker.
"""

import ctypes
import errno
import os

from .kernel import (
    NAMESPACE_FLAGS,
    PR_CAP_AMBIENT,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_SECCOMP,
    PR_SET_SECUREBITS,
    die,
    errtext,
    libc,
    prctl,
)

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

# Classic BPF opcodes (linux/filter.h): LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, JMP|JSET|K, RET|K.
LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
# Seccomp return actions (linux/seccomp.h); ERRNO carries the errno in its low 16 bits.
ALLOW, KILL, ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
AF_INET, AF_INET6 = 2, 10


def seccomp_program(arch):
    """The filter for `arch` (a key of SYSCALLS) as [(code, jt, jf, k)]; installs nothing.

    Reads struct seccomp_data: the arch at offset 4 (another arch is killed), the syscall number
    at 0 and the low half of the first argument at 16 (clone's flags, socket's family)."""
    audit, x32, clone, clone3, socket_nr, denied = SYSCALLS[arch]
    def err(e): return ERRNO | e
    ops = [("ld", 4), ("jeq", audit, "arch_ok", None), ("ret", KILL), ("label", "arch_ok"), ("ld", 0)]
    if x32:
        ops += [("jge", 0x40000000, "enosys", None)]
    for nr in sorted(set(denied.values())):
        ops += [("jeq", nr, "eperm", None)]
    # clone3 passes its flags in memory, where a filter cannot look: ENOSYS makes libc use clone.
    ops += [("jeq", clone3, "enosys", None),
            ("jeq", clone, None, "not_clone"), ("ld", 16), ("jset", NAMESPACE_FLAGS, "eperm", "allow"),
            ("label", "not_clone"),
            ("jeq", socket_nr, None, "allow"), ("ld", 16), ("jeq", AF_INET, "allow", None),
            ("jeq", AF_INET6, "allow", None), ("ret", err(errno.EAFNOSUPPORT)),
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
    arch = os.uname().machine.lower()
    if arch not in SYSCALLS:
        die("no seccomp policy for architecture %s (x86_64 and aarch64 are supported)" % arch)
    code = seccomp_program(arch)
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
