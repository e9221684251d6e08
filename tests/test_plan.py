"""`s3ft plan`: the project's programs compiled ahead of time for a target, without weights."""

import json
import re

import jax
import pytest

from s3ft_jax.cli import main, parse_config
from s3ft_jax.errors import ConfigError
from s3ft_jax.plan import format_table, plan
from s3ft_jax.plan.targets import parse_slice

TINY = {
    "architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "rope_theta": 10000.0,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "eos_token_id": 2,
}  # fmt: skip


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    return [
        f"--config.plan.model={path}", "--config.train.max_length=64", "--config.train.batch_size=8",
        "--config.sampling.batch_size=8", "--config.sampling.max_new_tokens=32", "--config.plan.prompt_length=32",
        "--config.eval.batch_size=8",
    ]  # fmt: skip


def _log(lines):
    return lines.append


def test_oversized_program_is_reported_with_checked_fixes(tiny_config):
    # The host's CPU devices stand in for a slice, and a budget just under what the scoring
    # program needs stands in for a small HBM.
    base = [*tiny_config, "--config.plan.topology=cpu-2", "--config.plan.programs=('score',)"]
    (roomy,) = plan(parse_config(base), log=_log([]))[2]
    assert roomy.fits and not roomy.suggestions and roomy.flops > 0 and roomy.argument_bytes > 0
    budget = 0.9 * roomy.total_bytes / 2**30
    config = parse_config([*base, f"--config.plan.hbm_gib={budget}"])
    target, cfg, rows = plan(config, log=_log([]))
    (row,) = rows
    assert not row.fits and row.total_bytes == roomy.total_bytes
    assert re.fullmatch(r"needs [\d.]+ MiB per chip, cpu has [\d.]+ MiB", row.error)
    # Each suggested change was compiled and judged: half the scoring batch fits.
    assert [s.split(":")[0] for s in row.suggestions] == ["eval.batch_size=4", "eval.batch_size=2"], row.suggestions
    assert row.suggestions[0].startswith("eval.batch_size=4: fits"), row.suggestions
    table = format_table(config, target, cfg, rows)
    assert "| score |" in table and "| no |" in table and "score does not fit: needs" in table


@pytest.mark.fast
def test_plan_errors_are_one_line(tiny_config, capsys, monkeypatch):
    assert main(["plan", *tiny_config, "--config.plan.topology=v5e-7"]) == 2
    assert re.fullmatch(r"s3ft: error: unknown TPU slice 'v5e-7': v5e slices are v5e-1, .*v5e-256\n", capsys.readouterr().err)
    assert main(["plan", *tiny_config]) == 2
    assert "set --config.plan.topology" in capsys.readouterr().err
    assert main(["plan", "--config.plan.topology=cpu-8", "--config.plan.model=gpt-9"]) == 2
    assert "no model shapes for 'gpt-9'" in capsys.readouterr().err
    # Without libtpu, a TPU slice names the extra to install.
    monkeypatch.setitem(__import__("sys").modules, "libtpu", None)
    assert main(["plan", *tiny_config, "--config.plan.topology=v4-8"]) == 2
    assert "install the plan extra: pip install -e '.[plan]'" in capsys.readouterr().err


@pytest.mark.fast
def test_compiler_out_of_memory_is_one_line():
    from s3ft_jax.plan import oom_line

    v5e = parse_slice("v5e-8")
    message = "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. Used 16.03G of 15.75G hbm.\nmore"
    assert oom_line(message, v5e, 16 << 30) == ("needs 16.03 GiB per chip, v5e has 15.75 GiB usable", int(16.03 * 2**30))
    message = "RESOURCE_EXHAUSTED: Program HLO temporaries (28.40G) exceeds available HBM (15.75G)"
    assert oom_line(message, v5e, 16 << 30)[0] == "needs 28.40 GiB per chip for temporaries alone, v5e has 15.75 GiB usable"
    assert oom_line("RESOURCE_EXHAUSTED: something new\ndetails", v5e, 16 << 30) == ("RESOURCE_EXHAUSTED: something new", 0)


@pytest.mark.fast
def test_slice_names_count_chips_or_cores():
    assert (parse_slice("v5e-8").chips, parse_slice("v5e-8").bounds) == (8, (2, 4))
    assert (parse_slice("v4-8").chips, parse_slice("v4-8").bounds) == (4, (2, 2, 1))
    assert parse_slice("v5p-8").chips == 4 and parse_slice("v5e-256").bounds == (16, 16)
    with pytest.raises(ConfigError, match="v4 slices are v4-8"):
        parse_slice("v4-6")


def test_decode_follows_the_target_platform_not_the_host():
    # On a CPU a decode step's attention is a multiply-and-sum; a TPU target keeps the
    # matmuls. The plan compiles the TPU variant from a CPU host.
    from s3ft_jax.models.config import ModelConfig
    from s3ft_jax.plan.programs import sampler_programs
    from s3ft_jax.sharding import make_mesh

    config = parse_config(["--config.sampling.batch_size=8", "--config.sampling.max_new_tokens=16", "--config.plan.prompt_length=16"])
    cfg = ModelConfig.from_hf_dict(TINY)
    mesh = make_mesh({"fsdp": 8})
    dots = {}
    for platform in ("cpu", "tpu"):
        decode = next(p for p in sampler_programs(config, cfg, mesh, platform) if p.name == "decode")
        dots[platform] = decode.lower().as_text().count("dot_general")
    assert dots["tpu"] == dots["cpu"] + 2 * TINY["num_hidden_layers"]


def test_tiny_config_compiles_for_v5e_8(tiny_config, capsys):
    assert main(["plan", *tiny_config, "--config.plan.topology=v5e-8", "--config.lora.enabled=False"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("v5e-8: 8 x v5e, 16 GiB HBM per chip")
    for program in ("train", "prefill", "decode", "score"):
        assert re.search(rf"\| {program} \|.*\| yes \|", out), program
    assert jax.default_backend() == "cpu"  # nothing ran on a TPU
