"""The NQ judge: an LLM's yes/no through the sampler, SQuAD heuristics, or either."""

import pytest

from s3ft_jax.judges import settings as judge_settings
from s3ft_jax.judges.settings import JudgeSettings
from s3ft_jax.judges.verdict import Judge, parse_yes_no
from s3ft_jax.tasks import TaskSettings, get_task
from s3ft_jax.tasks.base import Example
from tests.conftest import shared_data_dir


def nq_task():
    return get_task(TaskSettings(name="nq"))


EXAMPLES = [
    Example("a", {"question": "when was the last time anyone was on the moon"}, "14 December 1972 UTC", ["14 December 1972 UTC", "December 1972"]),
    Example("b", {"question": "who wrote he ain't heavy he's my brother lyrics"}, "Bobby Scott", ["Bobby Scott", "Bob Russell"]),
    Example("c", {"question": "when did the eagles win last super bowl"}, "2017", ["2017"]),
]
RESPONSES = ["The last moon landing was in December 1972.", "It was written by Elton John.", "They won in 2018."]


@pytest.mark.parametrize("text,expected", [("Yes", True), (" yes, it is", True), ("YES.", True), ("No", False),
                                           ("no.", False), ("", False), ("Maybe yes", False), ("Correct", True)])
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


def test_heuristic_mode_needs_no_model():
    verdicts = Judge(nq_task(), JudgeSettings(mode="heuristic"))(EXAMPLES, RESPONSES)
    assert [v.correct for v in verdicts] == [True, False, False]
    assert "contains=1" in verdicts[0].detail and "em=0" in verdicts[0].detail


def test_llm_modes_combine_the_model_and_the_heuristic(monkeypatch):
    seen = {"engines": 0}

    class FakeEngine:
        def __init__(self, model):
            seen["engines"] += 1

        def generate(self, tokenizer, prompts, options):
            seen["prompts"], seen["options"] = prompts, options
            return [type("G", (), {"text": t})() for t in ("no", "yes", "no")]

    monkeypatch.setattr("s3ft_jax.sampling.SamplerEngine", FakeEngine)
    tokenizer = type("T", (), {"chat_template": "x", "apply_chat_template": lambda self, m, tokenize, add_generation_prompt: m[0]["content"]})()
    judge = Judge(nq_task(), JudgeSettings(mode="llm", max_new_tokens=5), model=object(), tokenizer=tokenizer, llm_batch_size=3)
    llm = judge(EXAMPLES, RESPONSES)
    assert [v.correct for v in llm] == [False, True, False]
    assert (seen["options"].max_new_tokens, seen["options"].batch_size) == (5, 3)
    judge(EXAMPLES, RESPONSES)  # a second batch reuses the engine: the weights are copied once
    assert seen["engines"] == 1
    both = Judge(nq_task(), JudgeSettings(mode="llm_or_heuristic"), model=object(), tokenizer=tokenizer)(EXAMPLES, RESPONSES)
    assert [v.correct for v in both] == [True, True, False]
    # The judge prompt shows the question, every gold answer and the response.
    first = seen["prompts"][0]
    assert EXAMPLES[0].fields["question"] in first and "14 December 1972 UTC | December 1972" in first and RESPONSES[0] in first
    assert judge_settings.LLM_MODES == ("llm", "heuristic", "llm_or_heuristic")


def test_llm_judge_runs_on_the_embedded_model(embedded_home):
    from s3ft_jax.models import from_pretrained, load_tokenizer

    model, tokenizer = from_pretrained("smollm2-135m-instruct"), load_tokenizer("smollm2-135m-instruct")
    verdicts = Judge(nq_task(), JudgeSettings(mode="llm"), model=model, tokenizer=tokenizer)(EXAMPLES, RESPONSES)
    assert len(verdicts) == 3
    for v in verdicts:
        said = v.detail.split("llm=")[1].split(" em=")[0].strip("'\"")
        assert said, "the model's reply is recorded"
        assert v.correct == parse_yes_no(said)


def test_nq_splits_read_from_the_data_dir():
    t = nq_task()
    train, test = t.load(shared_data_dir(), "train"), t.load(shared_data_dir(), "test")
    assert len(test) == 3610 and 3500 < len(train) <= 3569
    assert not {e.fields["question"] for e in train} & {e.fields["question"] for e in test}
    assert all(isinstance(e.reference, list) and e.gold == e.reference[0] for e in train[:50])
