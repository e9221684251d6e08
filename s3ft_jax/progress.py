"""Progress for every stage that takes more than a few seconds.

One place decides how progress looks and who shows it: process 0 only (on several hosts the
others would repeat it), on stderr. On a terminal it is a tqdm bar with rate and ETA. Into a
file or a pipe (a TPU VM's nohup log, a scheduler's log) a bar would be carriage returns or
nothing, so a plain line is written instead every S3FT_PROGRESS_SECONDS seconds (default 30)
and when the stage ends: stage, done/total, rate, ETA and the stage's own figures (training:
loss and learning rate). A disabled bar is a no-op object with the same methods, so callers
never branch on it.
"""

from __future__ import annotations

import os
import sys
import time

DEFAULT_SECONDS = 30.0


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


def interval_seconds() -> float:
    """S3FT_PROGRESS_SECONDS: seconds between progress lines in a log (0: a line per update)."""
    value = os.environ.get("S3FT_PROGRESS_SECONDS", "")
    try:
        seconds = float(value) if value else DEFAULT_SECONDS
    except ValueError:
        return DEFAULT_SECONDS
    return max(seconds, 0.0)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class LogProgress:
    """tqdm's interface, printing one line per `interval` seconds (and one at the end)."""

    def __init__(self, total: int, *, desc: str, unit: str = "it", initial: int = 0, interval: float | None = None,
                 stream=None, clock=time.monotonic):
        self.total, self.desc, self.unit, self.n = total, desc or "progress", unit, initial
        self.interval = interval_seconds() if interval is None else interval
        self._stream, self._clock = stream, clock
        self._initial = initial
        self._start = self._last = clock()
        self._postfix: dict[str, str] = {}
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self._write(now)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self._postfix = {k: str(v) for k, v in {**(ordered_dict or {}), **kwargs}.items()}

    def set_description(self, desc=None, refresh: bool = True) -> None:
        self.desc = desc or self.desc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n != self._initial:
                self._write(self._clock(), final=True)

    def line(self, now: float, final: bool = False) -> str:
        elapsed = now - self._start
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if final:
            parts.append(f"done in {_duration(elapsed)}")
        elif rate > 0 and self.total >= self.n:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        parts += [f"{k} {v}" for k, v in self._postfix.items()]
        return f"{time.strftime('%Y-%m-%d %H:%M:%S')} progress {', '.join(parts)}"

    def _write(self, now: float, final: bool = False) -> None:
        stream = self._stream or sys.stderr
        print(self.line(now, final), file=stream, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int, *, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True):
    """A tqdm bar on a terminal, progress lines in a log (process 0 only), or a no-op stand-in
    when `enabled` is false."""
    if not enabled:
        return _NoBar()
    import jax

    if jax.process_index() != 0:
        return _NoBar()
    if not _is_terminal(sys.stderr):
        return LogProgress(total, desc=desc, unit=unit, initial=initial)
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
