"""What the program's values look like to the tests: plain data, or proxies into the worker.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
`decode` turns a worker's reply into harness values, checking every piece: plain data (ints,
strs, lists, dicts...) is rebuilt as fresh harness objects; anything else becomes a `Proxy`, a
handle whose every operation (call, compare, iterate...) is one more request to the worker.
`encode` is the way back: only plain data and handles ever cross, never a harness object.
"""

import importlib
import sys
import types

from .channel import MAX_MSG, WorkerGone, remote_exception
from .wire import SEQUENCES, to_wire

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


RPC = None  # the job's channel (channel.Rpc): one job per H1 process, so one channel


def attach(rpc):
    """Make `rpc` the channel every proxy and every decoded value talks through."""
    global RPC
    RPC = rpc


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
    return to_wire(x, encode_other)


def encode_other(x):
    t = type(x)
    if t is Proxy:
        return ["h", x._s3ft_id]
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
            return SEQUENCES[tag](items)
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
