"""The wire format between H1 and the worker: JSON values, tagged where JSON has no type.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
Both ends encode plain data the same way (`to_wire`) and differ in what they send for anything
else: H1 sends back handles it got from the worker and names of stdlib objects, and refuses the
rest (`proxies.encode`); the worker sends a handle to any other object (`worker.serve`).
Decoding differs by trust: H1 checks every piece (`proxies.decode`), the worker trusts H1.

  null, bool, int, float, str   as themselves; ints beyond +-2**62 as ["i", hex]
  ["l" | "t" | "s" | "fs" | "it", [item, ...]]   list, tuple, set, frozenset, an iterator's items
  ["d", [[key, value], ...]]  ["b" | "ba", hex]  ["c", real, imag]  ["r", start, stop, step]
  ["h", id, type name]   a worker object (H1 sends ["h", id])    ["m", name, id]   a module
  ["ref", module, qualname]   a stdlib class or function, by name (H1 to the worker only)
"""

SEQUENCES = {"l": list, "t": tuple, "s": set, "fs": frozenset, "it": iter}  # tag -> constructor
_SEQUENCE_TAGS = ((list, "l"), (tuple, "t"), (set, "s"), (frozenset, "fs"))


def to_wire(x, other):
    """`x` as JSON-able data if it is plain data, recursively; `other(x)` for anything else."""
    t = type(x)
    if t is int and not -(1 << 62) < x < (1 << 62):
        return ["i", hex(x)]
    if x is None or t in (bool, int, float, str):
        return x
    for kind, tag in _SEQUENCE_TAGS:
        if t is kind:
            return [tag, [to_wire(v, other) for v in x]]
    if t is dict:
        return ["d", [[to_wire(k, other), to_wire(v, other)] for k, v in x.items()]]
    if t is bytes:
        return ["b", x.hex()]
    if t is bytearray:
        return ["ba", x.hex()]
    if t is complex:
        return ["c", x.real, x.imag]
    if t is range:
        return ["r", x.start, x.stop, x.step]
    return other(x)
