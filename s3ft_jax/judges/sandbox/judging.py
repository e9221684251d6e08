"""H1 runs the tests: each assert executes here, in the trusted process, against proxies.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
For each test, the global names it reads that the program defines are looked up in the worker
and bound as decoded values or proxies; the test's own code (its asserts, comparisons with
literals, loops) runs in H1, so only H1 decides whether an assert held.
"""

import ast
import builtins
import types

from . import proxies
from .channel import WorkerGone

GOT = "__s3ft_got__"


def with_got(src):
    """`assert a == b` -> `got = a; assert got == b`: same evaluation order, and the failure
    detail can show what the program returned."""
    tree = ast.parse(src)
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
        test = tree.body[0].test
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            keep = tree.body[0]
            grab = ast.Assign(targets=[ast.Name(GOT, ast.Store())], value=test.left)
            test.left = ast.Name(GOT, ast.Load())
            tree.body = [grab, keep]
            return ast.fix_missing_locations(tree)
    return tree


def global_names(code):
    """Every global (and attribute) name `code` or its nested code objects may read.

    A superset is fine: only names the program defines are looked up and bound."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def describe(exc):
    remote = getattr(exc, "s3ft_remote", None)
    if remote:
        return "raised " + remote
    text = str(exc)
    return "%s%s" % (type(exc).__name__, ": " + text if text else "")


def judge(job, rpc):
    proxies.attach(rpc)
    tests = job["tests"]
    if not tests:
        return "error", "no tests to run", 0
    compiled = []
    for i, src in enumerate(tests):
        try:
            compiled.append(compile(with_got(src), "<test %d>" % (i + 1), "exec", dont_inherit=True, optimize=0))
        except (SyntaxError, ValueError) as exc:
            return "error", "test %d does not compile: %s" % (i + 1, exc), 0
    try:
        rpc.request("load", job["program"], job["setup"])
    except WorkerGone:
        status, detail = rpc.dead
        return ("error" if status in ("exited", "failed") else status), detail + " while loading the program", 0
    except Exception as exc:
        return "error", "program failed to load: " + describe(exc), 0
    env = {"__builtins__": builtins, "__name__": "__test__"}
    provided, assigned = {}, set()  # names from the program / names the tests themselves bound
    for i, (src, code) in enumerate(zip(tests, compiled)):
        where = "test %d (%s)" % (i + 1, " ".join(src.split())[:200])
        try:
            env.pop(GOT, None)
            wanted = sorted(n for n in global_names(code) if n not in assigned and n != GOT)
            found = rpc.request("lookup", wanted) if wanted else {}
            if type(found) is not dict:
                rpc.protocol("malformed lookup reply")
            injected = {name: proxies.decode(found[name]) for name in wanted if name in found}
            env.update(injected)
            provided.update(injected)
            exec(code, env)
            if rpc.dead is not None:
                raise WorkerGone(rpc.dead[1])
            for name, value in env.items():
                if name not in ("__builtins__", "__name__", GOT) and value is not provided.get(name, provided):
                    assigned.add(name)
        except WorkerGone:
            status, detail = rpc.dead
            return ("failed" if status == "exited" else status), "%s during %s" % (detail, where), i
        except AssertionError as exc:
            got = ""
            if GOT in env:
                try:
                    got = "; got " + repr(env[GOT])[:300]
                except BaseException:
                    pass
            return "failed", "failed: %s%s%s" % (where, ": " + str(exc) if str(exc) else "", got), i
        except BaseException as exc:
            if rpc.dead is not None:
                status, detail = rpc.dead
                return ("failed" if status == "exited" else status), "%s during %s" % (detail, where), i
            return "failed", "%s %s" % (where, describe(exc)), i
    return "passed", "%d/%d tests passed" % (len(tests), len(tests)), len(tests)
