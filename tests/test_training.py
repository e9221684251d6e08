"""Training on tiny models: masks, packing, LoRA, overfitting, mesh equivalence, export."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s3ft_jax.errors import ConfigError, S3FTError
from s3ft_jax.models import from_pretrained, load_tokenizer
from s3ft_jax.models.llama import forward
from s3ft_jax.sharding import make_mesh
from s3ft_jax.training import data as data_lib
from s3ft_jax.training import lora as lora_lib
from s3ft_jax.training import step as step_lib
from s3ft_jax.training.metrics import read_metrics
from tests.train_helpers import make_tiny_dir, train_run, write_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dir(tmp_path_factory.mktemp("tiny_train"))


@pytest.fixture(scope="module")
def tiny_untied(tmp_path_factory):
    return make_tiny_dir(tmp_path_factory.mktemp("tiny_llama3"), family="llama3")


def _examples(model_dir, tmp_path, n=4, **kw):
    rows = write_dataset(tmp_path / "d.jsonl", n, **kw)
    return data_lib.tokenize(rows, load_tokenizer(model_dir), 1024)


# ----------------------------------------------------------------------------------------
# Data and masks


def test_loss_weights_cover_exactly_target_and_eos(tiny, tmp_path):
    tok = load_tokenizer(tiny)
    (ex,), _ = data_lib.tokenize([{"prompt": "w10 w11", "target": "w20 w21 w22"}], tok, 1024)
    # <|user|> w10 w11 <|end|> <|assistant|> | w20 w21 w22 </s>
    assert ex.tokens.tolist() == [3, 10, 11, 5, 4, 20, 21, 22, 2] and ex.n_prompt == 5
    b = data_lib.make_batch([ex], [[0]], num_rows=1, grad_accum=1, row_multiple=1, max_length=1024)
    n = ex.row_length
    trained = b["labels"][0, 0, :n][b["weights"][0, 0, :n] > 0].tolist()
    assert trained == [20, 21, 22, 2]  # targets and EOS, never a prompt token
    assert b["weights"][0, 0, n:].sum() == 0 and b["input_ids"].shape[-1] == 16  # bucketed length


def test_truncation_and_rejection(tiny, caplog):
    tok = load_tokenizer(tiny)
    rows = [{"prompt": "w10 " * 5, "target": "w20 " * 20}, {"prompt": "w10 " * 30, "target": "w20"}]
    (ex,), stats = data_lib.tokenize(rows, tok, 16)
    assert len(ex.tokens) == 16 and stats.truncated == 2 and stats.dropped == 1
    with pytest.raises(S3FTError, match="no example has a target token"):
        data_lib.tokenize(rows[1:], tok, 16)


@pytest.mark.fast
def test_bad_dataset_rows(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "target": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(S3FTError, match="bad.jsonl:2: needs a string field 'target'"):
        data_lib.read_rows(path)


def test_plan_is_deterministic_and_covers_each_epoch(tiny, tmp_path):
    examples, _ = _examples(tiny, tmp_path, n=10)
    kw = dict(seed=3, batch_size=4, num_epochs=2, max_steps=0, packing=False, max_length=1024)
    plan = data_lib.plan_steps(examples, **kw)
    assert plan == data_lib.plan_steps(examples, **kw)
    assert len(plan) == 6  # 3 batches per epoch, the last one of 2 rows
    for epoch in (0, 1):
        seen = sorted(i for e, rows in plan if e == epoch for row in rows for i in row)
        assert seen == list(range(10))
    assert plan[0] != plan[3]  # each epoch has its own order


def _loss_and_grads(model_dir, batch, *, lcfg=None, params=None):
    model = from_pretrained(model_dir)
    from flax import nnx

    base = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    frozen, trainable = ({}, base) if lcfg is None else (base, params)
    spec = step_lib.StepSpec(forward=model.spec, lora=lcfg)
    host = {k: jnp.asarray(batch[k][0]) for k in step_lib.STEP_KEYS}
    denom = jnp.maximum(host["loss_weights"].sum(), 1.0)
    return jax.value_and_grad(step_lib.loss_fn)(trainable, frozen, host, jax.random.key(0), denom, spec)


def test_loss_is_masked_mean_over_target_tokens_only(tiny, tmp_path):
    """The step's loss (LM head on gathered target positions) equals a naive masked mean over
    full logits; prompt labels, padding and a fully masked filler row change nothing."""
    examples, _ = _examples(tiny, tmp_path, n=3)
    batch = data_lib.make_batch(examples, [[0], [1], [2]], num_rows=3, grad_accum=1, row_multiple=2, max_length=1024)
    assert batch["input_ids"].shape[1] == 4 and batch["loss_index"].shape[:2] == (1, 2)
    assert batch["loss_weights"].sum() == batch["weights"].sum() > 0
    loss, grads = _loss_and_grads(tiny, batch)

    model = from_pretrained(tiny)
    logits = forward(nnx_params(model), model.spec, jnp.asarray(batch["input_ids"][0]), jnp.asarray(batch["segment_ids"][0] > 0))
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.asarray(batch["labels"][0])[..., None], axis=-1)[..., 0]
    w = batch["weights"][0]
    assert float(loss) == pytest.approx(float((nll * w).sum() / w.sum()), rel=1e-5)

    noisy = {k: v.copy() for k, v in batch.items()}
    rng = np.random.RandomState(0)
    noisy["labels"][noisy["weights"] == 0] = rng.randint(0, 300, (noisy["weights"] == 0).sum())
    noisy["input_ids"][0, 3] = rng.randint(0, 300, noisy["input_ids"].shape[-1])  # the filler row
    noisy = {**noisy, **{k: v for k, v in data_lib.make_batch(examples, [[0], [1], [2]], num_rows=3, grad_accum=1, row_multiple=2, max_length=1024).items() if k.startswith("loss_")}}
    loss2, grads2 = _loss_and_grads(tiny, noisy)
    assert float(loss) == pytest.approx(float(loss2), abs=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads2)):
        np.testing.assert_allclose(a, b, atol=1e-6)



@pytest.mark.fast
@pytest.mark.parametrize("tied, cap", [(True, 0.0), (False, 0.0), (True, 3.0)])
def test_lm_head_loss_and_gradients_equal_autodiff_of_full_logits(tied, cap):
    """The chunked LM-head loss (gradient made in the forward pass) equals autodiff of
    sum(w * cross_entropy(h @ head, y)) over full logits, for several chunks; with a soft cap
    (Gemma's final_logit_softcapping) over cap * tanh(logits / cap)."""
    rng = np.random.RandomState(1)
    B, T, D, V = 2, 12, 16, 50
    hidden = jnp.asarray(rng.randn(B, T, D).astype(np.float32))
    head = jnp.asarray(rng.randn(*((V, D) if tied else (D, V))).astype(np.float32) * 0.5)
    labels = jnp.asarray(rng.randint(0, V, (B, T)).astype(np.int32))
    weights = jnp.asarray((rng.rand(B, T) < 0.7).astype(np.float32) / 9.0)

    def reference(h, w_head):
        logits = jnp.einsum("btd,vd->btv" if tied else "btd,dv->btv", h, w_head)
        if cap:
            logits = cap * jnp.tanh(logits / cap)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1)[..., 0]
        return jnp.sum(weights * nll)

    def ours(h, w_head):
        return step_lib.lm_head_loss(h, w_head, labels, weights, tied, True, None, B * 4 * V, cap)  # 3 chunks of 4

    assert step_lib.lm_head_chunk_len(B, T, V, B * 4 * V) == 4
    np.testing.assert_allclose(ours(hidden, head), reference(hidden, head), rtol=1e-5)
    got = jax.grad(ours, argnums=(0, 1))(hidden, head)
    want = jax.grad(reference, argnums=(0, 1))(hidden, head)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def nnx_params(model):
    from flax import nnx

    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def test_packed_rows_equal_separate_rows(tiny, tmp_path):
    examples, _ = _examples(tiny, tmp_path, n=3)
    separate = data_lib.make_batch(examples, [[0], [1], [2]], num_rows=3, grad_accum=1, row_multiple=1, max_length=1024)
    packed = data_lib.make_batch(examples, [[0, 1, 2]], num_rows=1, grad_accum=1, row_multiple=1, max_length=1024)
    assert packed["segment_ids"][0, 0].max() == 3
    (l1, g1), (l2, g2) = _loss_and_grads(tiny, separate), _loss_and_grads(tiny, packed)
    assert float(l1) == pytest.approx(float(l2), rel=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, atol=1e-5)


