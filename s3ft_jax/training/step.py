"""The jitted train step as a pure function, and the LM-head loss that never holds all logits.

Imports only jax, optax and the model, so a bare accelerator host can run the benchmark.

State is a dict {"step", "params" (trainable only, float32 master copies), "opt_state" (for
the trainable params only), "rng"}; frozen parameters (the base model under LoRA) are a
separate argument that is never differentiated, so no gradient or optimizer state exists for
them. Every tensor is placed by the sharding rules: parameters and optimizer state by their
logical axes, batch rows over the data-parallel mesh axes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from s3ft_jax.models.llama import ForwardSpec, hidden_states
from s3ft_jax.training import lora

# Logits per LM-head chunk (rows x positions x vocab): 2048 x 49152 float32 logits are 400 MB;
# a 16M-element chunk keeps that to 64 MB on CPUs. Accelerators get larger chunks (bigger
# matmuls); the choice is StepSpec.head_chunk.
CHUNK_ELEMENTS = 1 << 24
ACCELERATOR_CHUNK_ELEMENTS = 1 << 27


# ----------------------------------------------------------------------------------------
# Pytree helpers: our params are nested dicts, addressed by flat dotted paths.


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def unflatten(flat: dict) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def merge_trees(a: dict, b: dict) -> dict:
    """Deep union of two nested dicts (b wins on a clash)."""
    out = dict(a)
    for key, value in b.items():
        out[key] = merge_trees(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# ----------------------------------------------------------------------------------------
# Loss: cross-entropy on the trained tokens, LM head in chunks with the gradient made on the way.


def lm_head_chunk_len(batch: int, length: int, vocab: int, elements: int = 0) -> int:
    """The largest divisor of `length` whose chunk of batch x c logits fits `elements`."""
    target = max(1, (elements or CHUNK_ELEMENTS) // max(1, batch * vocab))
    return max(d for d in range(1, length + 1) if length % d == 0 and (d <= target or d == 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def lm_head_loss(hidden, head, labels, weights, tied: bool, head_grad: bool, spec: ForwardSpec | None = None, chunk_elements: int = 0, cap: float = 0.0):
    """sum(weights * cross_entropy(hidden @ head, labels)) in float32; with `cap` (Gemma's
    final_logit_softcapping) the logits are cap * tanh(logits / cap) first.

    hidden [B, T, D], head [V, D] (tied) or [D, V], labels/weights [B, T]. The forward pass
    walks T in chunks and computes each chunk's softmax gradient right away, keeping d(hidden)
    and d(head) instead of logits: memory O(chunk x V) and no logits recomputed in backward.
    """
    loss, _ = _lm_head_fwd_impl(hidden, head, labels, weights, tied, head_grad, spec, chunk_elements, cap)
    return loss


def _lm_head_fwd_impl(hidden, head, labels, weights, tied, head_grad, spec, chunk_elements, cap):
    B, T, D = hidden.shape
    V = head.shape[0] if tied else head.shape[1]
    c = lm_head_chunk_len(B, T, V, chunk_elements)
    n = T // c
    cdt = hidden.dtype
    head_c = head.astype(cdt)
    if spec is not None:  # gather the head once (fsdp), keep its vocab split (tensor)
        head_c = spec.constrain(head_c, "act_vocab", None) if tied else spec.constrain(head_c, None, "act_vocab")
    logits_eq, dh_eq, dw_eq = ("bcd,vd->bcv", "bcv,vd->bcd", "bcv,bcd->vd") if tied else ("bcd,dv->bcv", "bcv,dv->bcd", "bcv,bcd->dv")

    def chunks(x):  # [B, T, ...] -> [n, B, c, ...]
        return jnp.moveaxis(x.reshape(B, n, c, *x.shape[2:]), 1, 0)

    def body(carry, xs):
        loss, dhead = carry
        h, y, w = xs
        logits = jnp.einsum(logits_eq, h, head_c, preferred_element_type=jnp.float32)
        if spec is not None:
            logits = spec.constrain(logits, "batch", "seq", "act_vocab")
        if cap:
            capped = jnp.tanh(logits / cap)
            logits = capped * cap
        # exp once, kept for the gradient: logsumexp then exp(logits - lse) made XLA's CPU
        # backend evaluate the exponentials twice, once inside a slow reduction
        # (docs/performance.md).
        m = jnp.max(logits, axis=-1)
        e = jnp.exp(logits - m[..., None])
        s = jnp.sum(e, axis=-1)
        lse = m + jnp.log(s)
        target = jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
        loss = loss + jnp.sum(w * (lse - target))
        g = e * (1.0 / s)[..., None] - jax.nn.one_hot(y, V, dtype=jnp.float32)
        if cap:  # d(cap * tanh(z / cap)) / dz
            g = g * (1.0 - capped * capped)
        g = (g * w[..., None]).astype(cdt)
        dh = jnp.einsum(dh_eq, g, head_c, preferred_element_type=jnp.float32).astype(cdt)
        if head_grad:
            dhead = dhead + jnp.einsum(dw_eq, g, h, preferred_element_type=jnp.float32)
        return (loss, dhead), dh

    dhead0 = jnp.zeros(head.shape if head_grad else (), jnp.float32)
    (loss, dhead), dh = jax.lax.scan(body, (jnp.zeros((), jnp.float32), dhead0), (chunks(hidden), chunks(labels), chunks(weights)))
    dh = jnp.moveaxis(dh, 0, 1).reshape(B, T, D)
    return loss, (dh, dhead)


def _lm_head_fwd(hidden, head, labels, weights, tied, head_grad, spec, chunk_elements, cap):
    loss, (dh, dhead) = _lm_head_fwd_impl(hidden, head, labels, weights, tied, head_grad, spec, chunk_elements, cap)
    # The head rides along only for its shape and dtype (it is alive anyway: a parameter).
    return loss, (dh, dhead, head, labels, weights)


def _lm_head_bwd(tied, head_grad, spec, chunk_elements, cap, res, ct):
    dh, dhead, head, labels, weights = res
    d_head = (ct * dhead).astype(head.dtype) if head_grad else jnp.zeros_like(head)
    return (ct * dh).astype(dh.dtype), d_head, np.zeros(labels.shape, jax.dtypes.float0), jnp.zeros_like(weights)


lm_head_loss.defvjp(_lm_head_fwd, _lm_head_bwd)


# ----------------------------------------------------------------------------------------
# The step.


def _global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


@dataclasses.dataclass(frozen=True)
class StepSpec:
    forward: ForwardSpec
    lora: lora.LoraSettings | None  # None: full fine-tuning
    grad_accum: int = 1
    head_chunk: int = 0  # logits per LM-head chunk; 0: by backend (CPU small, accelerators large)


def loss_fn(params: dict, frozen: dict, batch: dict, key: jax.Array, denom: jax.Array, spec: StepSpec) -> jax.Array:
    """Mean cross-entropy share of one micro-batch: sum(weights * CE) / denom."""
    # Under LoRA the trained tree is the adapters, attached to the frozen base; otherwise it is
    # the whole model (frozen is empty).
    full = lora.attach(frozen, params, spec.lora, key, training=True) if spec.lora is not None else merge_trees(frozen, params)
    fwd = spec.forward
    seg = batch["segment_ids"]
    hidden = hidden_states(full, fwd, batch["input_ids"], batch["positions"], seg > 0, segment_ids=seg)
    # Only the positions that carry loss go through the LM head: per batch shard, a flat
    # index into that shard's rows (see data.make_batch), so the gather never crosses devices.
    R, T, D = hidden.shape
    shards, K = batch["loss_index"].shape
    hidden = jnp.take_along_axis(hidden.reshape(shards, (R // shards) * T, D), batch["loss_index"][..., None], axis=1)
    hidden = fwd.constrain(hidden, "batch", None, "act_embed")
    tied = fwd.cfg.tie_word_embeddings
    head = full["embed"]["embedding"] if tied else full["lm_head"]["kernel"]
    head_grad = spec.lora is None  # under LoRA the head is frozen
    weights = batch["loss_weights"] / denom
    chunk = spec.head_chunk or (CHUNK_ELEMENTS if fwd.backend == "cpu" else ACCELERATOR_CHUNK_ELEMENTS)
    mesh_spec = fwd if fwd.mesh is not None else None
    return lm_head_loss(hidden, head, batch["loss_labels"], weights, tied, head_grad, mesh_spec, chunk, fwd.cfg.final_softcap)


def train_step(state: dict, frozen: dict, batch: dict, *, spec: StepSpec, tx: optax.GradientTransformation, lr: Callable):
    params = state["params"]
    denom = jnp.maximum(jnp.sum(batch["loss_weights"]), 1.0)
    step_key = jax.random.fold_in(state["rng"], state["step"])
    grad_fn = jax.value_and_grad(loss_fn)

    if spec.grad_accum == 1:
        loss, grads = grad_fn(params, frozen, jax.tree.map(lambda x: x[0], batch), jax.random.fold_in(step_key, 0), denom, spec)
    else:

        def micro(carry, xs):
            mb, i = xs
            l, g = grad_fn(params, frozen, mb, jax.random.fold_in(step_key, i), denom, spec)
            return (carry[0] + l, jax.tree.map(jnp.add, carry[1], g)), None

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        (loss, grads), _ = jax.lax.scan(micro, (jnp.zeros((), jnp.float32), zeros), (batch, jnp.arange(spec.grad_accum)))

    grad_norm = _global_norm(grads)
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates), "opt_state": opt_state, "rng": state["rng"]}
    metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": lr(state["step"]), "trained_tokens": jnp.sum(batch["loss_weights"])}
    return new_state, metrics


# ----------------------------------------------------------------------------------------
# Shardings.


def param_shardings(mesh: Mesh, rules, axes: dict[str, tuple], shapes: dict[str, tuple]) -> dict:
    return unflatten({path: rules.named(mesh, axes[path], shapes[path]) for path in shapes})


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(mesh: Mesh, tx, params: dict, param_sh: dict) -> dict:
    abstract = jax.eval_shape(tx.init, params)
    opt_sh = optax.tree_map_params(tx, lambda _, s: s, abstract, param_sh, transform_non_params=lambda _: replicated(mesh))
    return {"step": replicated(mesh), "params": param_sh, "opt_state": opt_sh, "rng": replicated(mesh)}


# What the step reads of a host batch (data.make_batch also returns the full labels/weights).
STEP_KEYS = ("input_ids", "positions", "segment_ids", "loss_index", "loss_labels", "loss_weights")


def batch_sharding(mesh: Mesh, rules, shape: tuple[int, ...]) -> NamedSharding:
    return rules.named(mesh, (None, "batch", None), shape)


def rows_multiple(mesh: Mesh, rules) -> int:
    """Batch rows must split evenly over the mesh axes that hold the batch."""
    axes = rules.mesh_axes("batch")
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    return math.prod(mesh.shape[a] for a in axes)


def compile_step(spec: StepSpec, tx, lr, state_sh: dict, frozen_sh: dict, mesh: Mesh):
    """The jitted step: state donated (updated in place), batch sharded by rows."""
    fn = functools.partial(train_step, spec=spec, tx=tx, lr=lr)
    return jax.jit(fn, in_shardings=(state_sh, frozen_sh, None), out_shardings=(state_sh, replicated(mesh)), donate_argnums=(0,))


def init_state(params: dict, tx, state_sh: dict, seed: int) -> dict:
    """Fresh state for `params` (already placed): optimizer moments made directly in their shardings."""
    opt_state = jax.jit(tx.init, out_shardings=state_sh["opt_state"])(params)
    rng = jax.device_put(jax.random.key_data(jax.random.key(seed)), state_sh["rng"])
    return {"step": jax.device_put(jnp.zeros((), jnp.int32), state_sh["step"]), "params": params, "opt_state": opt_state, "rng": rng}
