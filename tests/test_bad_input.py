"""Bad checkpoints, bad configs and bad data files end in one clear error, never a traceback wall."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from s3ft_jax import cli
from s3ft_jax.errors import ConfigError, ModelError
from s3ft_jax.models import from_pretrained, save_pretrained
from s3ft_jax.models.safetensors_io import SafetensorsFile, save_file
from s3ft_jax.sampling.options import SamplingOptions
from tests.tiny_models import make_tiny_model, random_batch

pytestmark = pytest.mark.fast  # `make test-fast`


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    make_tiny_model("llama3", path)
    return path


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def test_unknown_architecture(llama_dir, tmp_path):
    bad = _copy(llama_dir, tmp_path / "m")
    _edit_config(bad, architectures=["GPT2LMHeadModel"], model_type="gpt2")
    with pytest.raises(ModelError, match="unsupported architecture.*GPT2LMHeadModel"):
        from_pretrained(bad)


def test_unsupported_rope_type(llama_dir, tmp_path):
    bad = _copy(llama_dir, tmp_path / "m")
    _edit_config(bad, rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0})
    with pytest.raises(ModelError, match="unsupported rope type 'yarn'"):
        from_pretrained(bad)


def test_missing_weight_file(llama_dir, tmp_path):
    bad = _copy(llama_dir, tmp_path / "m")
    (bad / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="missing weight file"):
        from_pretrained(bad)


def test_missing_shard_listed_in_index(llama_dir, tmp_path):
    sharded = save_pretrained(from_pretrained(llama_dir), tmp_path / "sharded", max_shard_bytes=40_000)
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 2 and (sharded / "model.safetensors.index.json").is_file()
    shards[1].unlink()
    with pytest.raises(ModelError, match=f"missing weight file .*{shards[1].name}"):
        from_pretrained(sharded)


def test_sharded_checkpoint_loads_like_single(llama_dir, tmp_path):
    ids, mask = random_batch([40, 30], 40)
    single = from_pretrained(llama_dir)
    sharded = from_pretrained(save_pretrained(single, tmp_path / "sharded", max_shard_bytes=40_000))
    np.testing.assert_array_equal(np.asarray(sharded(ids, mask)), np.asarray(single(ids, mask)))


def test_tensor_with_wrong_shape(llama_dir, tmp_path):
    bad = _copy(llama_dir, tmp_path / "m")
    weights = SafetensorsFile(bad / "model.safetensors")
    tensors = {name: np.array(weights.get(name)) for name in weights.keys()}
    name = "model.layers.1.self_attn.k_proj.weight"
    tensors[name] = np.zeros((tensors[name].shape[0] + 16, tensors[name].shape[1]), np.float32)
    del weights
    save_file(tensors.items(), bad / "model.safetensors")
    with pytest.raises(ModelError, match=rf"tensor '{name}' has shape \[48, 64\], expected \[32, 64\]"):
        from_pretrained(bad)


def test_missing_tensor(llama_dir, tmp_path):
    bad = _copy(llama_dir, tmp_path / "m")
    weights = SafetensorsFile(bad / "model.safetensors")
    tensors = {n: np.array(weights.get(n)) for n in weights.keys() if n != "model.layers.2.mlp.up_proj.weight"}
    del weights
    save_file(tensors.items(), bad / "model.safetensors")
    with pytest.raises(ModelError, match="lacks tensor 'model.layers.2.mlp.up_proj.weight'"):
        from_pretrained(bad)


def test_truncated_weight_file(llama_dir, tmp_path):
    bad = _copy(llama_dir, tmp_path / "m")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        from_pretrained(bad)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelError, match="no model directory"):
        from_pretrained(str(tmp_path / "nothing-here"))
    with pytest.raises(ModelError, match="no config.json"):
        from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.model.nope=1"], "unknown config key 'config.model.nope'"),
        (["--config.nope.deeper=1"], "unknown config key 'config.nope.deeper'"),
        (["--config.mesh.data=abc"], "--config.mesh.data=abc: invalid literal for int()"),
        (["--config.seed=1.5"], "--config.seed=1.5"),
        (["--config.model.dtype=int8"], "model.dtype must be float32, bfloat16 or float16"),
        (["--config=configs/nope.py"], "config file 'configs/nope.py' not found"),
        (["--config=configs/models.py:gpt5"], "unknown model preset 'gpt5'"),
        (["positional"], "unexpected argument 'positional'"),
        (["--config.sampling.batch_size=0"], "sampling.batch_size must be positive, got 0"),
        (["--config.sampling.top_p=1.5"], "sampling.top_p must be in (0, 1], got 1.5"),
        (["--config.sampling.max_new_tokens=-1"], "sampling.max_new_tokens must be positive (or 0 for the task default), got -1"),
    ],
)
def test_cli_config_errors_are_one_line(capsys, args, message):
    assert cli.main(["config", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("s3ft: error: ") and message in err
    assert err.count("\n") == 1, err


def test_cli_config_overrides_apply(capsys):
    assert cli.main(["config", "--config=configs/models.py:qwen2.5-0.5b-instruct", "--config.mesh.tensor=4"]) == 0
    out = capsys.readouterr().out
    assert "'name': 'Qwen/Qwen2.5-0.5B-Instruct'," in out and "'tensor': 4," in out


def test_cli_unknown_command(capsys):
    assert cli.main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(batch_size=0), "sampling.batch_size must be positive, got 0"),
        (dict(chunk=-1), "sampling.chunk must be positive, got -1"),
        (dict(max_new_tokens=0), "sampling.max_new_tokens must be positive, got 0"),
        (dict(temperature=-0.5), "sampling.temperature must be >= 0, got -0.5"),
        (dict(top_p=0.0), r"sampling.top_p must be in \(0, 1\], got 0.0"),
        (dict(top_k=-1), "sampling.top_k must be >= 0, got -1"),
        (dict(stop=("",)), "sampling.stop must be a tuple of non-empty strings"),
        (dict(stop="[DONE]"), "sampling.stop must be a tuple of non-empty strings, got '\\[DONE\\]'"),
        (dict(group=0), "sampling.group must be positive"),
        (dict(min_compact=0), "sampling.min_compact must be positive, got 0"),
        (dict(share_prefix=-1), "sampling.share_prefix must be >= 0, got -1"),
    ],
)
def test_options_reject_bad_settings_in_one_line(settings, message):
    with pytest.raises(ConfigError, match=message) as info:
        SamplingOptions(**{"max_new_tokens": 8, **settings})
    assert "\n" not in str(info.value)


def test_options_hold_stop_strings_as_a_tuple():
    options = SamplingOptions(max_new_tokens=8, stop=["a", "b"])
    assert options.stop == ("a", "b")
    assert {options: "kept"}[SamplingOptions(max_new_tokens=8, stop=("a", "b"))] == "kept"  # hashable, by value


# ---------------------------------------------------------------------------------------------
# Task and prompt files: a row without a field the task reads, a repeated id, or a test split
# that repeats the training data is one line and exit status 2 in the first seconds, before
# any model loads and before anything is written (issue 28). Run as the user runs `s3ft`.

ROOT = Path(__file__).resolve().parents[1]
FIRST_SECONDS = 10.0  # the checks take well under a second; the rest is Python starting up on a busy machine
NO_MODEL = "--config.model.name=/nonexistent/model"  # the check after the data's: passing it means the data passed


def _s3ft(*args) -> tuple[int, str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), S3FT_LOG_LEVEL="WARNING")
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "s3ft_jax.cli", *args], env=env, capture_output=True, text=True, timeout=120)
    return out.returncode, out.stderr, time.monotonic() - start


def _refused(tmp_path, command: str, *args) -> str:
    """The one-line error of `s3ft COMMAND` with a workdir it must leave unmade."""
    workdir = tmp_path / "wd"
    code, err, seconds = _s3ft(command, f"--config.workdir={workdir}", *args)
    assert code == 2, err
    assert err.startswith("s3ft: error: ") and err.count("\n") == 1, err
    assert not workdir.exists()
    assert seconds < FIRST_SECONDS
    return err.removeprefix("s3ft: error: ").strip()


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _qa(ids, start: int = 0) -> list[dict]:
    return [{"id": i, "prompt": f"What is {n} + {n}?", "answer": str(2 * n)} for n, i in enumerate(ids, start)]


def _custom(train: str, test: str) -> list[str]:
    return ["--config.task.name=custom", f"--config.task.custom.train={train}", f"--config.task.custom.test={test}"]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"id": "b", "prompt": "2+2?"}, "train.jsonl:2: no field 'answer' (the row has 'id', 'prompt')"),
        ({"id": "b", "answer": "4"}, "train.jsonl:2: no field 'prompt' (the row has 'id', 'answer')"),
        ({"id": "b", "prompt": "2+2?", "answer": None}, "train.jsonl:2: field 'answer' is null"),
        ({"id": "b", "prompt": "  ", "answer": "4"}, "train.jsonl:2: field 'prompt' is empty"),
        ({"id": "b", "prompt": "2+2?", "answer": []}, "train.jsonl:2: field 'answer' is empty"),
        ({"prompt": "2+2?", "answer": "4"}, "train.jsonl:2: no field 'id'"),
    ],
)
def test_custom_row_without_a_field_is_refused(tmp_path, row, message):
    train = _jsonl(tmp_path / "train.jsonl", [*_qa(["a"]), row, *_qa(["c"], 5)])
    test = _jsonl(tmp_path / "test.jsonl", _qa(["t"], 9))
    err = _refused(tmp_path, "run", *_custom(train, test))
    assert err == f"{tmp_path}/{message}" or err.startswith(f"{tmp_path}/{message} ("), err


def test_custom_answer_field_named_in_the_config_is_the_one_required(tmp_path):
    rows = [{"id": "a", "q": "1+1?", "gold": "2"}, {"id": "b", "q": "2+2?", "answer": "4"}]
    train = _jsonl(tmp_path / "train.jsonl", rows)
    test = _jsonl(tmp_path / "test.jsonl", [{"id": "t", "q": "3+3?", "gold": "6"}])
    fields = ["--config.task.custom.prompt_field=q", "--config.task.custom.answer_field=gold"]
    assert _refused(tmp_path, "run", *_custom(train, test), *fields).startswith(f"{train}:2: no field 'gold'")
    (tmp_path / "train.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert "no model directory" in _refused(tmp_path, "run", *_custom(train, test), *fields, NO_MODEL)


def test_builtin_task_row_without_a_field_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "gsm8k").mkdir(parents=True)
    _jsonl(data / "gsm8k" / "train.jsonl", [{"question": "1+1?", "answer": "#### 2"}, {"question": "2+2?"}])
    _jsonl(data / "gsm8k" / "test.jsonl", [{"question": "3+3?", "answer": "#### 6"}])
    err = _refused(tmp_path, "build", f"--config.data.data_dir={data}")
    assert err.startswith(f"{data}/gsm8k/train.jsonl:2: no field 'answer'"), err


def test_duplicate_custom_ids_are_refused_with_both_lines(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", _qa(["a", "b", "c", "b"]))
    test = _jsonl(tmp_path / "test.jsonl", _qa(["t"], 9))
    assert _refused(tmp_path, "build", *_custom(train, test)) == f"{train}:4: duplicate id 'b' (first on line 2)"


def test_one_file_as_train_and_test_is_refused_unless_allowed(tmp_path):
    data = _jsonl(tmp_path / "qa.jsonl", _qa(["a", "b", "c"]))
    err = _refused(tmp_path, "run", *_custom(data, data))
    assert err.startswith(f"task custom: the train split ({data}) and the test split ({data}) share 3 of 3 test rows"), err
    assert "e.g. id 'a'" in err and "--config.task.allow_overlap=True" in err
    allowed = _refused(tmp_path, "run", *_custom(data, data), "--config.task.allow_overlap=True", NO_MODEL)
    assert allowed.startswith("no model directory at '/nonexistent/model'"), allowed


def test_a_builtin_task_source_read_as_both_splits_is_refused(tmp_path):
    gsm8k = _jsonl(tmp_path / "gsm8k.jsonl", [{"question": f"{n}+{n}?", "answer": f"#### {2 * n}"} for n in range(4)])
    err = _refused(tmp_path, "run", f"--config.task.source={gsm8k}")
    assert err.startswith(f"task gsm8k: the train split ({gsm8k}) and the test split ({gsm8k}) share 4 of 4 test rows"), err
    assert "e.g. test id 'gsm8k-test-0' = train id 'gsm8k-train-0'" in err
    assert "no model directory" in _refused(tmp_path, "run", f"--config.task.source={gsm8k}", "--config.task.allow_overlap=True", NO_MODEL)


def test_train_and_test_rows_that_overlap_are_counted(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", _qa(["a", "b", "c", "d"]))
    test_rows = _qa(["t0", "t1", "t2"], 10) + [{"id": "c", "prompt": "another question", "answer": "1"},
                                               {"id": "t4", "prompt": " What is 1 +  1?\n", "answer": "2"}]
    test = _jsonl(tmp_path / "test.jsonl", test_rows)
    err = _refused(tmp_path, "run", *_custom(train, test))
    assert f"the train split ({train}) and the test split ({test}) share 2 of 5 test rows" in err and "e.g. id 'c'" in err
    disjoint = _jsonl(tmp_path / "test.jsonl", test_rows[:3])
    assert "no model directory" in _refused(tmp_path, "run", *_custom(train, disjoint), NO_MODEL)


def test_generate_input_with_a_duplicate_id_is_refused_before_the_model(tmp_path):
    prompts = _jsonl(tmp_path / "prompts.jsonl", [{"id": 1, "prompt": "a"}, {"id": 2, "prompt": "b"}, {"id": 1, "prompt": "c"}])
    output = tmp_path / "wd" / "out.jsonl"
    err = _refused(tmp_path, "generate", f"--config.generate.input={prompts}", f"--config.generate.output={output}")
    assert err == f"{prompts}:3: duplicate id 1 (first on line 1)"
    _jsonl(tmp_path / "prompts.jsonl", [{"id": 1, "prompt": "a"}, {"id": 2, "messages": []}])
    assert _refused(tmp_path, "generate", f"--config.generate.input={prompts}", f"--config.generate.output={output}") == (
        f"{prompts}:2: row needs a non-empty 'prompt', 'messages' or 'prompt_ids'")
    _jsonl(tmp_path / "prompts.jsonl", [{"id": 1, "prompt": "a"}, {"id": 2, "messages": [{"role": "user", "content": "b"}]}])
    err = _refused(tmp_path, "generate", f"--config.generate.input={prompts}", f"--config.generate.output={output}", NO_MODEL)
    assert err.startswith("no model directory"), err


# -- model.chat_template: base models (issue 30) -----------------------------------------------


@pytest.fixture
def base_model_dir(tmp_path):
    """What the first-second checks and the tokenizer read of a base model: a config.json and a
    tokenizer without a chat template."""
    from tests.tiny_models import write_base_tokenizer

    path = write_base_tokenizer(tmp_path / "base")
    (path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 512}))
    return path


def _answer_dry_run(capsys, tmp_path, model, *args):
    rows = json.dumps({"id": "a", "prompt": "what is 1 + 1 ?", "answer": "2"}) + "\n"
    (tmp_path / "test.jsonl").write_text(rows)
    status = cli.main(["answer", f"--config.model.name={model}", "--config.task.name=custom",
                       f"--config.task.custom.test={tmp_path / 'test.jsonl'}", "--dry-run", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_base_model_without_chat_template_is_refused_up_front(capsys, tmp_path, base_model_dir):
    status, _, err = _answer_dry_run(capsys, tmp_path, base_model_dir)
    assert status == 2 and err.count("\n") == 1
    assert f"{base_model_dir} has no chat template (a base model?): set --config.model.chat_template to plain, chatml or a .jinja file" in err
    for name in ("plain", "chatml"):
        status, out, _ = _answer_dry_run(capsys, tmp_path, base_model_dir, f"--config.model.chat_template={name}")
        assert status == 0 and "checks passed" in out
    assert _answer_dry_run(capsys, tmp_path, "smollm2-135m-instruct")[0] == 0  # an instruct model has its own


def test_chat_template_setting_is_checked_in_the_first_second(capsys, tmp_path, base_model_dir):
    status, _, err = _answer_dry_run(capsys, tmp_path, base_model_dir, "--config.model.chat_template=alpaca")
    assert status == 2 and "model.chat_template 'alpaca' is neither a template name (plain, chatml) nor a file" in err
    (tmp_path / "broken.jinja").write_text("{% for m in messages %}\n{{ m.content }\n")
    status, _, err = _answer_dry_run(capsys, tmp_path, base_model_dir, f"--config.model.chat_template={tmp_path / 'broken.jinja'}")
    assert status == 2 and err.count("\n") == 1 and f"{tmp_path / 'broken.jinja'}:2: unexpected '}}'" in err, err
    (tmp_path / "mine.jinja").write_text("{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A:")
    status, out, _ = _answer_dry_run(capsys, tmp_path, base_model_dir, f"--config.model.chat_template={tmp_path / 'mine.jinja'}")
    assert status == 0


def test_the_chat_template_is_applied_to_the_tokenizer_on_load(tmp_path, base_model_dir):
    from s3ft_jax.models import load_tokenizer
    from s3ft_jax.sampling.chat import render_chat

    user = [{"role": "user", "content": "what is 1 + 1 ?"}]
    with pytest.raises(ValueError, match="no chat template .*model.chat_template"):
        render_chat(load_tokenizer(base_model_dir), user)
    plain = load_tokenizer(base_model_dir, chat_template="plain")
    assert render_chat(plain, user) == "what is 1 + 1 ?\n\nAnswer:"
    assert render_chat(plain, [*user, {"role": "assistant", "content": "2"}], add_generation_prompt=False) == "what is 1 + 1 ?\n\nAnswer: 2</s>\n\n"
    chatml = load_tokenizer(base_model_dir, chat_template="chatml")
    assert render_chat(chatml, user) == "<|im_start|>user\nwhat is 1 + 1 ?<|im_end|>\n<|im_start|>assistant\n"
    (tmp_path / "mine.jinja").write_text("{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A:")
    assert render_chat(load_tokenizer(base_model_dir, chat_template=str(tmp_path / "mine.jinja")), user) == "Q: what is 1 + 1 ?\nA:"


def test_the_chat_template_enters_the_run_and_stage_fingerprints_only_when_set(base_model_dir):
    import dataclasses

    from s3ft_jax.loader import model_identity
    from s3ft_jax.models.settings import ModelSettings
    from s3ft_jax.training.settings import LoraSettings, TrainSettings, run_id, settings_fingerprint

    settings, lora = TrainSettings(model_name="m"), LoraSettings()
    assert "chat_template" not in settings_fingerprint(settings, lora)["train"]  # runs from before the setting keep their id
    rid = run_id(settings, lora, "sha", 10)
    assert run_id(dataclasses.replace(settings, chat_template="plain"), lora, "sha", 10) != rid
    assert run_id(dataclasses.replace(settings, chat_template="chatml"), lora, "sha", 10) not in (rid, run_id(dataclasses.replace(settings, chat_template="plain"), lora, "sha", 10))
    model = ModelSettings(name=str(base_model_dir))
    assert "chat_template" not in model_identity(model)
    plain, chatml = (model_identity(dataclasses.replace(model, chat_template=t)) for t in ("plain", "chatml"))
    assert plain["chat_template"] != chatml["chat_template"] and plain["digest"] == model_identity(model)["digest"]
    assert model.named("judge").chat_template == "" and dataclasses.replace(model, chat_template="plain").named("j").chat_template == ""


def test_a_base_model_trains_and_exports_with_the_configured_template(tmp_path, capsys):
    """The whole path on a tiny random base model: refused without a template, trained with
    `plain` (the training prompts rendered through it), exported with it."""
    from s3ft_jax.models import load_tokenizer
    from s3ft_jax.sampling.chat import render_chat
    from tests.tiny_models import write_base_tokenizer

    model = tmp_path / "base"
    make_tiny_model("llama3", model)
    write_base_tokenizer(model)
    (tmp_path / "rows.jsonl").write_text(json.dumps({"prompt": "what is 1 + 1 ?", "target": "2"}) + "\n")
    args = ["train", f"--config.model.name={model}", f"--config.workdir={tmp_path / 'w'}", f"--config.train.dataset={tmp_path / 'rows.jsonl'}",
            "--config.train.max_steps=1", "--config.train.batch_size=1", "--config.train.progress=False"]
    assert cli.main(args) == 2 and "has no chat template" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    args.append("--config.model.chat_template=plain")
    assert cli.main(args) == 0 and "1 steps" in capsys.readouterr().out
    assert cli.main(["export", *args[1:], f"--config.export.output={tmp_path / 'hf'}"]) == 0
    exported = load_tokenizer(tmp_path / "hf")  # no setting needed any more: the template is in the directory
    assert render_chat(exported, [{"role": "user", "content": "what is 1 + 1 ?"}]) == "what is 1 + 1 ?\n\nAnswer:"