# ----------------------------------------------------------------------------------------
# LoRA


@pytest.mark.parametrize("family_fixture", ["tiny", "tiny_untied"])
def test_lora_merge_equals_unmerged_forward(family_fixture, request):
    from flax import nnx

    model_dir = request.getfixturevalue(family_fixture)
    model = from_pretrained(model_dir)
    base = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    lcfg = lora_lib.LoraSettings(rank=4, alpha=8.0, dropout=0.0, targets=("*_proj",))
    shapes = lora_lib.adapter_shapes(model.cfg, lcfg, {k: v.shape for k, v in step_lib.flatten(base).items()})
    assert len(shapes) == 14
    adapters = lora_lib.adapter_tree({k: 0.1 * jax.random.normal(jax.random.key(i), s) for i, (k, s) in enumerate(shapes.items())})
    ids = jnp.asarray(np.random.RandomState(0).randint(3, 300, (2, 70)))
    unmerged = forward(lora_lib.attach(base, adapters, lcfg, None, training=False), model.spec, ids)
    merged = forward(lora_lib.merge(base, adapters, lcfg), model.spec, ids)
    plain = forward(base, model.spec, ids)
    assert float(jnp.abs(unmerged - plain).max()) > 1e-2  # the adapters matter...
    np.testing.assert_allclose(merged, unmerged, atol=2e-4)  # ...and merge exactly


