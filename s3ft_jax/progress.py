"""Progress bars for every stage that takes more than a few seconds.

One place decides how a bar looks and who draws it: process 0 only (on several hosts the
others would repeat it), on stderr, with tqdm's rate and ETA. A disabled bar is a no-op
object with the same methods, so callers never branch on it.
"""

from __future__ import annotations


class _NoBar:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_description(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int, *, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True):
    """A tqdm bar on stderr (process 0 only), or a no-op stand-in when `enabled` is false."""
    if not enabled:
        return _NoBar()
    import jax
    from tqdm import tqdm

    if jax.process_index() != 0:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=True)
