"""The package's layers: every import (module level or inside a function) points down or
stays inside its own package, and no modules import each other in a cycle."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1] / "s3ft_jax"

# Lower numbers are lower layers. A module may import its own layer's modules only inside its
# own package (models.llama -> models.config), and any lower layer.
LAYERS = {
    "s3ft_jax": 0, "s3ft_jax.errors": 0,
    "s3ft_jax.paths": 1, "s3ft_jax.lazy": 1, "s3ft_jax.io": 1, "s3ft_jax.progress": 1, "s3ft_jax.hostenv": 1,
    "s3ft_jax.distributed": 1,
    "s3ft_jax.sharding": 2, "s3ft_jax.tasks": 2,
    "s3ft_jax.models": 3,
    "s3ft_jax.sampling": 4,
    "s3ft_jax.judges": 5,
    "s3ft_jax.training": 6, "s3ft_jax.evaluation": 6,
    "s3ft_jax.loader": 7,
    "s3ft_jax.s3ft": 8,
    "s3ft_jax.report": 9, "s3ft_jax.settings": 9,
    # The configuration tree (config) turns into settings here; nothing below reads the tree.
    "s3ft_jax.pipeline": 10, "s3ft_jax.config": 10, "s3ft_jax.configfile": 10,
    "s3ft_jax.plan": 11,
    "s3ft_jax.preflight": 12, "s3ft_jax.commands": 12, "s3ft_jax.datafiles": 12, "s3ft_jax.launch": 12,
    "s3ft_jax.cli": 13,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> tuple[int, str]:
    """(layer, the LAYERS entry it falls under): the longest matching prefix."""
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return LAYERS[name], name
    raise AssertionError(f"{module} has no layer: add it to LAYERS")


def _is_module(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports() -> dict[str, set[str]]:
    """Every s3ft_jax module -> the s3ft_jax modules it imports, wherever the import stands."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        if module.startswith("s3ft_jax.judges.sandbox."):
            continue  # the sandbox's isolated files import only the standard library (test_sandbox_units)
        targets = graph.setdefault(module, set())
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("s3ft_jax"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the package
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    name = f"{base}.{node.module}" if node.module else base
                else:
                    name = node.module or ""
                if not name.startswith("s3ft_jax"):
                    continue
                # `from s3ft_jax.tasks import gsm8k` imports the submodule s3ft_jax.tasks.gsm8k.
                subs = {f"{name}.{a.name}" for a in node.names if _is_module(f"{name}.{a.name}")}
                targets.update(subs or {name})
        targets.discard(module)
    return graph


# The package's __init__ runs before any of its modules: it may apply the process settings
# of hostenv (standard library only) that must precede JAX's start (libtpu kept quiet).
BOOTSTRAP = {"s3ft_jax": {"s3ft_jax.hostenv"}}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        layer, home = _layer(module)
        for target in targets - {"s3ft_jax"} - BOOTSTRAP.get(module, set()):
            t_layer, t_home = _layer(target)
            if t_layer > layer or (t_layer == layer and t_home != home):
                wrong.append(f"{module} (layer {layer}) imports {target} (layer {t_layer})")
    return sorted(wrong)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_imports_only_point_down():
    wrong = upward_imports(_imports())
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = _imports()
    cycle = find_cycle({m: {t for t in ts if t in graph} for m, ts in graph.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_can_fail():
    assert upward_imports({"s3ft_jax.models.llama": {"s3ft_jax.pipeline", "s3ft_jax.sharding"}}) == [
        "s3ft_jax.models.llama (layer 3) imports s3ft_jax.pipeline (layer 10)"
    ]
    assert upward_imports({"s3ft_jax.training.step": {"s3ft_jax.evaluation.scoring"}})  # sideways
    assert upward_imports({"s3ft_jax": {"s3ft_jax.sharding"}})  # the bootstrap exception is hostenv alone
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