@pytest.mark.fast
def test_projection_rejects_a_misspelt_or_unattached_adapter():
    """A projection holds kernel, bias and an Adapter under `lora`: anything else fails loudly
    instead of silently running the base model."""
    from s3ft_jax.models.adapter import Adapter, LoraWeights
    from s3ft_jax.models.llama import project

    x, kernel = jnp.ones((1, 2, 4)), jnp.ones((4, 3))
    weights = LoraWeights(jnp.ones((4, 2)), jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="unknown projection parameters"):
        project({"kernel": kernel, "lora_a": weights.lora_a, "lora_b": weights.lora_b}, x, "btd,df->btf")
    with pytest.raises(TypeError, match="must be an Adapter"):
        project({"kernel": kernel, "lora": weights}, x, "btd,df->btf")
    plain = project({"kernel": kernel}, x, "btd,df->btf")
    adapted = project({"kernel": kernel, "lora": Adapter(weights, jnp.float32(0.5))}, x, "btd,df->btf")
    np.testing.assert_allclose(adapted - plain, 0.5 * 8.0 * np.ones((1, 2, 3)))  # x @ A @ B = 4 * 2 per entry
    with pytest.raises(TypeError, match="LoRA tree"):
        lora_lib.merge({"layers": {"q_proj": {"kernel": kernel}}}, {"layers": {"q_prj": weights}}, lora_lib.LoraSettings())


@pytest.mark.fast
def test_lora_targets_by_pattern():
    assert lora_lib.target_modules(("q_proj", "v_proj")) == ("q_proj", "v_proj")
    assert lora_lib.target_modules(("mlp.*",)) == ("gate_proj", "up_proj", "down_proj")
    assert lora_lib.target_modules(("self_attn.*", "*_proj")) == tuple(lora_lib.PROJECTIONS)
    with pytest.raises(ConfigError, match="matches no projection"):
        lora_lib.target_modules(("qkv",))


# ----------------------------------------------------------------------------------------
# Whole runs


def _losses(result):
    return [r["loss"] for r in read_metrics(result.metrics_path)]



@pytest.mark.fast
@pytest.mark.parametrize(
    "eq, x_shape, a_shape, b_shape",
    [("btd,dhk->bthk", (2, 6, 8), (8, 4), (4, 3, 5)), ("bthk,hkd->btd", (2, 6, 3, 5), (3, 5, 4), (4, 8))],
)
def test_lora_delta_gradients_equal_autodiff_of_plain_einsums(eq, x_shape, a_shape, b_shape):
    """The adapter's hand-written matmul gradients (models.llama.linear) equal autodiff of
    scale * dropout(x) @ A @ B written as plain einsums, dropout mask included."""
    from s3ft_jax.models.adapter import Adapter, LoraWeights
    from s3ft_jax.models.llama import dropout_keep_mask, lora_delta

    rng = np.random.RandomState(0)
    x, a, b = (jnp.asarray(rng.randn(*s).astype(np.float32)) for s in (x_shape, a_shape, b_shape))
    key = jax.random.key_data(jax.random.key(3))

    def ours(x, a, b):
        return lora_delta(Adapter(LoraWeights(a, b), jnp.float32(2.0), key, jnp.float32(0.9)), x, eq)

    def reference(x, a, b):
        mask, keep = dropout_keep_mask(key, jnp.float32(0.9), x.shape)
        xd = jnp.where(mask, x / keep, 0.0)
        x_axes, rest = eq.split(",")
        k_axes, out_axes = rest.split("->")
        n_in = a.ndim - 1
        kept = "".join(c for c in x_axes if c not in k_axes)
        low = jnp.einsum(f"{x_axes},{k_axes[:n_in]}r->{kept}r", xd, a)
        return 2.0 * jnp.einsum(f"{kept}r,r{k_axes[n_in:]}->{out_axes}", low, b)

    cot = jnp.asarray(rng.randn(*ours(x, a, b).shape).astype(np.float32))
    np.testing.assert_allclose(ours(x, a, b), reference(x, a, b), rtol=1e-5, atol=1e-5)
    got = jax.grad(lambda *p: jnp.sum(ours(*p) * cot), argnums=(0, 1, 2))(x, a, b)
    want = jax.grad(lambda *p: jnp.sum(reference(*p) * cot), argnums=(0, 1, 2))(x, a, b)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)



