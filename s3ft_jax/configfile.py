"""A resolved configuration tree as a config file: `get_config()` returns the same tree, every
value a Python literal, so `--config=FILE` reruns it. `s3ft config` prints it and `run`,
`build`, `train` and `judge-audit` leave it in their workdir as `config.py`.
"""

from __future__ import annotations

import ast

from ml_collections import ConfigDict, FieldReference

HEADER = '''"""The resolved configuration{what}, written by s3ft. Rerun with
`s3ft COMMAND --config=THIS_FILE` (and any --config.KEY=VALUE overrides)."""

import ml_collections
from ml_collections import config_dict  # noqa: F401 (placeholders: typed fields left unset)


def get_config():
    return ml_collections.ConfigDict('''


def config_file_text(config: ConfigDict, what: str = "") -> str:
    """The source of a config file whose get_config() returns `config` (values equal, and an
    unset typed field - ml_collections' placeholder - stays a typed placeholder)."""
    return HEADER.format(what=what) + _render(config, 4) + ")\n"


def _render(node: ConfigDict, indent: int) -> str:
    pad = " " * indent
    lines = ["{"]
    for key in node.keys():
        field = node._fields[key]  # the stored field: a FieldReference keeps a placeholder's type
        if isinstance(field, ConfigDict):
            value = _render(field, indent + 4)
        elif isinstance(field, FieldReference) and field.get() is None:
            value = f"config_dict.placeholder({field.get_type().__name__})"
        else:
            value = _literal(key, field.get() if isinstance(field, FieldReference) else field)
        lines.append(f"{pad}    {key!r}: {value},")
    lines.append(f"{pad}}}")
    return "\n".join(lines)


def _literal(key: str, value) -> str:
    text = repr(value)
    try:
        same = ast.literal_eval(text) == value and type(ast.literal_eval(text)) is type(value)
    except (ValueError, SyntaxError):
        same = False
    if not same:  # e.g. float("nan"): the file would not load back to the same tree
        raise ValueError(f"config key {key!r}: {value!r} is not a Python literal")
    return text
