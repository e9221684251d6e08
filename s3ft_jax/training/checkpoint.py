"""Orbax checkpoints of the train state, with exact resume and a fallback past broken ones.

A checkpoint holds the state pytree (step, trainable params, optimizer state, rng) and a JSON
item with the data position (epoch, batch within the epoch), the run's identity (settings.run_id:
the data and every setting that changes the trained bits) and a fingerprint of the state: per-leaf sums
taken before saving. Restore walks from the newest checkpoint back; one that fails to read,
or whose fingerprint does not match what was read, is reported, deleted and skipped.
Orbax writes each checkpoint to a temporary directory and renames it when complete, so a run
killed mid-save leaves no half checkpoint that looks finished.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from s3ft_jax.errors import S3FTError

log = logging.getLogger("s3ft_jax")


def leaf_checksums(state: dict) -> dict[str, list[float]]:
    """Per top-level item ("params", "opt_state", ...), the sum of each leaf's values."""
    sums = jax.jit(lambda t: jax.tree.map(lambda x: jnp.sum(x.astype(jnp.float32)), t))(state)
    return {key: [float(v) for v in jax.tree.leaves(jax.device_get(value))] for key, value in sums.items()}


def _matches(got: dict, want: dict) -> bool:
    for key, a in got.items():
        b = want.get(key, [])
        if len(a) != len(b) or not np.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True):
            return False
    return True


class Checkpointer:
    def __init__(self, directory: Path, *, keep: int, async_save: bool = True):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep if keep > 0 else None,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: dict, meta: dict) -> None:
        ocp = self._ocp
        meta = {**meta, "fingerprint": leaf_checksums(state)}
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore_latest(self, abstract_state, run_id: str | None, *, params_only: bool = False, delete_bad: bool = True):
        """(state, meta) of the newest good checkpoint, or None when there is none at all.

        With params_only, `abstract_state` is {"params": ...} and only those are read.
        """
        ocp = self._ocp
        steps = self.steps()
        failed = []
        for step in reversed(steps):
            try:
                meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            except Exception as e:  # unreadable metadata: a broken checkpoint
                log.warning("checkpoint %d is unreadable (%s); trying the previous one", step, _short(e))
                failed.append(step)
                continue
            if run_id is not None and meta.get("run_id") != run_id:
                raise S3FTError(
                    f"{self.directory} holds checkpoints of a different run (other data, model or training settings): "
                    "use a new workdir or delete them"
                )
            try:
                if params_only:
                    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
                    item = ocp.args.PyTreeRestore(item=abstract_state, restore_args=restore_args, partial_restore=True)
                else:
                    item = ocp.args.StandardRestore(abstract_state)
                state = self.manager.restore(step, args=ocp.args.Composite(state=item))["state"]
                ok = _matches(leaf_checksums(state), meta.get("fingerprint", {}))
            except Exception as e:
                log.warning("checkpoint %d is unreadable (%s); trying the previous one", step, _short(e))
                failed.append(step)
                continue
            if not ok:
                log.warning("checkpoint %d does not match its fingerprint (corrupt); trying the previous one", step)
                failed.append(step)
                continue
            if delete_bad:
                for bad in failed:
                    self._delete(bad)
            return state, meta
        if failed:
            raise S3FTError(f"every checkpoint in {self.directory} is corrupt ({', '.join(map(str, failed))}): delete them to start over")
        return None

    def _delete(self, step: int) -> None:
        try:
            self.manager.delete(step)
        except Exception:  # a checkpoint too broken for Orbax to delete: remove its directory
            import shutil

            for path in self.directory.iterdir():
                if path.name == str(step):
                    shutil.rmtree(path, ignore_errors=True)
            self.manager.reload()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _short(e: Exception) -> str:
    text = f"{type(e).__name__}: {e}".splitlines()[0]
    return text[:200]