@pytest.mark.fast
@pytest.mark.parametrize("shape", [(64, 1000), (50, 999)])
def test_dropout_masks_keep_their_rate_and_differ_by_key(shape):
    """LoRA dropout's hashed masks: the kept share matches the exact keep probability it
    returns, one key always draws the same mask, and two keys draw unrelated masks."""
    from s3ft_jax.models.llama import dropout_keep_mask

    key0, key1 = (jax.random.key_data(jax.random.key(s)) for s in (0, 1))
    mask, keep = dropout_keep_mask(key0, jnp.float32(0.9), shape)
    assert mask.shape == shape and float(keep) == 58982 / 65536
    assert abs(float(mask.mean()) - float(keep)) < 0.004  # ~6 standard deviations at 64,000 draws
    np.testing.assert_array_equal(mask, dropout_keep_mask(key0, jnp.float32(0.9), shape)[0])
    other = np.asarray(dropout_keep_mask(key1, jnp.float32(0.9), shape)[0], np.float64).ravel()
    assert abs(np.corrcoef(np.asarray(mask, np.float64).ravel(), other)[0, 1]) < 0.03
    flat = np.asarray(mask, np.float64).ravel()
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.03  # neighbours independent


def test_full_fine_tuning_overfits_four_examples(tiny, tmp_path):
    from s3ft_jax.training import train

    write_dataset(tmp_path / "d.jsonl", 4)
    run = train_run(
        tiny, tmp_path / "run", tmp_path / "d.jsonl", **{
            "lora.enabled": False, "train.batch_size": 4, "train.max_steps": 60, "train.learning_rate": 1e-2,
            "train.schedule": "constant", "train.clip_norm": 0.0, "train.checkpoint_every": 0,
        })  # fmt: skip
    result = train(*run, mesh=make_mesh({"fsdp": 1}, jax.devices()[:1]))
    losses = _losses(result)
    assert len(losses) == 60 and result.final_loss == losses[-1]
    assert losses[-1] < 0.1 * losses[0], losses
    record = read_metrics(result.metrics_path)[-1]
    assert record["trained_tokens"] > 0 and record["tokens_per_s"] > 0 and record["grad_norm"] > 0
    assert list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_lora_changes_only_adapters(tiny, tmp_path):
    from s3ft_jax.training import load_trained, train

    from s3ft_jax.training import Callback

    class Recorder(Callback):
        def __init__(self):
            self.records, self.events = [], []

        def on_record(self, record):
            self.records.append(record)
            self.events.append(("record", record.step))

        def after_step(self, step, checkpointer):
            checkpointer.wait()
            self.events.append(("after", step, checkpointer.steps()))

    write_dataset(tmp_path / "d.jsonl", 4)
    overrides = {"train.batch_size": 4, "train.max_steps": 5, "train.learning_rate": 1e-2, "train.log_every": 2, "train.checkpoint_every": 4}
    run = train_run(tiny, tmp_path / "run", tmp_path / "d.jsonl", **overrides)
    recorder = Recorder()
    result = train(*run, mesh=make_mesh({"fsdp": 1}, jax.devices()[:1]), callbacks=[recorder])
    losses = _losses(result)
    assert losses[-1] < losses[0]
    # Callbacks get the records metrics.jsonl got, as they are read back (every log_every steps
    # and at each checkpoint), and each step's end after its checkpoint was issued.
    assert [r.as_json() for r in recorder.records] == read_metrics(result.metrics_path)
    assert recorder.events == [
        ("after", 1, []), ("record", 1), ("record", 2), ("after", 2, []), ("after", 3, []), ("record", 3), ("record", 4),
        ("after", 4, [4]), ("record", 5), ("after", 5, [4, 5]),
    ]  # fmt: skip
    # Adapters are small and in PEFT's layout: A [r, in], B [out, r] per layer and target.
    from s3ft_jax.models.safetensors_io import SafetensorsFile

    adapter = SafetensorsFile(result.adapter_path / "adapter_model.safetensors")
    names = sorted(adapter.keys())
    assert len(names) == 3 * 2 * 2 and names[0] == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    assert json.loads((result.adapter_path / "adapter_config.json").read_text())["target_modules"] == ["q_proj", "v_proj"]
    # The checkpoint holds only the adapters (and their optimizer state).
    from flax import nnx

    base = step_lib.flatten(nnx.to_pure_dict(nnx.state(from_pretrained(tiny), nnx.Param)))
    trained, _ = load_trained(*run, mesh=make_mesh({"fsdp": 1}, jax.devices()[:1]))
    after = step_lib.flatten(nnx.to_pure_dict(nnx.state(trained, nnx.Param)))
    changed = sorted(k for k in base if not np.array_equal(np.asarray(base[k]), np.asarray(after[k])))
    assert changed == ["layers.q_proj.kernel", "layers.v_proj.kernel"]  # only where adapters merged in


