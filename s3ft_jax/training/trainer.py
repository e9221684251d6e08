"""`setup(...)`: base weights + settings -> everything a training step needs, on a mesh.

One call shared by `train` (loop.py), the benchmarks and any other tool that steps a model:
the trainable/frozen split (LoRA adapters or all weights), the optimizer and its schedule,
the state's shardings, the initial state and the compiled step. Loading weights and data is
the caller's business, so a benchmark can hand in random weights and a hand-made batch.

    trainer = setup(base, model.cfg, model.spec, settings, lora, mesh, total_steps=100)
    state = trainer.take_state()
    state, metrics = trainer.step(state, trainer.frozen, trainer.device_batch(host_batch))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import optax

from s3ft_jax.errors import S3FTError
from s3ft_jax.models.config import ModelConfig
from s3ft_jax.models.llama import ForwardSpec
from s3ft_jax.sharding import host_to_global
from s3ft_jax.training import lora as lora_lib
from s3ft_jax.training import step as step_lib
from s3ft_jax.training.optimizer import OptimizerConfig, make_optimizer
from s3ft_jax.training.settings import TrainSettings


@dataclasses.dataclass
class Trainer:
    cfg: ModelConfig
    forward: ForwardSpec  # the model's spec with the run's remat and attention
    lora: lora_lib.LoraSettings | None  # None: full fine-tuning
    mesh: jax.sharding.Mesh
    tx: optax.GradientTransformation
    learning_rate: Callable  # the schedule: step -> learning rate
    state_shardings: dict
    frozen_shardings: dict
    state: dict | None  # the initial state {"step", "params" (trainable), "opt_state", "rng"}; see take_state
    frozen: dict  # parameters that are not trained (the base model under LoRA; {} otherwise)
    step: Callable  # jitted (state, frozen, batch) -> (state, metrics); the state is donated
    rows_multiple: int  # batch rows per micro-batch must be a multiple of this (data-parallel devices)

    def take_state(self) -> dict:
        """The initial state, handed over once: the trainer keeps no reference to it, so a
        checkpoint restored in its place frees its memory."""
        state, self.state = self.state, None
        if state is None:
            raise RuntimeError("the initial state was already taken")
        return state

    def device_batch(self, host: dict) -> dict:
        """A host batch (`data.make_batch`) as the step reads it: its keys, placed by rows."""
        rules = self.forward.rules
        return {k: host_to_global(host[k], step_lib.batch_sharding(self.mesh, rules, host[k].shape)) for k in step_lib.STEP_KEYS}


def setup(
    base: dict,
    cfg: ModelConfig,
    forward: ForwardSpec,
    settings: TrainSettings,
    lora: lora_lib.LoraSettings | None,
    mesh: jax.sharding.Mesh,
    total_steps: int,
) -> Trainer:
    """The trainer of a run of `total_steps` steps, starting from `base` (a nested dict of the
    model's parameters, placed on `mesh`; float32 where trained). `base` is consumed: its
    arrays become the state's or the frozen parameters."""
    if settings.attention != "xla" and any(cfg.sliding_windows):
        raise S3FTError("train.attention=cudnn does not support sliding-window attention: use train.attention=xla")
    forward = dataclasses.replace(forward, remat=settings.remat, attention=settings.attention)
    params, frozen, params_sh, frozen_sh = split_params(base, cfg, forward, lora, mesh, settings.seed)
    tx, lr = make_tx(settings, total_steps)
    state_sh = step_lib.state_shardings(mesh, tx, params, params_sh)
    state = step_lib.init_state(params, tx, state_sh, settings.seed)
    del params
    spec = step_lib.StepSpec(forward=forward, lora=lora, grad_accum=settings.grad_accum)
    return Trainer(
        cfg=cfg, forward=forward, lora=lora, mesh=mesh, tx=tx, learning_rate=lr, state_shardings=state_sh,
        frozen_shardings=frozen_sh, state=state, frozen=frozen, step=step_lib.compile_step(spec, tx, lr, state_sh, frozen_sh, mesh),
        rows_multiple=step_lib.rows_multiple(mesh, forward.rules),
    )  # fmt: skip


def split_params(base: dict, cfg: ModelConfig, spec: ForwardSpec, lora: lora_lib.LoraSettings | None, mesh, seed: int):
    """(trainable, frozen, trainable shardings, frozen shardings): under LoRA, fresh adapters
    (drawn from `seed`) are trained and `base` is frozen; otherwise all of `base` is trained."""
    from s3ft_jax.models.params import param_logical_axes, param_shapes

    axes, shapes = param_logical_axes(cfg), param_shapes(cfg)
    base_sh = step_lib.param_shardings(mesh, spec.rules, axes, shapes)
    if lora is None:
        return base, {}, base_sh, {}
    a_shapes, a_sh = adapter_layout(cfg, spec, lora, mesh)
    key = jax.random.fold_in(jax.random.key(seed), 1)
    init = jax.jit(lambda k: lora_lib.init_adapters(k, a_shapes), out_shardings=a_sh)
    return init(key), base, a_sh, base_sh


def adapter_layout(cfg: ModelConfig, spec: ForwardSpec, lora: lora_lib.LoraSettings, mesh) -> tuple[dict, dict]:
    """The LoRA adapters' flat shapes and their shardings (a typed adapter tree)."""
    from s3ft_jax.models.params import param_logical_axes, param_shapes

    a_shapes = lora_lib.adapter_shapes(cfg, lora, param_shapes(cfg))
    a_axes = lora_lib.adapter_logical_axes(a_shapes, param_logical_axes(cfg))
    return a_shapes, lora_lib.adapter_tree({path: spec.rules.named(mesh, a_axes[path], a_shapes[path]) for path in a_shapes})


def make_tx(settings: TrainSettings, total_steps: int):
    """The optimizer and its learning-rate schedule for a run of `total_steps` steps."""
    s = settings
    ocfg = OptimizerConfig(
        learning_rate=s.learning_rate, schedule=s.schedule, warmup_steps=s.warmup(total_steps), total_steps=total_steps,
        end_lr_ratio=s.end_lr_ratio, weight_decay=s.weight_decay, b1=s.adam_b1, b2=s.adam_b2, eps=s.adam_eps,
        clip_norm=s.clip_norm,
    )  # fmt: skip
    return make_optimizer(ocfg)


def load_base(settings: TrainSettings, mesh, *, trainable_all: bool):
    """The base model's parameters as a nested dict (float32 where they are trained), its
    config and forward spec."""
    from flax import nnx

    from s3ft_jax.models import from_pretrained

    from s3ft_jax.models.params import held_dtype

    param_dtype = "float32" if trainable_all else (settings.param_dtype or "float32")
    model = from_pretrained(settings.model_name, dtype=settings.dtype, param_dtype=param_dtype, mesh=mesh)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    if not trainable_all:  # LoRA's frozen base is only read: held in the compute dtype (same results)
        params = _map_leaves(lambda path, x: x.astype(held_dtype(path, x.dtype, settings.dtype)), params)
    return params, model.cfg, model.spec


def _map_leaves(fn, tree: dict, prefix: str = "") -> dict:
    return {k: _map_leaves(fn, v, f"{prefix}{k}.") if isinstance(v, dict) else fn(f"{prefix}{k}", v) for k, v in tree.items()}
