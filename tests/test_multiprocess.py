"""Multi-host code paths on one machine: 2 processes x 2 CPU devices against 1 process x 4.

Every launch goes through `s3ft_jax.launch` (real processes, a real coordinator on
127.0.0.1, gloo collectives), so these tests pay a JAX start-up and compiles per process:
the scenarios are packed into few launches.
"""

import json
import os
import re
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from s3ft_jax.launch import launch, s3ft_command
from s3ft_jax.training.metrics import read_metrics
from tests.conftest import shared_data_dir
from tests.tiny_models import make_tiny_chat_model

REPO = Path(__file__).resolve().parents[1]

# Process 1 of the 2-process `s3ft run` runs under this wrapper: a Python audit hook records
# every file opened for writing, every directory made and every file renamed or removed under
# the workdir. It sees what Python does (all of s3ft_jax's own writes); writes made inside
# C++ (tensorstore writing Orbax's array shards) are invisible to it.
AUDIT = r"""
import json, os, sys
log_path, root = sys.argv[1], os.path.abspath(sys.argv[2])
seen = []
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
CHANGING = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate", "os.link", "os.symlink",
            "os.utime", "os.chmod"}
def under_root(path):
    try:
        return os.path.abspath(os.fsdecode(path)).startswith(root + os.sep)
    except TypeError:
        return False  # a file descriptor
def hook(event, args):
    if event == "open" and isinstance(args[2], int) and args[2] & WRITING and under_root(args[0]):
        seen.append([event, os.fsdecode(args[0])])
    elif event in CHANGING and args and under_root(args[0]):
        seen.append([event, os.fsdecode(args[0])])
sys.addaudithook(hook)
from s3ft_jax import cli
code = cli.main(sys.argv[3:])
with open(log_path, "w") as f:
    json.dump(seen, f)
sys.exit(code)
"""


def _env(**extra) -> dict:
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), **extra}
    return env


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """One JAX compilation cache for the module's launches: a run that repeats another's
    programs on the same devices (the restart after a kill) loads them instead of compiling
    them again, most of such a run's CPU time. Process 0 alone writes it (JAX's rule)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax_cache")))
        yield


def _run(args_per_process, *, devices=2, cwd=None, env=None, commands=None):
    n = len(args_per_process)
    commands = commands or [s3ft_command(a) for a in args_per_process]
    envs = [{**_env(), **((env or [{}] * n)[i])} for i in range(n)]
    result = launch(commands, devices=devices, cwd=cwd, env=envs, grace_s=120, echo=lambda *a: None)
    result.text = ["\n".join(lines) for lines in result.output]
    return result


def _together(*calls):
    """Run launches side by side: single-threaded phases (imports, compiles) of one overlap
    the others', which saves wall time on a few cores. Results in call order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def _metrics(path: Path) -> list[float]:
    """step, loss, grad_norm of every step, flat (for pytest.approx)."""
    return [x for m in read_metrics(path) for x in (m["step"], m["loss"], m["grad_norm"])]


@pytest.fixture(scope="module")
def tiny(embedded_home, tmp_path_factory):
    from s3ft_jax.models import resolve_model_path

    root = tmp_path_factory.mktemp("multiprocess")
    return make_tiny_chat_model(root / "tiny", resolve_model_path("smollm2-135m-instruct")), root


def _run_args(model, workdir):
    return [
        "run", f"--config.model.name={model}", f"--config.workdir={workdir}", f"--config.data.data_dir={shared_data_dir()}",
        "--config.run.methods=('s3ft',)", "--config.task.limit=4", "--config.eval.limit=2",
        "--config.sampling.max_new_tokens=6", "--config.sampling.batch_size=4", "--config.eval.benchmarks=('boolq',)",
        "--config.eval.benchmark_limit=2", "--config.eval.drift=False", "--config.train.max_steps=2", "--config.train.batch_size=2",
        "--config.train.progress=False",
    ]  # fmt: skip


