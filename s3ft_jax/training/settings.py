"""What a fine-tuning run is asked to do: typed, frozen, checked when made.

`TrainSettings` holds every `train.*` key of the configuration plus the few top-level ones a
run reads (the model, its dtypes, the seed); `LoraSettings` the `lora.*` keys (a run without
one is full fine-tuning). The command line builds them once (`s3ft_jax.config.train_settings`,
`lora_settings`); everything in this package takes them, never the config tree. A bad value
raises a one-line ConfigError naming the config key, so the command line reports it as it
reports any other bad key. Standard library only: the command line checks a config without
loading JAX.

`run_id` is the run's fingerprint: a digest of every setting that changes the trained bits.
A checkpoint carries it, and a resume under any other fingerprint is refused, so a run is never
continued with settings it did not start with.
"""

from __future__ import annotations

import dataclasses

from s3ft_jax.errors import ConfigError
from s3ft_jax.io import json_digest
from s3ft_jax.models.settings import DTYPES

# Field metadata: settings that change how a run is observed or saved, not what it computes.
# Every other field enters the run's fingerprint (a new field does unless marked).
NOT_IN_FINGERPRINT = {"fingerprint": False}
REPORTERS = ("none", "tensorboard", "wandb")


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    model_name: str  # an embedded model name, a local HF directory or a hub id (model.name)
    dtype: str = "float32"  # compute dtype (model.dtype); trained weights are float32 master copies
    param_dtype: str | None = None  # storage dtype of frozen (LoRA base) weights; None: float32
    chat_template: str = ""  # model.chat_template: renders the training prompts
    seed: int = 0
    dataset: str = dataclasses.field(default="", metadata=NOT_IN_FINGERPRINT)  # empty: <workdir>/dataset.jsonl
    learning_rate: float = 1e-4
    schedule: str = "cosine"  # cosine | linear | constant, after the warmup
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0: a fraction of all steps
    end_lr_ratio: float = 0.0  # the decay ends at learning_rate * end_lr_ratio
    num_epochs: int = 3
    max_steps: int = 0  # > 0: stop after this many optimizer steps (overrides num_epochs)
    batch_size: int = 8  # global examples (rows when packing) per optimizer step
    grad_accum: int = 1  # micro-batches per step
    max_length: int = 1024
    packing: bool = False
    clip_norm: float = 1.0  # 0 disables
    weight_decay: float = 0.0
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    remat: str = "minimal"  # minimal | none | dots | full
    attention: str = "xla"  # xla | cudnn | dot_product
    checkpoint_every: int = dataclasses.field(default=100, metadata=NOT_IN_FINGERPRINT)
    keep_checkpoints: int = dataclasses.field(default=2, metadata=NOT_IN_FINGERPRINT)
    async_checkpoints: bool = dataclasses.field(default=True, metadata=NOT_IN_FINGERPRINT)
    log_every: int = dataclasses.field(default=1, metadata=NOT_IN_FINGERPRINT)
    progress: bool = dataclasses.field(default=True, metadata=NOT_IN_FINGERPRINT)
    # Where per-step metrics go besides metrics.jsonl: "none", "tensorboard", "wandb", or a
    # comma-separated list ("tensorboard,wandb").
    report_to: str = dataclasses.field(default="tensorboard", metadata=NOT_IN_FINGERPRINT)

    def __post_init__(self) -> None:
        for key in ("dtype", "param_dtype"):
            value = getattr(self, key)
            if value is not None and value not in DTYPES:
                raise ConfigError(f"model.{key} must be float32, bfloat16 or float16, got {value!r}")
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate must be positive, got {self.learning_rate}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ConfigError(f"train.schedule must be cosine, linear or constant, got {self.schedule!r}")
        for key in ("batch_size", "grad_accum", "max_length", "log_every"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"train.{key} must be positive, got {getattr(self, key)}")
        for key in ("warmup_steps", "max_steps", "checkpoint_every", "keep_checkpoints", "num_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {getattr(self, key)}")
        if self.max_steps == 0 and self.num_epochs == 0:
            raise ConfigError("set train.num_epochs or train.max_steps")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"train.batch_size {self.batch_size} must be a multiple of train.grad_accum {self.grad_accum}")
        if self.max_length < 2:
            raise ConfigError(f"train.max_length must be at least 2, got {self.max_length}")
        for key in ("warmup_ratio", "end_lr_ratio"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"train.{key} must be in [0, 1], got {getattr(self, key)}")
        if self.warmup_steps and self.warmup_ratio:
            raise ConfigError("set train.warmup_steps or train.warmup_ratio, not both")
        if self.clip_norm < 0 or self.weight_decay < 0:
            raise ConfigError("train.clip_norm and train.weight_decay must be >= 0")
        if self.remat not in ("minimal", "none", "full", "dots"):
            raise ConfigError(f"train.remat must be minimal, none, full or dots, got {self.remat!r}")
        if self.attention not in ("xla", "cudnn", "dot_product"):
            raise ConfigError(f"train.attention must be xla or cudnn, got {self.attention!r}")
        unknown = [r for r in self.reporters if r not in REPORTERS]
        if unknown or ("none" in self.reporters and len(self.reporters) > 1):
            raise ConfigError(f"train.report_to must be none or a comma-separated list of tensorboard, wandb; "
                              f"got {self.report_to!r}")
        if self.attention != "xla" and self.packing:
            raise ConfigError("train.attention=cudnn needs train.packing=False (packed rows need segment masks)")

    @property
    def reporters(self) -> tuple[str, ...]:
        """train.report_to as names ("none" -> ())."""
        names = tuple(dict.fromkeys(r.strip() for r in self.report_to.split(",")))
        return () if names == ("none",) else names

    @property
    def rows_per_micro_batch(self) -> int:
        return self.batch_size // self.grad_accum

    def warmup(self, total_steps: int) -> int:
        """Warmup steps of a run of `total_steps`: warmup_steps, else warmup_ratio of the run."""
        return self.warmup_steps or int(round(self.warmup_ratio * total_steps))


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    """The adapters of a LoRA run (the `lora.*` config keys); checked when made."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    targets: tuple[str, ...] = ("q_proj", "v_proj")  # names or patterns: "*_proj", "mlp.*"

    def __post_init__(self) -> None:
        if self.rank <= 0 or self.alpha <= 0:
            raise ConfigError(f"lora.rank and lora.alpha must be positive, got {self.rank} and {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        targets = self.targets
        if isinstance(targets, str) or not targets or not all(isinstance(s, str) and s for s in targets):
            raise ConfigError(f"lora.targets must be a non-empty tuple of names, got {targets!r}")
        # "q_proj,v_proj" (PEFT/TRL's comma form, which the command line delivers as one
        # element) means the names it lists. A tuple also makes a list from Python hashable.
        targets = tuple(name.strip() for item in targets for name in item.split(","))
        if not all(targets):
            raise ConfigError(f"lora.targets has an empty name: {self.targets!r}")
        object.__setattr__(self, "targets", targets)
        match_targets(targets)  # an unknown name fails here, in the first second

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def match_targets(targets) -> tuple[str, ...]:
    """The projections matched by `targets`: names or shell patterns ("*_proj", "self_attn.*"),
    in the parameter table's order. Patterns are matched against both our name ("q_proj") and
    HF's dotted one ("self_attn.q_proj", "mlp.down_proj"), so PEFT-style lists work as they are."""
    import fnmatch

    from s3ft_jax.models.params import HF_MODULES, LORA_PROJECTIONS  # numpy, no JAX

    matched = []
    for pattern in targets:
        hits = [n for n in LORA_PROJECTIONS if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(HF_MODULES[n], pattern)]
        if not hits:
            raise ConfigError(f"lora.targets: {pattern!r} matches no projection (have {', '.join(LORA_PROJECTIONS)})")
        matched += [h for h in hits if h not in matched]
    return tuple(n for n in LORA_PROJECTIONS if n in matched)




def settings_fingerprint(settings: TrainSettings, lora: LoraSettings | None) -> dict:
    """Every setting that changes the trained bits: the adapters (None: full fine-tuning) and
    each TrainSettings field not marked NOT_IN_FINGERPRINT. One definition, read by `run_id`
    and by the pipeline's identity of a trained model."""
    fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.metadata.get("fingerprint", True)}
    if not settings.chat_template:  # unset: left out, so runs from before the setting keep their id
        del fields["chat_template"]
    return {"train": fields, "lora": dataclasses.asdict(lora) if lora is not None else None}


def run_id(settings: TrainSettings, lora: LoraSettings | None, dataset_sha: str, n_steps: int) -> str:
    """The run's fingerprint: the data, the step count and `settings_fingerprint`."""
    return json_digest({"data": dataset_sha, "steps": n_steps, **settings_fingerprint(settings, lora)})
