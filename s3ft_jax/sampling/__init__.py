"""Generation with the JAX model: jitted prefill, then a decode loop over a KV cache.

The names below load on first use: the config module checks its sampling section with
`sampling.options` while parsing the command line, which must not wait for JAX to import.
"""

import importlib

_HOMES = {
    "Generation": "engine",
    "SamplerEngine": "engine",
    "generate": "engine",
    "generate_batches": "engine",
    "SamplingOptions": "options",
    "SamplingParams": "params",
    "render_chat": "chat",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
