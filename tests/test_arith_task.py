"""The generated arithmetic task: seeded, disjoint splits, golds the numeric judge accepts, and
difficulty options checked with one-line errors."""

import dataclasses
import re

import pytest

from s3ft_jax import cli
from s3ft_jax.errors import ConfigError
from s3ft_jax.judges.verdict import Judge
from s3ft_jax.tasks import ArithTaskSettings, TaskSettings, get_task, load_examples
from s3ft_jax.tasks.arith import generate

pytestmark = pytest.mark.fast  # `make test-fast`

SMALL = ArithTaskSettings(train_size=200, test_size=100)
STEP_RE = re.compile(r"^(\d+) ([-+*]) (\d+) = (\d+)\.$")


def _steps(gold: str) -> list[tuple[int, str, int, int]]:
    *lines, last = gold.split("\n")
    assert re.fullmatch(r"The answer is \d+\.", last), gold
    out = []
    for line in lines:
        match = STEP_RE.match(line)
        assert match, line
        out.append((int(match[1]), match[2], int(match[3]), int(match[4])))
    return out


def test_same_seed_same_problems_other_seed_others():
    first, again = generate(SMALL), generate(SMALL)
    assert first == again
    other = generate(dataclasses.replace(SMALL, seed=1))
    assert [e.fields for e in other["train"]] != [e.fields for e in first["train"]]


def test_sizes_ids_and_unique_questions():
    splits = generate(SMALL)
    assert len(splits["train"]) == 200 and len(splits["test"]) == 100
    for split, examples in splits.items():
        assert [e.id for e in examples] == [f"arith-{split}-{i}" for i in range(len(examples))]
        assert len({e.fields["question"] for e in examples}) == len(examples)


def test_train_and_test_share_no_question_and_no_calculation():
    splits = generate(SMALL)
    calculations = {s: {tuple(_steps(e.gold)) for e in splits[s]} for s in splits}
    questions = {s: {e.fields["question"] for e in splits[s]} for s in splits}
    assert not questions["train"] & questions["test"]
    assert not calculations["train"] & calculations["test"]


def test_a_problems_split_does_not_depend_on_the_sizes():
    small, large = generate(SMALL), generate(dataclasses.replace(SMALL, train_size=400, test_size=300))
    assert large["train"][:200] == small["train"] and large["test"][:100] == small["test"]


@pytest.mark.parametrize("options", [
    {},
    {"min_ops": 1, "max_ops": 1, "max_operand": 10, "operators": "+-"},  # the demo's
    {"min_ops": 2, "max_ops": 3, "max_operand": 50, "operators": "*"},
])
def test_golds_follow_the_difficulty_and_their_arithmetic_is_right(options):
    settings = dataclasses.replace(SMALL, **options)
    for example in generate(settings)["train"] + generate(settings)["test"]:
        steps = _steps(example.gold)
        assert settings.min_ops <= len(steps) <= settings.max_ops
        for i, (left, op, right, result) in enumerate(steps):
            assert op in settings.operators
            assert result == {"+": left + right, "-": left - right, "*": left * right}[op] and result >= 0
            assert right <= settings.max_operand and (i > 0 or left <= settings.max_operand)
            if i:
                assert left == steps[i - 1][3]  # each step works on the running total
        assert example.reference == str(steps[-1][3])
        assert example.gold.endswith(f"The answer is {example.reference}.")


def test_the_numeric_judge_accepts_the_golds_and_rejects_perturbed_ones():
    task = get_task(TaskSettings(name="arith", arith=SMALL))
    examples = load_examples(TaskSettings(name="arith", arith=SMALL), task, "train")  # no data directory needed
    judge = Judge(task)
    assert all(v.correct for v in judge(examples, [e.gold for e in examples]))
    off_by_one = [re.sub(r"The answer is (\d+)\.$", lambda m: f"The answer is {int(m[1]) + 1}.", e.gold) for e in examples]
    assert not any(v.correct for v in judge(examples, off_by_one))
    # A gold cut at the token limit before its answer line is refused too.
    cut = [e.gold.rsplit("\n", 1)[0] + "\nThe answer" for e in examples]
    assert not any(v.correct for v in judge(examples, cut, ["length"] * len(cut)))


def test_prompt_asks_for_gsm8ks_answer_line():
    task = get_task(TaskSettings(name="arith"))
    example = load_examples(TaskSettings(name="arith"), task, "test")[0]
    prompt = task.prediction_prompt(example)
    assert "The answer is {answer}" in prompt and example.fields["question"] in prompt
    assert task.judge == "numeric" and task.splits == ("train", "test")
    with pytest.raises(ConfigError, match="arith has no split 'dev'"):
        task.load(None, "dev")


@pytest.mark.parametrize("options, message", [
    ({"min_ops": 0}, "task.arith needs 1 <= min_ops <= max_ops <= 5, got min_ops=0, max_ops=2"),
    ({"min_ops": 3, "max_ops": 2}, "task.arith needs 1 <= min_ops <= max_ops <= 5, got min_ops=3, max_ops=2"),
    ({"max_ops": 6}, "task.arith needs 1 <= min_ops <= max_ops <= 5"),
    ({"max_operand": 1}, "task.arith.max_operand must be from 2 to 10000, got 1"),
    ({"operators": "+/"}, "task.arith.operators must be some of '+-*', got '+/'"),
    ({"operators": ""}, "task.arith.operators must be some of '+-*', got ''"),
    ({"train_size": 0}, "task.arith.train_size and test_size must be >= 1, got 0 and 500"),
    ({"seed": 1.5}, "task.arith.seed must be an integer, got 1.5"),
])
def test_bad_difficulty_options_are_one_line_errors(capsys, options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ArithTaskSettings(**options)
    args = [f"--config.task.arith.{k}={v}" for k, v in options.items() if k != "seed"]
    if args:  # the CLI says the same in one line, exit status 2
        assert cli.main(["config", "--config.task.name=arith", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_good_options_are_accepted():
    settings = ArithTaskSettings(seed=7, min_ops=2, max_ops=5, max_operand=2, operators="-", train_size=1, test_size=1)
    splits = generate(settings)
    assert len(splits["train"]) == 1 and len(splits["test"]) == 1


def test_a_space_too_small_for_the_sizes_is_an_error():
    # One step of + on 1..2: four calculations (and a few wordings each) cannot make 5,000 problems.
    tiny = ArithTaskSettings(max_ops=1, max_operand=2, operators="+", train_size=5000, test_size=10)
    with pytest.raises(ConfigError, match="could not make 5000 train and 10 test problems.*raise task.arith.max_operand"):
        generate(tiny)


def test_the_demo_runs_arith_and_keeps_gsm8k_as_a_variant(capsys):
    from configs.demo import get_config

    arith, gsm8k = get_config(), get_config("gsm8k")
    assert arith.task.name == "arith" and arith.task.arith.max_ops == 1 and arith.workdir == "runs/demo"
    assert gsm8k.task.name == "gsm8k" and gsm8k.workdir == "runs/demo-gsm8k"
    for config in (arith, gsm8k):
        assert (config.task.limit, config.eval.limit, config.eval.benchmark_limit, config.sampling.max_new_tokens) == (24, 16, 8, 192)
    assert cli.main(["config", "--config=configs/demo.py:gsm8k"]) == 0
    assert "'name': 'gsm8k'" in capsys.readouterr().out
    assert cli.main(["config", "--config=configs/demo.py:nope"]) == 2
    assert "unknown demo variant 'nope'" in capsys.readouterr().err
