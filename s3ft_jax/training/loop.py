"""`train(settings, lora, workdir)`: the fine-tuning run, resumable at any checkpoint.

Layout of <workdir>/train:
    checkpoints/<step>/   Orbax checkpoints (trainable params, optimizer state, rng, data position)
    metrics.jsonl         one record per step: loss, learning_rate, grad_norm, trained_tokens, ...
    tensorboard/          the same as TensorBoard event files
    adapter/              LoRA only: the final adapters in PEFT's format (small)
    run.json              the finished run's summary
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from s3ft_jax.errors import S3FTError
from s3ft_jax.io import file_digest
from s3ft_jax.training import data as data_lib
from s3ft_jax.training import lora as lora_lib
from s3ft_jax.training.callbacks import Callback, StepRecord
from s3ft_jax.training.settings import TrainSettings, run_id
from s3ft_jax.training.trainer import load_base, setup

log = logging.getLogger("s3ft_jax")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    checkpoint_dir: Path
    metrics_path: Path
    adapter_path: Path | None  # LoRA: PEFT-format adapters; None for full fine-tuning
    steps: int
    final_loss: float | None  # None when the run had nothing left to do
    method: str  # "lora" | "full"


def train(
    settings: TrainSettings,
    lora: lora_lib.LoraSettings | None,
    workdir: str | Path,
    *,
    dataset_path: str | Path | None = None,
    mesh=None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Fine-tune settings.model_name on the dataset (LoRA with `lora`, all weights when None);
    resumes from <workdir>/train if it holds checkpoints of this run.

    The dataset is `dataset_path`, else settings.dataset, else <workdir>/dataset.jsonl. The
    mesh defaults to every device on the fsdp axis.
    """
    from s3ft_jax.models import load_tokenizer
    from s3ft_jax.sharding import make_mesh
    from s3ft_jax.training.checkpoint import Checkpointer
    from s3ft_jax.training.metrics import MetricsWriter

    s = settings
    workdir = Path(workdir)
    dataset_path = Path(dataset_path or s.dataset or workdir / "dataset.jsonl")
    run_dir = workdir / "train"
    mesh = mesh if mesh is not None else make_mesh()
    if lora is not None:
        lora_lib.target_modules(lora.targets)  # a bad pattern fails before any loading
    if "wandb" in s.reporters:
        from s3ft_jax.training.wandb_logger import import_wandb

        import_wandb()  # missing: said before any loading

    tokenizer = load_tokenizer(s.model_name, chat_template=s.chat_template)
    examples, stats = data_lib.tokenize(data_lib.read_rows(dataset_path), tokenizer, s.max_length)
    plan = data_lib.plan_steps(
        examples, seed=s.seed, batch_size=s.batch_size, num_epochs=s.num_epochs, max_steps=s.max_steps,
        packing=s.packing, max_length=s.max_length,
    )  # fmt: skip
    total = len(plan)
    log.info(
        "training data: %d examples (%d truncated, %d dropped), %d target tokens; %d steps of %d %s",
        stats.examples, stats.truncated, stats.dropped, stats.trained_tokens, total, s.batch_size,
        "packed rows" if s.packing else "examples",
    )  # fmt: skip

    base, cfg, fwd = load_base(s, mesh, trainable_all=lora is None)
    trainer = setup(base, cfg, fwd, s, lora, mesh, total)
    del base
    state = trainer.take_state()

    rid = run_id(s, lora, file_digest(dataset_path), total)
    ckpt = Checkpointer(run_dir / "checkpoints", keep=s.keep_checkpoints, async_save=s.async_checkpoints)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    restored = ckpt.restore_latest(abstract, rid)
    start, last_loss = 0, None
    if restored is not None:
        state, meta = restored
        start = int(meta["step"])
        last_loss = meta.get("loss")
        log.info("resuming from checkpoint %d (epoch %d)", start, meta["epoch"])
    n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
    log.info(
        "%s fine-tuning: %s trainable parameters, mesh %s, compute %s, remat %s",
        "LoRA" if lora else "full", f"{n_params:,}", dict(mesh.shape), s.dtype, s.remat,
    )  # fmt: skip
    multiple = trainer.rows_multiple
    if s.rows_per_micro_batch % multiple:
        log.warning(
            "%d rows per micro-batch do not split over %d data-parallel devices: padding with masked rows",
            s.rows_per_micro_batch, multiple,
        )  # fmt: skip

    callbacks = list(callbacks)
    if "wandb" in s.reporters:
        from s3ft_jax.training.wandb_logger import WandbLogger

        config = {"train": dataclasses.asdict(s), "lora": dataclasses.asdict(lora) if lora else None,
                  "dataset": str(dataset_path), "steps": total}
        callbacks.append(WandbLogger(run_dir, run_id=rid, config=config))
    writer = MetricsWriter(run_dir, total_steps=total, start_step=start, progress=s.progress,
                           tensorboard="tensorboard" in s.reporters)
    pending = _PendingSteps()
    try:
        for i in range(start, total):
            epoch, rows = plan[i]
            host = data_lib.make_batch(
                examples, rows, num_rows=s.batch_size, grad_accum=s.grad_accum, row_multiple=multiple, max_length=s.max_length
            )
            if not host["weights"].any():
                raise S3FTError(f"step {i + 1}: the batch has no target token to train on (check the loss masks)")
            state, metrics = trainer.step(state, trainer.frozen, trainer.device_batch(host))
            done = i + 1
            pending.add(done, epoch, metrics, int((host["segment_ids"] > 0).sum()))
            is_ckpt = done == total or (s.checkpoint_every and done % s.checkpoint_every == 0)
            if done % s.log_every == 0 or is_ckpt:
                last_loss = _report(pending.read(), writer, callbacks, last_loss)
            if is_ckpt:
                position = {"epoch": epoch, "batch_in_epoch": sum(1 for e, _ in plan[:done] if e == epoch)}
                ckpt.save(done, state, {"step": done, "run_id": rid, **position, "loss": last_loss})
            for callback in callbacks:
                callback.after_step(done, ckpt)
        last_loss = _report(pending.read(), writer, callbacks, last_loss)
    finally:
        writer.close()
        ckpt.close()
        for callback in callbacks:
            callback.close()

    adapter_path = None
    if lora is not None:
        adapter_path = save_adapter(state["params"], cfg, lora, str(s.model_name), run_dir / "adapter")
    if jax.process_index() == 0:
        summary = {"steps": total, "final_loss": last_loss, "method": "lora" if lora else "full", "data": dataclasses.asdict(stats)}
        (run_dir / "run.json").write_text(json.dumps(summary, indent=2))
    return TrainResult(
        run_dir=run_dir, checkpoint_dir=run_dir / "checkpoints", metrics_path=writer.path, adapter_path=adapter_path,
        steps=total, final_loss=last_loss, method="lora" if lora else "full",
    )  # fmt: skip


