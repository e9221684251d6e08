"""The NQ judge: an LLM's yes/no probabilities, SQuAD heuristics, or either."""

import math

import pytest

from s3ft_jax.judges import settings as judge_settings
from s3ft_jax.judges.settings import JudgeSettings
from s3ft_jax.errors import ConfigError
from s3ft_jax.judges.verdict import Judge, answer_tokens
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


def test_heuristic_mode_needs_no_model():
    verdicts = Judge(nq_task(), JudgeSettings(mode="heuristic"))(EXAMPLES, RESPONSES)
    assert [v.correct for v in verdicts] == [True, False, False]
    assert "contains=1" in verdicts[0].detail and "em=0" in verdicts[0].detail
    assert [v.how for v in verdicts] == ["heuristic"] * 3 and all(v.margin is None for v in verdicts)


class WordTokenizer:
    """A vocabulary where each spelling of yes/no is one token; prompts pass through as text."""

    chat_template = "x"
    vocab = {w: i for i, w in enumerate(["Yes", "yes", " yes", "No", "no", " no", "YES", "NO", " Yes", " No"], start=10)}
    pad_token_id = 0

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return messages[0]["content"]

    def __call__(self, text, add_special_tokens=False):
        if text in self.vocab:
            return {"input_ids": [self.vocab[text]]}
        return {"input_ids": [100 + ord(c) for c in text] or [1]}


def test_answer_tokens_are_each_spelling_of_yes_and_no():
    yes, no = answer_tokens(WordTokenizer())
    v = WordTokenizer.vocab
    assert yes == [v["Yes"], v["yes"], v["YES"], v[" Yes"], v[" yes"]] and no == [v["No"], v["no"], v["NO"], v[" No"], v[" no"]]

    class OneNo(WordTokenizer):
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [7, 8]} if "es" in text or "ES" in text else super().__call__(text)

    with pytest.raises(ConfigError, match="single-token"):
        answer_tokens(OneNo())


def test_llm_verdict_is_the_sign_of_the_yes_no_log_probability_margin(monkeypatch):
    """One scoring pass: p(yes) against p(no) after the judge prompt, summed over spellings."""
    tok = WordTokenizer()
    yes_ids = {tok.vocab[w] for w in ("Yes", "yes", "YES", " Yes", " yes")}
    # per example: (log p of each yes spelling, log p of each no spelling)
    plan = [(-3.0, -1.0), (-0.5, -2.5), (-1.0, -1.0 + math.log(2.0))]
    seen = {}

    def fake_score(model, pairs, *, batch_size, pad_id, weights):
        seen["pairs"], seen["batch_size"] = pairs, batch_size
        seen["weights"].append(weights)
        contexts = []
        for ctx, _ in pairs:
            if not contexts or contexts[-1] != tuple(ctx):
                contexts.append(tuple(ctx))
        out = []
        for ctx, (t,) in pairs:
            y, n = plan[contexts.index(tuple(ctx))]
            out.append((y if t in yes_ids else n, False))
        return out

    monkeypatch.setattr("s3ft_jax.sampling.scoring.score_tokens", fake_score)
    made = []  # the weights' scoring form is made once per judge, then reused for every batch
    monkeypatch.setattr("s3ft_jax.sampling.weights.sampling_params", lambda model, unstack: made.append(unstack) or ("spec", "params"))
    seen["weights"] = []
    judge = Judge(nq_task(), JudgeSettings(mode="llm"), model=object(), tokenizer=tok, llm_batch_size=3)
    llm = judge(EXAMPLES, RESPONSES)
    assert [v.correct for v in llm] == [False, True, False]
    # five spellings a side: the margin is log(5 e^y) - log(5 e^n) = y - n
    assert [round(v.margin, 6) for v in llm] == [-2.0, 2.0, round(-math.log(2.0), 6)]
    assert [v.how for v in llm] == ["llm"] * 3 and "llm=no margin=-2.000" in llm[0].detail
    assert seen["batch_size"] == 3 and len(seen["pairs"]) == 3 * 10  # every spelling, every example
    judge(EXAMPLES, RESPONSES)
    assert made == [False] and seen["weights"] == [("spec", "params")] * 2
    both = Judge(nq_task(), JudgeSettings(mode="llm_or_heuristic"), model=object(), tokenizer=tok)(EXAMPLES, RESPONSES)
    assert [v.correct for v in both] == [True, True, False]  # the heuristic accepts example a
    assert [v.how for v in both] == ["heuristic", "llm", "llm"]
    # The judge prompt shows the question, every gold answer and the response.
    first = judge.task.render(judge.task.prompts.judge, EXAMPLES[0], golds="14 December 1972 UTC | December 1972",
                              response=RESPONSES[0])
    assert list(seen["pairs"][0][0]) == tok(first)["input_ids"]
    assert judge_settings.LLM_MODES == ("llm", "heuristic", "llm_or_heuristic")


def test_llm_judge_runs_on_the_embedded_model(embedded_home):
    from s3ft_jax.models import from_pretrained, load_tokenizer

    model, tokenizer = from_pretrained("smollm2-135m-instruct"), load_tokenizer("smollm2-135m-instruct")
    verdicts = Judge(nq_task(), JudgeSettings(mode="llm"), model=model, tokenizer=tokenizer)(EXAMPLES, RESPONSES)
    assert len(verdicts) == 3
    for v in verdicts:
        assert v.how == "llm" and math.isfinite(v.margin)
        assert v.correct == (v.margin > 0)
    # The margin is the model's own: a prompt that asserts the answer is right moves it towards yes.
    yes, no = answer_tokens(tokenizer)
    assert yes and no and not set(yes) & set(no)


def test_nq_splits_read_from_the_data_dir():
    t = nq_task()
    train, test = t.load(shared_data_dir(), "train"), t.load(shared_data_dir(), "test")
    assert len(test) == 3610 and 3500 < len(train) <= 3569
    assert not {e.fields["question"] for e in train} & {e.fields["question"] for e in test}
    assert all(isinstance(e.reference, list) and e.gold == e.reference[0] for e in train[:50])