def test_mesh_equivalence_one_vs_eight_devices(tiny, tmp_path):
    """The same run, dropout included, on 1 device and on a 2x4 (data x fsdp) mesh."""
    from s3ft_jax.training import train

    assert jax.device_count() == 8
    write_dataset(tmp_path / "d.jsonl", 12)
    runs = {}
    for name, mesh in {"one": make_mesh({"fsdp": 1}, jax.devices()[:1]), "eight": make_mesh({"data": 2, "fsdp": 4})}.items():
        run = train_run(
            tiny, tmp_path / name, tmp_path / "d.jsonl", **{
                "train.batch_size": 8, "train.grad_accum": 1, "train.max_steps": 4, "train.learning_rate": 1e-2,
                "lora.targets": ("q_proj", "v_proj", "down_proj"), "train.checkpoint_every": 0,
            })  # fmt: skip
        runs[name] = _losses(train(*run, mesh=mesh))
    np.testing.assert_allclose(runs["eight"], runs["one"], atol=1e-5, rtol=0)


def test_grad_accumulation_equals_one_big_batch(tiny, tmp_path):
    from s3ft_jax.training import train

    write_dataset(tmp_path / "d.jsonl", 8)
    runs = []
    for accum in (1, 4):
        run = train_run(
            tiny, tmp_path / f"a{accum}", tmp_path / "d.jsonl", **{
                "lora.enabled": False, "train.batch_size": 8, "train.grad_accum": accum, "train.max_steps": 3,
                "train.learning_rate": 1e-2, "train.checkpoint_every": 0,
            })  # fmt: skip
        runs.append(_losses(train(*run, mesh=make_mesh({"fsdp": 1}, jax.devices()[:1]))))
    np.testing.assert_allclose(runs[1], runs[0], atol=1e-5)


def test_batch_with_nothing_to_train_fails_loudly(tiny, tmp_path, monkeypatch):
    from s3ft_jax.training import train

    write_dataset(tmp_path / "d.jsonl", 4)
    real = data_lib.make_batch

    def no_targets(*args, **kwargs):
        batch = real(*args, **kwargs)
        batch["weights"][:] = 0
        return batch

    monkeypatch.setattr(data_lib, "make_batch", no_targets)
    run = train_run(tiny, tmp_path / "run", tmp_path / "d.jsonl", **{"train.max_steps": 2})
    with pytest.raises(S3FTError, match="no target token to train on"):
        train(*run, mesh=make_mesh({"fsdp": 1}, jax.devices()[:1]))


@pytest.mark.fast
def test_train_config_errors():
    from s3ft_jax import cli

    with pytest.raises(ConfigError, match="multiple of train.grad_accum"):
        cli.parse_config(["--config.train.batch_size=6", "--config.train.grad_accum=4"])
    with pytest.raises(ConfigError, match="train.schedule"):
        cli.parse_config(["--config.train.schedule=step"])
    with pytest.raises(ConfigError, match="lora.dropout"):
        cli.parse_config(["--config.lora.dropout=1.5"])


