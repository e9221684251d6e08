"""The isolated interpreter's program (`python -s -S -B -P -c <this file's text> FD NAME SOURCE...`).

The launcher hands this file's text to a fresh interpreter, with the judge's socket descriptor
and the harness modules' sources (read by the launcher from the files beside this one) as
arguments, in dependency order. It executes them as the package `s3ft_sandbox` (their relative
imports resolve among themselves, never to files on disk) and runs the zygote. Standard
library only; importing this module does nothing.
"""

import sys

PACKAGE = "s3ft_sandbox"


def load(modules, package=PACKAGE):
    """Execute each (name, source) as module `package.name`, in order; return the package."""
    import types

    root = types.ModuleType(package)
    root.__path__ = []  # a package, so relative imports work; it has no directory to search
    sys.modules[package] = root
    for name, source in modules:
        module = types.ModuleType("%s.%s" % (package, name))
        module.__package__ = package
        sys.modules[module.__name__] = module
        setattr(root, name, module)
        exec(compile(source, "<%s>" % module.__name__, "exec", dont_inherit=True), module.__dict__)
    return root


def main():
    # First, before any other import: never import from the working directory (Python 3.10,
    # which lacks -P, puts "" first on sys.path for -c).
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    args = sys.argv[2:]
    del sys.argv[2:]  # the sources are not kept as arguments: argv stays [-c, FD]
    package = load(zip(args[0::2], args[1::2]))
    package.zygote.zygote(int(sys.argv[1]))


if __name__ == "__main__":
    main()