@dataclasses.dataclass
class _Step:
    step: int
    epoch: int
    metrics: dict  # device arrays: not read until the records are due
    tokens: int


class _PendingSteps:
    """Steps whose metrics are still on the device: read back together, so the host syncs
    with the device every log_every steps, not every step."""

    def __init__(self):
        self._steps: list[_Step] = []
        self._clock = time.perf_counter()

    def add(self, step: int, epoch: int, metrics: dict, tokens: int) -> None:
        self._steps.append(_Step(step, epoch, metrics, tokens))

    def read(self) -> list[StepRecord]:
        """The pending steps' records (oldest first); tokens_per_s is over all of them, since
        the last read."""
        if not self._steps:
            return []
        values = jax.device_get([p.metrics for p in self._steps])
        now = time.perf_counter()
        tokens_per_s = sum(p.tokens for p in self._steps) / max(now - self._clock, 1e-9)
        records = [
            StepRecord(
                step=p.step, epoch=p.epoch, loss=float(m["loss"]), learning_rate=float(m["learning_rate"]),
                grad_norm=float(m["grad_norm"]), trained_tokens=int(m["trained_tokens"]), tokens=p.tokens,
                tokens_per_s=tokens_per_s,
            )  # fmt: skip
            for p, m in zip(self._steps, values)
        ]
        self._steps.clear()
        self._clock = now
        return records


def _report(records: list[StepRecord], writer, callbacks: Sequence[Callback], last_loss: float | None) -> float | None:
    """Write each record and hand it to the callbacks; a non-finite loss stops the run. Returns
    the newest loss."""
    for record in records:
        last_loss = record.loss
        if not np.isfinite(last_loss):
            raise S3FTError(f"loss is {last_loss} at step {record.step}: lower train.learning_rate or check the data")
        writer.write(record.as_json())
        for callback in callbacks:
            callback.on_record(record)
    return last_loss


def save_adapter(params: dict, cfg, lcfg: lora_lib.LoraSettings, base_model: str, out: Path) -> Path:
    """The adapters as PEFT writes them: adapter_config.json + adapter_model.safetensors."""
    from s3ft_jax.models.safetensors_io import save_file
    from s3ft_jax.sharding import global_to_host

    host = jax.tree.map(global_to_host, params)
    if jax.process_index() != 0:
        return out
    out.mkdir(parents=True, exist_ok=True)
    save_file(list(lora_lib.peft_tensors(host, cfg)), out / "adapter_model.safetensors")
    (out / "adapter_config.json").write_text(json.dumps(lora_lib.peft_config(lcfg, base_model), indent=2))
    return out