def test_dot_product_attention_path_equals_ours(tiny_untied):
    """The fused-attention path (cuDNN on GPUs; here the same call on XLA) on right-padded rows."""
    import dataclasses

    from s3ft_jax.models.llama import hidden_states

    model = from_pretrained(tiny_untied)
    params = nnx_params(model)
    lengths = np.array([70, 33, 5])
    valid = np.arange(80)[None] < lengths[:, None]
    ids = jnp.asarray(np.random.RandomState(1).randint(3, 300, (3, 80)))
    pos = jnp.broadcast_to(jnp.arange(80), (3, 80))
    ours = hidden_states(params, model.spec, ids, pos, jnp.asarray(valid))
    fused = hidden_states(params, dataclasses.replace(model.spec, attention="dot_product"), ids, pos, jnp.asarray(valid))
    np.testing.assert_allclose(np.asarray(fused)[valid], np.asarray(ours)[valid], atol=1e-4)


@pytest.mark.parametrize("family", ["llama_tied", "qwen3", "gemma3"])
def test_remat_policies_agree_and_minimal_recomputes_no_projection(tiny, family, tmp_path):
    """Every remat policy gives the same gradients; "minimal" recomputes only the attention
    scores in backward (one matmul per query block), never a projection: nor behind Qwen3's
    and Gemma's q/k norms, or Gemma's norms of the attention and MLP outputs."""
    import dataclasses

    from s3ft_jax.models.llama import hidden_states

    model = from_pretrained(tiny if family == "llama_tied" else make_tiny_dir(tmp_path, family=family))
    params = nnx_params(model)
    ids = jnp.asarray(np.random.RandomState(2).randint(3, 300, (2, 16)))
    pos = jnp.broadcast_to(jnp.arange(16), (2, 16))
    valid = jnp.asarray(np.arange(16)[None] < np.array([[16], [11]]))

    def grad_fn(remat):
        spec = dataclasses.replace(model.spec, remat=remat)
        return jax.grad(lambda p: jnp.sum(hidden_states(p, spec, ids, pos, valid) ** 2))

    reference = grad_fn("none")(params)
    for remat in ("minimal", "full", "dots"):
        for a, b in zip(jax.tree.leaves(grad_fn(remat)(params)), jax.tree.leaves(reference), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))
    dots = {r: str(jax.make_jaxpr(grad_fn(r))(params)).count("dot_general") for r in ("none", "minimal")}
    assert dots["minimal"] - dots["none"] == 1  # the scores of the single query block at T = 16


@pytest.mark.fast
def test_settings_check_themselves_and_the_run_id_covers_what_changes_the_trained_bits():
    import dataclasses

    from s3ft_jax.training.settings import LoraSettings, TrainSettings, run_id

    with pytest.raises(ConfigError, match="multiple of train.grad_accum"):
        TrainSettings(model_name="m", batch_size=6, grad_accum=4)
    with pytest.raises(ConfigError, match="lora.targets must be a non-empty tuple"):
        LoraSettings(targets="q_proj")
    assert LoraSettings(targets=["q_proj"]).targets == ("q_proj",)
    settings, lora = TrainSettings(model_name="m"), LoraSettings()
    rid = run_id(settings, lora, "sha", 10)
    trained_bits = [{"learning_rate": 2e-4}, {"seed": 1}, {"dtype": "bfloat16"}, {"param_dtype": "bfloat16"}, {"model_name": "n"},
                    {"batch_size": 4}, {"max_length": 512}, {"packing": True}, {"remat": "full"}, {"clip_norm": 0.5},
                    {"warmup_steps": 3}, {"schedule": "linear"}, {"adam_b2": 0.95}, {"num_epochs": 2}]  # fmt: skip
    for change in trained_bits:
        assert run_id(dataclasses.replace(settings, **change), lora, "sha", 10) != rid, change
    observed_only = [{"dataset": "other.jsonl"}, {"checkpoint_every": 7}, {"keep_checkpoints": 5}, {"async_checkpoints": False},
                     {"log_every": 3}, {"progress": False}]  # fmt: skip
    for change in observed_only:
        assert run_id(dataclasses.replace(settings, **change), lora, "sha", 10) == rid, change
    assert len({rid, run_id(settings, None, "sha", 10), run_id(settings, LoraSettings(rank=4), "sha", 10),
                run_id(settings, lora, "other", 10), run_id(settings, lora, "sha", 11)}) == 5  # fmt: skip
