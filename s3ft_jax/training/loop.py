"""`train(config, dataset_path, workdir)`: the fine-tuning run, resumable at any checkpoint.

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
from pathlib import Path

import jax
import numpy as np

from s3ft_jax.errors import S3FTError
from s3ft_jax.io import file_digest, json_digest
from s3ft_jax.sharding import host_to_global
from s3ft_jax.training import data as data_lib
from s3ft_jax.training import lora as lora_lib
from s3ft_jax.training import step as step_lib
from s3ft_jax.training.optimizer import OptimizerConfig, make_optimizer

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


def lora_config(config) -> lora_lib.LoraConfig | None:
    if not config.lora.enabled:
        return None
    c = config.lora
    return lora_lib.LoraConfig(rank=int(c.rank), alpha=float(c.alpha), dropout=float(c.dropout), targets=tuple(c.targets))


def run_id(config, dataset_sha: str, n_steps: int) -> str:
    """What must not change between a run and its resume: data order and parameter layout."""
    t, lc = config.train, lora_config(config)
    key = {
        "data": dataset_sha, "seed": config.seed, "model": str(config.model.name), "batch_size": t.batch_size,
        "grad_accum": t.grad_accum, "max_length": t.max_length, "packing": t.packing, "steps": n_steps,
        "lora": dataclasses.asdict(lc) if lc else None,
    }  # fmt: skip
    return json_digest(key)


def load_base(config, mesh, *, trainable_all: bool):
    """Base parameters as a nested dict (float32 where they are trained) and the model config."""
    from flax import nnx

    from s3ft_jax.models import from_pretrained

    param_dtype = "float32" if trainable_all else (config.model.param_dtype or "float32")
    model = from_pretrained(config.model.name, dtype=config.model.dtype, param_dtype=param_dtype, mesh=mesh)
    return nnx.to_pure_dict(nnx.state(model, nnx.Param)), model.cfg, model.spec


def split_params(base: dict, cfg, spec, lcfg, mesh, seed: int):
    """(trainable, frozen, trainable shardings, frozen shardings)."""
    from s3ft_jax.models.llama import param_logical_axes, param_shapes

    axes, shapes = param_logical_axes(cfg), param_shapes(cfg)
    base_sh = step_lib.param_shardings(mesh, spec.rules, axes, shapes)
    if lcfg is None:
        return base, {}, base_sh, {}
    a_shapes, a_sh = adapter_layout(cfg, spec, lcfg, mesh)
    key = jax.random.fold_in(jax.random.key(seed), 1)
    init = jax.jit(lambda k: step_lib.unflatten(lora_lib.init_adapters(k, a_shapes)), out_shardings=a_sh)
    return init(key), base, a_sh, base_sh


def adapter_layout(cfg, spec, lcfg, mesh) -> tuple[dict, dict]:
    """The LoRA adapters' flat shapes and their (nested) shardings."""
    from s3ft_jax.models.llama import param_logical_axes, param_shapes

    a_shapes = lora_lib.adapter_shapes(cfg, lcfg, param_shapes(cfg))
    a_axes = lora_lib.adapter_logical_axes(a_shapes, param_logical_axes(cfg))
    return a_shapes, step_lib.param_shardings(mesh, spec.rules, a_axes, a_shapes)


def make_tx(config, total: int):
    """The optimizer and its learning-rate schedule for a run of `total` steps."""
    t = config.train
    warmup = t.warmup_steps or int(round(t.warmup_ratio * total))
    ocfg = OptimizerConfig(
        learning_rate=t.learning_rate, schedule=t.schedule, warmup_steps=warmup, total_steps=total,
        end_lr_ratio=t.end_lr_ratio, weight_decay=t.weight_decay, b1=t.adam_b1, b2=t.adam_b2, eps=t.adam_eps,
        clip_norm=t.clip_norm,
    )  # fmt: skip
    return make_optimizer(ocfg)