def test_run_on_two_processes_matches_one_and_only_process_0_writes(tiny):
    """`s3ft run` (method s3ft): sharded load, Algorithm 1's generations and judged D',
    log-likelihood (logprobs, benchmark scores), LoRA training with an Orbax checkpoint,
    in-domain generation, the report: 2 processes give what 1 process gives."""
    model, root = tiny
    one, two = root / "one", root / "two"
    audit = root / "audit_p1.json"
    args = _run_args(model, two)
    ref, mp = _together(
        lambda: _run([_run_args(model, one)], devices=4),
        lambda: _run([args, args], commands=[s3ft_command(args), [sys.executable, "-c", AUDIT, str(audit), str(two), *args]]),
    )
    assert ref.returncodes == [0], ref.text[0][-3000:]
    assert mp.returncodes == [0, 0], "\n".join(t[-3000:] for t in mp.text)

    # The mesh spans both processes' devices: each holds half of every fsdp-split weight.
    assert "mesh {'data': 1, 'fsdp': 4, 'tensor': 1}" in mp.text[1]
    # The base model's greedy generations, the judged D' built from them: identical bytes.
    for name in ("build/predict.jsonl", "build/judge_predict.jsonl", "s3ft/dataset.jsonl", "s3ft/stats.json"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    # The base model's log-likelihoods of the D' targets: identical.
    lp1, lp2 = json.loads((one / "logprobs.json").read_text()), json.loads((two / "logprobs.json").read_text())
    assert lp2["per_example"] == lp1["per_example"] and lp2["sources"] == lp1["sources"]
    # LoRA training: the same losses, an Orbax checkpoint of the last step, the adapters.
    losses1, losses2 = _metrics(one / "s3ft/train/metrics.jsonl"), _metrics(two / "s3ft/train/metrics.jsonl")
    assert losses2[::3] == [1, 2]
    assert losses2 == pytest.approx(losses1, rel=1e-5)
    assert (two / "s3ft/train/checkpoints/2").is_dir()
    assert (two / "s3ft/train/adapter/adapter_model.safetensors").is_file()
    # The trained weights differ in their last bits (gradients are summed across processes in
    # another order), so the fine-tuned model's scores match within float tolerance only.
    records = [[json.loads(line) for line in (d / "s3ft/eval/records/boolq.jsonl").read_text().splitlines()] for d in (one, two)]
    assert len(records[1]) == 2
    for a, b in zip(*records):
        assert b["loglikelihoods"] == pytest.approx(a["loglikelihoods"], rel=1e-5)
        assert {k: v for k, v in b.items() if k != "loglikelihoods"} == {k: v for k, v in a.items() if k != "loglikelihoods"}
    strip = lambda d: {k: {kk: vv for kk, vv in v.items() if kk != "seconds"} for k, v in d.items()}  # noqa: E731
    generalization = [json.loads((d / "s3ft/eval/generalization.json").read_text()) for d in (one, two)]
    assert strip(generalization[1]) == strip(generalization[0])
    assert json.loads((two / "s3ft/eval/indomain.json").read_text()) == json.loads((one / "s3ft/eval/indomain.json").read_text())
    # The report's tables (what `s3ft run` printed), minus the wall-time table.
    tables = lambda text: text.split("Wall time per stage")[0].split("Training targets")[1]  # noqa: E731
    assert tables(mp.text[0].replace("[p0] ", "")) == tables(ref.text[0])

    # Process 1 wrote nothing in the workdir through Python but Orbax's per-process metadata
    # inside a checkpoint being saved (Orbax has every process write its own part; its array
    # shards are written by tensorstore, in C++, which the hook cannot see).
    writes = json.loads(audit.read_text())
    assert writes, "the audit hook saw nothing: it is not working"
    assert all("/checkpoints/" in path and "orbax-checkpoint-tmp" in path and path.endswith("process_1") for _, path in writes), writes


def _train_args(model, data, workdir, *extra):
    return [
        "train", f"--config.model.name={model}", f"--config.workdir={workdir}", f"--config.train.dataset={data}",
        "--config.lora.enabled=False", "--config.train.batch_size=2", "--config.train.max_steps=4",
        "--config.train.checkpoint_every=2", "--config.train.learning_rate=0.01", "--config.train.progress=False", *extra,
    ]  # fmt: skip


# The heartbeat timeout of the kill tests: short, to keep them quick, but long enough that a
# busy test machine does not starve a live process's heartbeat thread for that long.
QUICK_HEARTBEAT_S = 5


def _died_line(survivor: int, victim: int) -> str:
    return (f"s3ft: error: process {survivor} of 2 stopped: process {victim} died (no heartbeat for "
            f"{QUICK_HEARTBEAT_S} s: killed, out of memory, or its host is down)")  # fmt: skip


def _assert_stopped_by_heartbeat(result, survivor: int, victim: int) -> None:
    """The survivor of a kill -9 ended by itself (3, not the launcher's SIGKILL) within the
    heartbeat timeout, with one line naming the dead process and no traceback or C++ dump."""
    text = result.text[survivor]
    assert result.returncodes[victim] == -signal.SIGKILL
    assert result.returncodes[survivor] == 3, text[-3000:]
    assert QUICK_HEARTBEAT_S - 2 < result.seconds[survivor] - result.seconds[victim] < QUICK_HEARTBEAT_S + 5, result.seconds
    assert [line for line in result.output[survivor] if line.startswith("s3ft: error:")] == [_died_line(survivor, victim)], text[-3000:]
    assert "Traceback" not in text and "stack trace" not in text and "Fatal" not in text, text[-3000:]


def _killed_after_step(step: int, args: list[str]) -> tuple[list[str], dict]:
    """The command and environment of an `s3ft ARGS` process whose training kills it with
    SIGKILL after `step` (once that step's checkpoint is complete): the one place the tests
    inject a kill -9 into training."""
    return [sys.executable, "-m", "tests.kill_after_step", str(step), *args], {}


# A process of a multi-process run that joined the others and is busy (no `s3ft` command:
# no model to load, so both kill cases cost only a JAX start-up each).
BUSY_PEER = """
import os, time
from s3ft_jax import distributed
distributed.initialize_from_env()
print("joined", os.getpid(), flush=True)
time.sleep(300)
"""


def _kill_when_joined(victim: int):
    """2 BUSY_PEER processes; the test kills `victim` with SIGKILL once both have joined."""
    joined = []

    def echo(i, stream, line):
        if line.startswith("joined "):
            joined.append((i, int(line.split()[1])))
            if len(joined) == 2:
                os.kill(dict(joined)[victim], signal.SIGKILL)

    env = {**_env(), "S3FT_HEARTBEAT_TIMEOUT": str(QUICK_HEARTBEAT_S)}
    return launch([[sys.executable, "-c", BUSY_PEER]] * 2, devices=1, env=[env, env], grace_s=60, echo=echo)


def test_a_killed_process_stops_the_others_with_one_line_within_the_heartbeat_timeout():
    """kill -9 of process 1, and of process 0, which coordinates the run (its coordination
    service outlives it in a child process, so the survivor still hears the silence)."""
    for victim, result in zip((0, 1), _together(lambda: _kill_when_joined(0), lambda: _kill_when_joined(1))):
        result.text = ["\n".join(lines) for lines in result.output]
        survivor = 1 - victim
        _assert_stopped_by_heartbeat(result, survivor, victim)
        # Nothing else at all: no log line of JAX's either.
        (first, *rest) = result.output[survivor]
        assert first.startswith("joined ") and rest == [_died_line(survivor, victim)], result.text[survivor][-3000:]


def test_full_training_killed_process_then_restart_resumes_on_the_same_trajectory(tiny):
    """Full fine-tuning, 2 processes; process 1 is killed with SIGKILL after step 2: process 0
    stops by itself (our heartbeat), and a restart of both resumes to the losses of an
    uninterrupted 1-process run."""
    model, root = tiny
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus {i + 1}?", "target": f"It is {2 * i + 1}."}) + "\n" for i in range(6)))
    args = _train_args(model, data, root / "full2")
    quick = {"S3FT_HEARTBEAT_TIMEOUT": str(QUICK_HEARTBEAT_S)}
    victim, victim_env = _killed_after_step(2, args)
    ref, killed = _together(
        lambda: _run([_train_args(model, data, root / "full1")], devices=4),
        lambda: _run([args, args], commands=[s3ft_command(args), victim], env=[quick, {**quick, **victim_env}]),
    )
    assert ref.returncodes == [0], ref.text[0][-3000:]
    _assert_stopped_by_heartbeat(killed, survivor=0, victim=1)

    resumed = _run([args, args])
    assert resumed.returncodes == [0, 0], "\n".join(t[-3000:] for t in resumed.text)
    assert "resuming from checkpoint" in resumed.text[0]
    assert _metrics(root / "full2/train/metrics.jsonl") == pytest.approx(_metrics(root / "full1/train/metrics.jsonl"), rel=1e-5)
    assert (root / "full2/train/checkpoints/4").is_dir()


def test_launcher_command_line_prefixes_each_process_output(tmp_path):
    import subprocess

    env = {**os.environ, **_env()}
    ok = subprocess.run([sys.executable, "-m", "s3ft_jax.launch", "-n", "2", "--", "config", "--config.seed=7"],
                        env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-3000:]
    for p in ("[p0] ", "[p1] "):
        assert f"{p}        'seed': 7," in ok.stdout.splitlines()  # s3ft config prints a Python config file
    bad = subprocess.run([sys.executable, "-m", "s3ft_jax.launch", "-n", "2", "--", "config", "--config.seed=x"],
                         env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    # Both fail on the bad value (2); one may first see the other's failure and stop (3).
    assert bad.returncode in (2, 3)
    assert re.fullmatch(r"launch: process 0: exit status [23], process 1: exit status [23]", bad.stderr.splitlines()[-1])


def test_processes_with_different_configs_refuse_to_run(tiny):
    model, root = tiny
    a = _train_args(model, root / "data.jsonl", root / "mismatch")
    result = _run([a, [*a, "--config.seed=1"]])
    # Each process finds the difference (2), unless it first sees the other's failure (3).
    assert all(code in (2, 3) for code in result.returncodes) and 2 in result.returncodes
    for i, other in ((0, 1), (1, 0)):
        (error,) = [l for l in result.output[i] if l.startswith("s3ft: error:")]
        assert "was started with a different command and configuration (config.seed: " in error
        if result.returncodes[i] == 2:
            assert error == (f"s3ft: error: process {i} of 2: process {other} was started with a different command and "
                             f"configuration (config.seed: {i} here, {other} there): every process must run the same command")  # fmt: skip
    assert not (root / "mismatch").exists()


def test_data_missing_on_one_host_is_reported_by_that_host(tiny):
    model, root = tiny
    here, there = root / "host0", root / "host1"
    here.mkdir()
    there.mkdir()
    (here / "data.jsonl").write_text('{"prompt": "Hi", "target": "Hello."}\n')
    # The same relative path on both "hosts", each with its own working directory.
    args = _train_args(model, "data.jsonl", root / "missing")
    result = _run([args, args], cwd=[here, there])
    assert result.returncodes == [3, 2]
    (error,) = [l for l in result.output[1] if l.startswith("s3ft: error:")]
    assert error.startswith("s3ft: error: process 1 of 2: training data data.jsonl not found")
    (error,) = [l for l in result.output[0] if l.startswith("s3ft: error:")]
    assert error.startswith("s3ft: error: process 0 of 2 stopped: process 1 failed (training data data.jsonl not found")
    assert "Traceback" not in result.text[0] + result.text[1]
