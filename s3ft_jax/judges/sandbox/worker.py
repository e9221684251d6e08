"""W, the worker: execs the untrusted program and answers H1's requests about it.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
Forked by H1 before H1 reads the job, so it never holds the tests, the nonce or the verdict
channel. Everything here is at the program's mercy (it can patch this code in its own process);
all it can change is what it answers, which H1 checks (see `channel` and `proxies`).
"""

import importlib
import json
import math
import operator
import os
import resource
import struct
import sys
import types

from .kernel import CFG, no_int_digit_limit
from .wire import SEQUENCES, to_wire


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
    no_int_digit_limit()
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

    def other(x):  # not plain data: stays here, H1 gets a handle
        if type(x) is types.ModuleType:
            return ["m", str(getattr(x, "__name__", "")), handle(x)]
        return ["h", handle(x), type(x).__qualname__]

    def value(x):
        try:
            return to_wire(x, other)
        except RecursionError:  # self-referencing containers stay in the worker
            return ["h", handle(x), type(x).__qualname__]

    def dec(v):
        if type(v) is list:
            tag = v[0]
            if tag in ("l", "t", "s", "fs", "it"):
                return SEQUENCES[tag](dec(x) for x in v[1])
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