def train(config, dataset_path: str | Path | None = None, workdir: str | Path | None = None, *, mesh=None) -> TrainResult:
    """Fine-tune config.model.name on the dataset; resumes from <workdir>/train if it holds checkpoints."""
    from s3ft_jax.config import mesh_shape
    from s3ft_jax.models import load_tokenizer
    from s3ft_jax.sharding import make_mesh
    from s3ft_jax.training.checkpoint import Checkpointer, kill_hook
    from s3ft_jax.training.metrics import MetricsWriter

    t = config.train
    workdir = Path(workdir if workdir is not None else config.workdir)
    dataset_path = Path(dataset_path or t.dataset or workdir / "dataset.jsonl")
    run_dir = workdir / "train"
    mesh = mesh if mesh is not None else make_mesh(mesh_shape(config))
    lcfg = lora_config(config)
    if lcfg is not None:
        lora_lib.target_modules(lcfg.targets)  # a bad pattern fails before any loading

    tokenizer = load_tokenizer(config.model.name)
    examples, stats = data_lib.tokenize(data_lib.read_rows(dataset_path), tokenizer, t.max_length)
    plan = data_lib.plan_steps(
        examples, seed=config.seed, batch_size=t.batch_size, num_epochs=t.num_epochs, max_steps=t.max_steps,
        packing=t.packing, max_length=t.max_length,
    )  # fmt: skip
    total = len(plan)
    log.info(
        "training data: %d examples (%d truncated, %d dropped), %d target tokens; %d steps of %d %s",
        stats.examples, stats.truncated, stats.dropped, stats.trained_tokens, total, t.batch_size,
        "packed rows" if t.packing else "examples",
    )  # fmt: skip

    base, cfg, fwd = load_base(config, mesh, trainable_all=lcfg is None)
    if t.attention != "xla" and any(cfg.sliding_windows):
        raise S3FTError("train.attention=cudnn does not support sliding-window attention: use train.attention=xla")
    fwd = dataclasses.replace(fwd, remat=t.remat, attention=t.attention)
    params, frozen, params_sh, frozen_sh = split_params(base, cfg, fwd, lcfg, mesh, config.seed)
    del base
    tx, lr = make_tx(config, total)
    state_sh = step_lib.state_shardings(mesh, tx, params, params_sh)
    state = step_lib.init_state(params, tx, state_sh, config.seed)
    del params

    rid = run_id(config, file_digest(dataset_path), total)
    ckpt = Checkpointer(run_dir / "checkpoints", keep=t.keep_checkpoints, async_save=t.async_checkpoints)
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
        "LoRA" if lcfg else "full", f"{n_params:,}", dict(mesh.shape), config.model.dtype, t.remat,
    )  # fmt: skip

    spec = step_lib.StepSpec(forward=fwd, lora=lcfg, grad_accum=t.grad_accum)
    step_fn = step_lib.compile_step(spec, tx, lr, state_sh, frozen_sh, mesh)
    multiple = step_lib.rows_multiple(mesh, fwd.rules)
    if (t.batch_size // t.grad_accum) % multiple:
        log.warning(
            "%d rows per micro-batch do not split over %d data-parallel devices: padding with masked rows",
            t.batch_size // t.grad_accum, multiple,
        )  # fmt: skip

    writer = MetricsWriter(run_dir, total_steps=total, start_step=start, progress=t.progress)
    pending: list = []
    clock = time.perf_counter()

    def flush():
        nonlocal clock, last_loss
        if not pending:
            return
        values = jax.device_get([m for _, m, _, _ in pending])
        now = time.perf_counter()
        tokens = sum(n for _, _, n, _ in pending)
        for (step, _, n, epoch), m in zip(pending, values):
            last_loss = float(m["loss"])
            if not np.isfinite(last_loss):
                raise S3FTError(f"loss is {last_loss} at step {step}: lower train.learning_rate or check the data")
            writer.write({
                "step": step, "epoch": epoch, "loss": last_loss, "learning_rate": float(m["learning_rate"]),
                "grad_norm": float(m["grad_norm"]), "trained_tokens": int(m["trained_tokens"]),
                "tokens": n, "tokens_per_s": tokens / max(now - clock, 1e-9),
            })  # fmt: skip
        pending.clear()
        clock = now

    try:
        for s in range(start, total):
            epoch, rows = plan[s]
            host = data_lib.make_batch(
                examples, rows, num_rows=t.batch_size, grad_accum=t.grad_accum, row_multiple=multiple, max_length=t.max_length
            )
            if not host["weights"].any():
                raise S3FTError(f"step {s + 1}: the batch has no target token to train on (check the loss masks)")
            batch = {k: host_to_global(host[k], step_lib.batch_sharding(mesh, fwd.rules, host[k].shape)) for k in step_lib.STEP_KEYS}
            state, metrics = step_fn(state, frozen, batch)
            done = s + 1
            pending.append((done, metrics, int((host["segment_ids"] > 0).sum()), epoch))
            is_ckpt = done == total or (t.checkpoint_every and done % t.checkpoint_every == 0)
            if done % t.log_every == 0 or is_ckpt:
                flush()
            if is_ckpt:
                position = {"epoch": epoch, "batch_in_epoch": sum(1 for e, _ in plan[:done] if e == epoch)}
                ckpt.save(done, state, {"step": done, "run_id": rid, **position, "loss": last_loss})
            kill_hook(done, ckpt)
        flush()
    finally:
        writer.close()
        ckpt.close()

    adapter_path = None
    if lcfg is not None:
        adapter_path = save_adapter(state["params"], cfg, lcfg, str(config.model.name), run_dir / "adapter")
    if jax.process_index() == 0:
        summary = {"steps": total, "final_loss": last_loss, "method": "lora" if lcfg else "full", "data": dataclasses.asdict(stats)}
        (run_dir / "run.json").write_text(json.dumps(summary, indent=2))
    return TrainResult(
        run_dir=run_dir, checkpoint_dir=run_dir / "checkpoints", metrics_path=writer.path, adapter_path=adapter_path,
        steps=total, final_loss=last_loss, method="lora" if lcfg else "full",
    )  # fmt: skip


def save_adapter(params: dict, cfg, lcfg: lora_lib.LoraConfig, base_model: str, out: Path) -> Path:
    """The adapters as PEFT writes them: adapter_config.json + adapter_model.safetensors."""
    from s3ft_jax.models.safetensors_io import save_file
    from s3ft_jax.sharding import global_to_host

    flat = {path: global_to_host(v) for path, v in step_lib.flatten(params).items()}
    if jax.process_index() != 0:
        return out
    out.mkdir(parents=True, exist_ok=True)
    save_file(list(lora_lib.peft_tensors(flat, cfg)), out / "adapter_model.safetensors")
    (out / "adapter_config.json").write_text(json.dumps(lora_lib.peft_config(lcfg, base_model), indent=2))
    return out
