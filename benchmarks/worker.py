"""One framework's side of a benchmark in its own process (sampler.py, train_step.py).

The process loads, prints a JSON line when ready, then answers each command line on its stdin
(`run`, `step`, ...; `quit` last) with one JSON line of measurements. Each side gets its own
interpreter, so neither framework's threads or allocator state touch the other's timings, and
the caller can alternate the sides' runs.
"""

from __future__ import annotations

import json
import subprocess
import sys


class Worker:
    def __init__(self, name: str, code: str, args: dict, env: dict | None = None):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(args)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self._read()  # loaded and ready

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.proc.wait()
        sys.exit(f"benchmark process ({self.name}) failed with status {self.proc.returncode}")

    def send(self, command: str) -> dict:
        """One measured command; its JSON answer."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def finish(self) -> dict:
        out = self.send("quit")
        self.proc.wait()
        return out
