"""H1's end of the pipe pair to the worker: framed JSON requests, checked replies, deadlines.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
A message is a 4-byte big-endian length and that many bytes of ASCII JSON. H1 sends
[seq, kind, ...]; the worker answers [seq, "ok", value] or [seq, "exc", name, module, message].
Anything else, or a reply too large, late or out of sequence, ends the worker: the program
cannot make H1 wait past the deadline or read more than MAX_MSG bytes.
"""

import builtins
import json
import os
import select
import signal
import struct
import time

from .kernel import CFG

MAX_MSG = 32 << 20


class WorkerGone(BaseException):
    """The worker died, stopped talking, broke the protocol, or ran out of time."""


class Rpc:
    def __init__(self, rfd, wfd, pid, deadline):
        self.rfd, self.wfd, self.pid, self.deadline = rfd, wfd, pid, deadline
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        self.seq = 0
        self.buf = bytearray()
        self.dead = None  # (status, detail) once the worker is unusable

    def _end(self, status, detail):
        if self.dead is None:
            self.dead = (status, detail)
            if self.pid > 0:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
        raise WorkerGone(detail)

    def _timeout(self):
        self._end("timeout", "exceeded the %gs time limit" % CFG["timeout"])

    def protocol(self, what):
        self._end("failed", "protocol violation by the program's process: %s" % what)

    def _gone(self):
        # The channel closed: find out how the worker ended (it may still be running).
        end = min(self.deadline, time.monotonic() + 0.5)
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > end:
                if time.monotonic() > self.deadline:
                    self._timeout()
                self._end("failed", "the program's process closed the harness channel")
            time.sleep(0.005)
        self.pid = -1
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU:
                self._end("timeout", "exceeded the CPU time limit")
            self._end("crashed", "the program's process was killed by %s" % signal.Signals(sig).name)
        self._end("exited", "the program's process exited with status %d" % os.waitstatus_to_exitcode(status))

    def _wait(self, fd, write):
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._timeout()
        r, w, _ = select.select([] if write else [fd], [fd] if write else [], [], left)
        if not r and not w:
            self._timeout()

    def request(self, *msg):
        if self.dead is not None:
            raise WorkerGone(self.dead[1])
        self.seq += 1
        try:
            data = json.dumps([self.seq] + list(msg)).encode("ascii")
        except (ValueError, TypeError, RecursionError) as exc:
            raise TypeError("cannot send this value to the program: %s" % exc) from None
        view = memoryview(struct.pack(">I", len(data)) + data)
        while view:
            self._wait(self.wfd, True)
            try:
                view = view[os.write(self.wfd, view):]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                self._gone()
        (n,) = struct.unpack(">I", self._read(4))
        if n > MAX_MSG:
            self._end("failed", "the program's reply is too large (%d bytes; the limit is %d MiB)" % (n, MAX_MSG >> 20))
        try:
            reply = json.loads(self._read(n))
        except (ValueError, RecursionError):
            self.protocol("malformed reply")
        if type(reply) is not list or len(reply) < 2 or reply[0] != self.seq:
            self.protocol("unexpected reply")
        if reply[1] == "ok" and len(reply) == 3:
            return reply[2]
        if reply[1] == "exc" and len(reply) == 5:
            raise remote_exception(self, reply[2], reply[3], reply[4])
        self.protocol("unexpected reply")

    def _read(self, n):
        while len(self.buf) < n:
            self._wait(self.rfd, False)
            try:
                chunk = os.read(self.rfd, max(1 << 16, n - len(self.buf)))
            except BlockingIOError:
                continue
            if not chunk:
                self._gone()
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


class RemoteError(Exception):
    """An exception the program raised that is not a built-in one."""


def remote_exception(rpc, name, module, message):
    if not all(type(x) is str for x in (name, module, message)):
        rpc.protocol("malformed exception")
    message = message[:2000]
    cls = getattr(builtins, name, None) if module == "builtins" else None
    # Built-in Exception subclasses keep their type (StopIteration ends a loop, KeyError is a
    # KeyError); never BaseException-only types such as SystemExit or KeyboardInterrupt.
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        try:
            exc = cls(message)
        except Exception:
            exc = RemoteError("%s: %s" % (name, message))
    else:
        exc = RemoteError("%s.%s: %s" % (module, name, message))
    exc.s3ft_remote = "%s: %s" % (name, message)
    return exc
