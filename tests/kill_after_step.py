"""Tests only: an `s3ft` command whose training is killed with SIGKILL right after step K (a
real kill -9, not an exception), once the checkpoints issued so far are complete on disk.

    python -m tests.kill_after_step K train --config.workdir=... [--config.KEY=VALUE ...]

It runs the real command line (`s3ft_jax.cli.main`, multi-process launches included) with
`KillAfterStep(K)` added to the callbacks of every `train` call it makes.
"""

from __future__ import annotations

import os
import signal
import sys

from s3ft_jax.training.callbacks import Callback


class KillAfterStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def after_step(self, step: int, checkpointer) -> None:
        if step == self.step:
            # Without the wait an async save of a checkpoint before this step could be cut
            # short: the test expects exactly the checkpoints due by step K to survive.
            checkpointer.wait()
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    from s3ft_jax import cli, hostenv
    from s3ft_jax.training import loop

    hostenv.reexec_tuned()  # the process settings the `s3ft` command runs under
    kill_at, *command = argv
    real_train = loop.train

    def train_then_kill(*args, callbacks=(), **kwargs):
        return real_train(*args, callbacks=(*callbacks, KillAfterStep(int(kill_at))), **kwargs)

    # `s3ft train` and `s3ft run` look `train` up when they call it (commands.py, pipeline.py).
    loop.train = train_then_kill
    return cli.main(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
