"""Qwen3 and Gemma 3 beyond logits parity (tests/test_model_parity.py runs those for every
family): what their config.json can say, greedy decoding against transformers (Gemma's
local layers crossing their window), and LoRA on every projection trained, exported,
loaded by transformers and reloaded by us."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s3ft_jax.errors import ModelError
from s3ft_jax.models.config import ModelConfig
from tests.train_helpers import check_export_matches, make_tiny_dir, train_run, write_dataset

# The text half of google/gemma-3-12b-it's config.json as transformers 4.x wrote it: no
# layer_types (every sixth layer global), rope_theta + rope_scaling for the global layers,
# rope_local_base_freq for the local ones, soft caps null.
GEMMA3_4X = {
    "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 3840,
    "intermediate_size": 15360, "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 8,
    "head_dim": 256, "vocab_size": 262208, "query_pre_attn_scalar": 256, "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0, "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024,
    "sliding_window_pattern": 6, "final_logit_softcapping": None, "attn_logit_softcapping": None,
    "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6, "max_position_embeddings": 131072,
    "eos_token_id": [1, 106],
}  # fmt: skip


@pytest.mark.fast
def test_gemma3_config_reads_as_transformers_does():
    import transformers

    cfg = ModelConfig.from_hf_dict(GEMMA3_4X)
    ref = transformers.Gemma3TextConfig(**{k: v for k, v in GEMMA3_4X.items() if k not in ("architectures", "model_type")})
    assert cfg.family == "gemma3" and cfg.tie_word_embeddings  # Gemma ties unless told otherwise
    assert [w > 0 for w in cfg.sliding_windows] == [t == "sliding_attention" for t in ref.layer_types]
    assert set(cfg.sliding_windows) == {0, 1024} and cfg.sliding_windows[5] == cfg.sliding_windows[11] == 0
    full, local = ref.rope_parameters["full_attention"], ref.rope_parameters["sliding_attention"]
    assert (cfg.rope.theta, cfg.rope.rope_type, cfg.rope.factor) == (full["rope_theta"], "linear", 8.0)
    assert (cfg.local_rope.theta, cfg.local_rope.rope_type) == (local["rope_theta"], local["rope_type"])
    assert cfg.attention_scale == 256**-0.5 and cfg.final_softcap == 0.0
    assert (cfg.activation, cfg.qk_norm, cfg.gemma_norms, cfg.embed_scale) == ("gelu_tanh", True, True, True)
    # The same model as transformers 5 writes it: per-layer-type rope_parameters, layer_types.
    five = {k: v for k, v in GEMMA3_4X.items() if not k.startswith("rope_") and k != "sliding_window_pattern"}
    five.update(layer_types=ref.layer_types, rope_parameters=ref.rope_parameters, final_logit_softcapping=30.0)
    again = ModelConfig.from_hf_dict(five)
    assert (again.sliding_windows, again.rope, again.local_rope) == (cfg.sliding_windows, cfg.rope, cfg.local_rope)
    assert again.final_softcap == 30.0
    # model_type alone names it too.
    assert ModelConfig.from_hf_dict({k: v for k, v in GEMMA3_4X.items() if k != "architectures"}).family == "gemma3"


@pytest.mark.fast
def test_qwen3_config_and_the_other_families_unchanged():
    qwen3 = {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 100}  # fmt: skip
    cfg = ModelConfig.from_hf_dict(qwen3)
    assert (cfg.head_dim, cfg.qk_norm, cfg.qkv_bias, cfg.o_bias, cfg.gemma_norms, cfg.activation) == (32, True, False, False, False, "silu")
    biased = ModelConfig.from_hf_dict({**qwen3, "attention_bias": True})
    assert biased.qkv_bias and biased.o_bias  # Qwen3's attention_bias covers o_proj too (unlike Qwen2's)
    assert ModelConfig.from_hf_dict({**qwen3, "use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}).sliding_windows == (0, 8)
    qwen2 = ModelConfig.from_hf_dict({**qwen3, "architectures": ["Qwen2ForCausalLM"]})
    assert (qwen2.qk_norm, qwen2.qkv_bias, qwen2.o_bias, qwen2.attention_scale) == (False, True, False, 32**-0.5)


@pytest.mark.fast
@pytest.mark.parametrize(
    "change, message",
    [
        ({"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3"}, "supported are LlamaForCausalLM, "
         "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM"),
        ({"use_bidirectional_attention": True}, "use_bidirectional_attention is not supported"),
        ({"hidden_activation": "gelu"}, "unsupported hidden_activation 'gelu'"),
        ({"layer_types": ["full_attention"] * 3}, "layer_types has 3 entries for num_hidden_layers=12"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "unsupported rope type 'yarn'"),
    ],
)  # fmt: skip
def test_gemma3_configs_we_cannot_run_are_refused(change, message):
    with pytest.raises(ModelError, match=message):
        ModelConfig.from_hf_dict({**GEMMA3_4X, **change})


@pytest.fixture(scope="module", params=["qwen3", "gemma3"])
def family_dir(request, tmp_path_factory):
    return request.param, make_tiny_dir(tmp_path_factory.mktemp(request.param), family=request.param)


def test_greedy_decoding_equals_transformers(family_dir):
    """Greedy tokens and their log-probabilities equal transformers' generate; on Gemma's
    local layers (window 20) prompt plus generation run well past the window."""
    import torch
    from transformers import AutoModelForCausalLM

    from s3ft_jax.models import from_pretrained
    from s3ft_jax.sampling import SamplingOptions, generate
    from tests.tiny_models import VOCAB, IdTokenizer

    family, path = family_dir
    assert json.loads((path / "config.json").read_text())["eos_token_id"] == 2 == IdTokenizer.eos_token_id
    rng = np.random.RandomState(5)
    prompts = [rng.randint(3, VOCAB, n).tolist() for n in (3, 17, 30, 9, 44)]
    options = SamplingOptions(max_new_tokens=40, batch_size=4, return_logprobs=True)
    ours = generate(from_pretrained(path), IdTokenizer(), prompts, options)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    for prompt, got in zip(prompts, ours, strict=True):
        with torch.no_grad():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False, eos_token_id=2, pad_token_id=0,
                              output_logits=True, return_dict_in_generate=True)  # fmt: skip
        tokens = out.sequences[0, len(prompt) :].tolist()
        logprobs = [torch.log_softmax(step[0].float(), -1)[t].item() for step, t in zip(out.logits, tokens)]
        assert got.token_ids == tokens, family
        np.testing.assert_allclose(got.logprobs, logprobs, atol=1e-3)
    assert max(len(p) + len(g.token_ids) for p, g in zip(prompts, ours)) > 2 * 20


def test_lora_on_every_projection_trains_exports_and_reloads(family_dir, tmp_path):
    """LoRA on all seven projections: trained, merged and exported, transformers' logits equal
    ours, and the export loads back into ours bit-identically."""
    from flax import nnx

    from s3ft_jax.models import from_pretrained
    from s3ft_jax.models.safetensors_io import SafetensorsFile
    from s3ft_jax.sharding import make_mesh
    from s3ft_jax.training import step as step_lib
    from s3ft_jax.training import train
    from s3ft_jax.training.export import export_hf

    family, path = family_dir
    write_dataset(tmp_path / "d.jsonl", 6, seed=1)
    mesh = make_mesh({"fsdp": 1}, jax.devices()[:1])
    overrides = {"train.batch_size": 2, "train.max_steps": 3, "train.learning_rate": 0.05, "lora.targets": ("*_proj",)}
    run = train_run(path, tmp_path / "run", tmp_path / "d.jsonl", **overrides)
    result = train(*run, mesh=mesh)
    adapter = SafetensorsFile(result.adapter_path / "adapter_model.safetensors")
    assert len(adapter.keys()) == 3 * 7 * 2  # layers x projections x (A, B)
    out = export_hf(*run, tmp_path / "hf", mesh=mesh)

    logits = check_export_matches(run, path, out, mesh, note=family)
    ids = np.random.RandomState(0).randint(3, 300, (1, 80))
    reloaded = from_pretrained(out)
    np.testing.assert_array_equal(np.asarray(reloaded(jnp.asarray(ids)))[0], logits)
    # Every trained projection moved in the export; the norms (not adapted) did not.
    before = step_lib.flatten(nnx.to_pure_dict(nnx.state(from_pretrained(path), nnx.Param)))
    after = step_lib.flatten(nnx.to_pure_dict(nnx.state(reloaded, nnx.Param)))
    changed = {k for k in before if not np.array_equal(np.asarray(before[k]), np.asarray(after[k]))}
    assert changed == {f"layers.{p}_proj.kernel" for p in ("q", "k", "v", "o", "gate", "up", "down")}, family


@pytest.mark.fast
@pytest.mark.parametrize("name, family, billions", [("qwen3-8b", "qwen3", 8.19), ("google/gemma-3-12b-it", "gemma3", 11.77)])
def test_plan_presets_have_the_published_sizes(name, family, billions):
    """`s3ft plan`'s shapes for Qwen3-8B and Gemma 3 12B (its text model): the parameter
    count their model cards give, from the parameter table."""
    from s3ft_jax.models.params import param_shapes
    from s3ft_jax.plan.targets import model_config

    cfg = model_config(name)
    assert cfg.family == family
    count = sum(int(np.prod(s)) for s in param_shapes(cfg).values())
    assert abs(count / 1e9 - billions) < 0.01, count
