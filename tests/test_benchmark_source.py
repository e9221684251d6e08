"""eval.benchmark_source=hf: benchmark files built from the hub (the converters of `s3ft data
fetch`, run here on the local `datasets` fixtures of test_data_files.py) into a cache under
S3FT_HOME, read by the same readers as a data directory; cached once, nothing half-written,
and the stage fingerprints of default-source runs unchanged."""

from __future__ import annotations

import dataclasses

import datasets
import pytest

from s3ft_jax import cli
from s3ft_jax.errors import ConfigError, S3FTError
from s3ft_jax.evaluation import benchmark_source
from s3ft_jax.evaluation.benchmark_source import benchmark_data_dir, cache_dir, ensure_cached, stage_identity
from s3ft_jax.evaluation.benchmarks import FILES, TASKS, load_task
from s3ft_jax.evaluation.settings import EvalSettings
from s3ft_jax.tasks import sources
from s3ft_jax.tasks.sources import write_layout
from tests.test_data_files import HUB

pytestmark = pytest.mark.fast


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh S3FT_HOME, no data directory, and `datasets.load_dataset` answering from HUB;
    returns the list of (dataset, config) it was asked for."""
    monkeypatch.setenv("S3FT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("S3FT_DATA_DIR", raising=False)
    asked = []

    def load_dataset(name, config=None, *, revision=None):
        asked.append((name, config))
        return HUB[(name, config, revision)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return asked


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_hub_benchmarks_read_as_the_written_layout_without_a_data_directory(hub, tmp_path):
    root = benchmark_data_dir("hf", None, TASKS)
    assert root == tmp_path / "home" / "hub_data" == cache_dir()
    local = tmp_path / "local"
    write_layout(HUB, local, list(dict.fromkeys(FILES.values())))
    for task in TASKS:  # mmlu, arc_easy, boolq among them: the same MCItems, byte for byte
        assert load_task(root, task) == load_task(local, task), task
    assert len(load_task(root, "boolq")) == 1 and load_task(root, "mmlu")[0].context.startswith("The following are")
    for file in dict.fromkeys(FILES.values()):
        assert (root / file).read_bytes() == (local / file).read_bytes(), file
    # nothing but the files and their source notes; the staging folder is gone
    assert [p.name for p in root.parent.iterdir()] == ["hub_data"]
    assert (root / "mmlu/mmlu_test.jsonl.source").read_text() == "hf:cais/mmlu:all (test)\n"
    # the data_dir source still needs the directory
    with pytest.raises(S3FTError, match="no data directory"):
        benchmark_data_dir("data_dir", None, ["mmlu"])
    assert benchmark_data_dir("data_dir", str(local), ["mmlu"]) == local


def test_the_cache_is_reused_and_refreshed_only_where_stale(hub, monkeypatch):
    root = ensure_cached(["mmlu", "arc_easy", "boolq"])
    assert sorted(hub) == [("allenai/ai2_arc", "ARC-Easy"), ("aps/super_glue", "boolq"), ("cais/mmlu", "all")]
    hub.clear()
    assert ensure_cached(["mmlu", "arc_easy", "boolq"]) == root
    assert hub == []  # all cached: the hub is not asked again
    before = (root / FILES["arc_easy"]).stat().st_mtime_ns
    # piqa's two files come from one load; losing one of them refetches both
    ensure_cached(["piqa"])
    (root / FILES["piqa_labels"]).unlink()
    hub.clear()
    ensure_cached(["mmlu", "arc_easy", "piqa"])
    assert hub == [("ybisk/piqa", None)] and (root / FILES["piqa_labels"]).read_text() == "0\n"
    # a source pinned to another revision is not the cached file's: fetched again
    pinned = dataclasses.replace(sources.SOURCES[FILES["boolq"]], revision="abc123")
    monkeypatch.setitem(sources.SOURCES, FILES["boolq"], pinned)
    monkeypatch.setitem(HUB, ("aps/super_glue", "boolq", "abc123"), HUB[("aps/super_glue", "boolq", None)])
    hub.clear()
    ensure_cached(["boolq", "arc_easy"])
    assert hub == [("aps/super_glue", "boolq")]
    assert (root / "boolq/dev.jsonl.source").read_text() == "hf:aps/super_glue:boolq@abc123 (validation)\n"
    assert (root / FILES["arc_easy"]).stat().st_mtime_ns == before


def test_an_unreachable_hub_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("S3FT_HOME", str(tmp_path / "home"))
    assert datasets.config.HF_HUB_OFFLINE  # conftest: no hub in tests
    with pytest.raises(S3FTError) as e:
        ensure_cached(["mmlu"])
    assert str(e.value).startswith("cannot reach hub dataset cais/mmlu:all: ") and "\n" not in str(e.value)
    assert not (tmp_path / "home").exists()


def test_a_run_with_an_unreachable_hub_stops_before_the_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("S3FT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("S3FT_DATA_DIR", raising=False)
    args = ["run", "--config.task.name=arith", "--config.eval.benchmarks=('arc_easy',)", "--config.eval.benchmark_source=hf",
            f"--config.workdir={tmp_path / 'run'}"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("s3ft: error: cannot reach hub dataset allenai/ai2_arc:ARC-Easy: ") and err.count("\n") == 1, err
    assert _files(tmp_path / "home") == []  # no hub file, and no embedded model built


def test_a_dataset_failing_after_others_loaded_leaves_nothing(hub, tmp_path, monkeypatch):
    def load_dataset(name, config=None, *, revision=None):
        hub.append((name, config))
        if name == "aps/super_glue":
            raise ConnectionError("Couldn't reach 'aps/super_glue' on the Hub (LocalEntryNotFoundError)\nmore")
        return HUB[(name, config, revision)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(S3FTError, match=r"^cannot reach hub dataset aps/super_glue:boolq: Couldn't reach 'aps/super_glue' on the Hub \(LocalEntryNotFoundError\)$"):
        ensure_cached(["mmlu", "arc_easy", "boolq"])
    assert ("cais/mmlu", "all") in hub  # loaded, and still nothing written
    assert _files(tmp_path / "home") == []


def test_a_benchmark_file_without_a_hub_source_is_refused_up_front(hub, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sources.SOURCES, FILES["boolq"], None)
    message = "benchmark boolq reads boolq/dev.jsonl, which has no hub source"
    with pytest.raises(S3FTError, match=message):
        ensure_cached(["mmlu", "boolq"])
    assert hub == [] and _files(tmp_path / "home") == []
    args = ["--config.task.name=arith", "--config.eval.benchmarks=('mmlu', 'boolq')", "--config.eval.benchmark_source=hf",
            f"--config.workdir={tmp_path / 'run'}"]
    for command in (["run", *args, "--dry-run"], ["data", "check", *args]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"s3ft: error: {message}") and err.count("\n") == 1, err
    # the default source does not ask for a hub source (it needs the directory instead)
    assert cli.main(["run", *args[:2], args[3], "--dry-run"]) == 2
    assert capsys.readouterr().err == "s3ft: error: no data directory: set S3FT_DATA_DIR or --config.data.data_dir\n"


def test_an_unwritable_hub_cache_is_refused_up_front(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("S3FT_HOME", str(tmp_path / "file" / "home"))
    monkeypatch.delenv("S3FT_DATA_DIR", raising=False)
    args = ["run", "--config.task.name=arith", "--config.eval.benchmarks=('boolq',)", f"--config.workdir={tmp_path / 'run'}", "--dry-run"]
    assert cli.main([*args, "--config.eval.benchmark_source=hf"]) == 2
    assert capsys.readouterr().err == (f"s3ft: error: cannot write to {tmp_path / 'file' / 'home' / 'hub_data'}: "
                                       f"{tmp_path / 'file'} is not a directory\n")
    monkeypatch.setenv("S3FT_HOME", str(tmp_path / "home"))
    assert cli.main([*args, "--config.eval.benchmark_source=hf"]) == 0


def test_data_check_lists_hub_benchmarks_without_a_data_directory(hub, tmp_path, capsys):
    args = ["--config.task.name=arith", "--config.eval.benchmarks=('mmlu', 'piqa')"]
    root = tmp_path / "home" / "hub_data"
    assert cli.main(["data", "check", *args, "--config.eval.benchmark_source=hf"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "data directory: (none: set S3FT_DATA_DIR or --config.data.data_dir)",
        f"hub      mmlu/mmlu_test.jsonl  (benchmark mmlu; read from the hub: hf:cais/mmlu:all (test), fetched on first use in {root})",
        f"hub      piqa/valid.jsonl  (benchmark piqa; read from the hub: hf:ybisk/piqa (validation), fetched on first use in {root})",
        f"hub      piqa/valid-labels.lst  (benchmark piqa; read from the hub: hf:ybisk/piqa (validation), fetched on first use in {root})",
        "all 3 present (3 read from the hub)",
    ]
    assert hub == [] and not root.exists()  # check reads nothing from the hub and writes nothing
    ensure_cached(["mmlu"])
    assert cli.main(["data", "check", *args, "--config.eval.benchmark_source=hf"]) == 0
    out = capsys.readouterr().out
    assert f"(test), cached in {root})" in out and f"(validation), fetched on first use in {root})" in out
    # the default source: the same files are missing without a directory
    assert cli.main(["data", "check", *args]) == 2
    captured = capsys.readouterr()
    assert "MISSING  mmlu/mmlu_test.jsonl  (benchmark mmlu)" in captured.out and "hub " not in captured.out
    assert captured.err.startswith("3 of 3 missing")


def test_only_a_non_default_source_changes_the_stage_fingerprints():
    from s3ft_jax.config import base_config, override, run_settings
    from s3ft_jax.io import json_digest
    from s3ft_jax.pipeline import bench_inputs, drift_inputs

    model = {"name": "m", "digest": "d"}
    default = run_settings(override(base_config(), {"eval.benchmark_limit": 8, "eval.mmlu_per_subject": 2}))
    assert default.eval.benchmark_source == "data_dir"
    # exactly the dicts the stages were fingerprinted with before the setting existed
    assert bench_inputs(default, "mmlu", model) == {"model": model, "limit": 8, "mmlu_per_subject": 2}
    assert bench_inputs(default, "boolq", model) == {"model": model, "limit": 8, "mmlu_per_subject": None}
    old_drift = {"base": model, "tuned": {"t": 1}, "responses": "abc", "benchmarks": list(default.eval.benchmarks),
                 "limit": 8, "mmlu_per_subject": 2, "logit_tokens": 2048}
    assert drift_inputs(default, model, {"t": 1}, "abc") == old_drift
    hf = run_settings(override(base_config(), {"eval.benchmark_limit": 8, "eval.mmlu_per_subject": 2, "eval.benchmark_source": "hf"}))
    assert bench_inputs(hf, "mmlu", model) == {"model": model, "limit": 8, "mmlu_per_subject": 2,
                                               "benchmark_source": "hf", "benchmark_hub": ["hf:cais/mmlu:all (test)"]}
    assert json_digest(bench_inputs(hf, "boolq", model)) != json_digest(bench_inputs(default, "boolq", model))
    assert json_digest(drift_inputs(hf, model, {"t": 1}, "abc")) != json_digest(old_drift)
    assert stage_identity("hf", []) == {}  # no benchmark read: nothing from the hub to name


def test_a_config_file_saved_before_the_setting_still_checks(tmp_path, capsys):
    """<workdir>/config.py of an older run has no eval.benchmark_source: it reads as the default."""
    from s3ft_jax.config import base_config
    from s3ft_jax.configfile import config_file_text

    config = base_config()
    config.task.name, config.eval.benchmarks, config.workdir = "arith", ("boolq",), str(tmp_path / "run")
    config.data.data_dir = str(tmp_path / "data")
    del config.eval["benchmark_source"]
    (tmp_path / "old.py").write_text(config_file_text(config))
    write_layout(HUB, tmp_path / "data", [FILES["boolq"]])
    assert cli.main(["run", f"--config={tmp_path / 'old.py'}", "--dry-run"]) == 0
    assert cli.main(["data", "check", f"--config={tmp_path / 'old.py'}"]) == 0
    assert f"present  {tmp_path / 'data' / FILES['boolq']}  (benchmark boolq)" in capsys.readouterr().out


def test_benchmark_source_values(capsys):
    assert EvalSettings(benchmark_source="hf").benchmark_source == "hf"
    assert EvalSettings().benchmark_source == benchmark_source.DEFAULT_SOURCE == "data_dir"
    with pytest.raises(ConfigError, match=r"^eval.benchmark_source must be one of 'data_dir', 'hf', got 'hub'$"):
        EvalSettings(benchmark_source="hub")
    assert cli.main(["config", "--config.eval.benchmark_source=local"]) == 2
    assert capsys.readouterr().err == "s3ft: error: eval.benchmark_source must be one of 'data_dir', 'hf', got 'local'\n"
