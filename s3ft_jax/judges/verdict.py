"""One entry point for every judge: `Judge(task, ...)(examples, responses) -> [Verdict]`."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

from s3ft_jax.errors import ConfigError
from s3ft_jax.judges import text
from s3ft_jax.judges.settings import JudgeSettings
from s3ft_jax.tasks.base import Example, Task



# How a verdict was reached (`Verdict.how`), counted by the judge audit.
HOW = (
    "marker",        # numeric: the value stated after the last answer marker
    "last_number",   # numeric: no marker, the response's last number
    "no_answer",     # numeric/regex: nothing to read
    "truncated",     # refused: cut at the token limit with no answer stated before the cut
    "exact",         # exact match
    "regex",         # the task's regex
    "sandbox",       # code: the sandbox's status follows after a colon (sandbox:passed, sandbox:timeout)
    "llm",           # the LLM judge's yes/no probabilities (margin = log p(yes) - log p(no))
    "heuristic",     # open QA: exact match or containment
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    correct: bool
    detail: str = ""
    how: str = ""  # one of HOW (code: "sandbox:<status>")
    margin: float | None = None  # the LLM judge: log p(yes) - log p(no)

    def to_json(self) -> dict:
        out = {"correct": self.correct, "detail": self.detail, "how": self.how}
        if self.margin is not None:
            out["margin"] = round(self.margin, 4)
        return out


class Judge:
    """Decides correctness for a task. The LLM judge needs a model and tokenizer (the base
    model unless `judge.model` names another) and reads its yes/no probabilities."""

    def __init__(self, task: Task, settings: JudgeSettings = JudgeSettings(), *, model=None, tokenizer=None,
                 llm_batch_size: int = 32):
        self.task, self.settings, self.mode = task, settings, settings.mode
        self.model, self.tokenizer = model, tokenizer
        self.llm_batch_size = llm_batch_size
        self._answer_tokens: tuple[list[int], list[int]] | None = None  # the LLM judge's yes/no token ids
        self._weights = None  # the LLM judge model's scoring weights, made on its first question
        if task.judge == "code":
            from s3ft_jax.judges.code import check_sandbox

            check_sandbox()  # refuse before any work if the machine cannot isolate programs

    def __call__(self, examples: Sequence[Example], responses: Sequence[str],
                 finish_reasons: Sequence[str] | None = None) -> list[Verdict]:
        """One verdict per response. `finish_reasons` (the sampler's "eos" | "stop" | "length")
        lets the judge refuse answers cut at the token limit (judge.accept_truncated)."""
        if len(examples) != len(responses) or (finish_reasons is not None and len(finish_reasons) != len(responses)):
            raise ValueError("one response (and finish reason) per example")
        kind = self.task.judge
        if kind == "numeric":
            verdicts = [self._numeric(e, r) for e, r in zip(examples, responses)]
        elif kind == "exact":
            verdicts = [Verdict(text.exact_match(r, e.reference), "normalised exact match", "exact") for e, r in zip(examples, responses)]
        elif kind == "regex":
            verdicts = [self._regex(e, r) for e, r in zip(examples, responses)]
        elif kind == "code":
            verdicts = self._code(examples, responses)
        elif kind == "llm":
            verdicts = self._llm(examples, responses)
        else:
            raise ConfigError(f"unknown judge {kind!r}")
        if finish_reasons is None or self.settings.accept_truncated:
            return verdicts
        return [self._refuse_truncated(v, r) if reason == "length" and v.correct else v
                for v, r, reason in zip(verdicts, responses, finish_reasons)]

    def _refuse_truncated(self, verdict: Verdict, response: str) -> Verdict:
        """A response cut at the token limit is accepted only when it stated its answer before
        the cut: numeric, a complete answer clause after a marker; code, a closed program; regex,
        the pattern's match. Open answers (exact, llm) have no marker, so a cut one is refused."""
        kind = self.task.judge
        if kind == "numeric":
            from s3ft_jax.judges.math import read_answer

            reading = read_answer(response)
            stated = reading.how == "marker" and reading.stated
        elif kind == "code":
            stated = _closes_program(response, self.task.stop)
        else:
            stated = kind == "regex"
        if stated:
            return verdict
        return Verdict(False, f"cut at the token limit with no answer stated before the cut; {verdict.detail}"[:300],
                       "truncated", verdict.margin)

    def _numeric(self, example: Example, response: str) -> Verdict:
        from s3ft_jax.judges.math import read_answer
        from s3ft_jax.tasks.gsm8k import gold_value
        from s3ft_jax.tasks.numbers import format_number

        reading = read_answer(response)
        answer = None if reading.value is None else format_number(reading.value)
        correct = reading.value is not None and reading.value == gold_value(str(example.reference))
        return Verdict(correct, f"answer={answer} gold={example.reference}", reading.how)

    def _regex(self, example: Example, response: str) -> Verdict:
        pattern = re.compile(self.task.options["regex"])
        matches = list(pattern.finditer(response))
        if not matches:
            return Verdict(False, "pattern not found", "no_answer")
        last = matches[-1]
        answer = last.group(1) if pattern.groups else last.group(0)
        return Verdict(text.exact_match(answer, example.reference), f"answer={answer!r}", "regex")

    def _code(self, examples, responses) -> list[Verdict]:
        from s3ft_jax.judges.code import CodeJob, run_many

        extract = self.task.extract_program or (lambda r: r)
        jobs = [CodeJob(extract(r), list(e.reference["tests"]), e.reference.get("setup", "")) for e, r in zip(examples, responses)]
        results = run_many(jobs, workers=self.settings.code_workers or None, timeout_s=self.settings.code_timeout_s)
        return [Verdict(res.passed, f"{res.status}: {res.detail}"[:300], f"sandbox:{res.status}") for res in results]

    def _llm(self, examples, responses) -> list[Verdict]:
        heuristic = [
            (text.exact_match(r, e.reference), text.contains_answer(r, e.reference), text.f1(r, e.reference))
            for e, r in zip(examples, responses)
        ]
        margins: list[float | None] = [None] * len(examples)
        if self.mode != "heuristic":
            margins = self._ask_model(examples, responses)
        verdicts = []
        for (em, contains, f1), margin in zip(heuristic, margins):
            said = margin is not None and margin > 0
            by_heuristic = em or contains
            correct = {"llm": said, "heuristic": by_heuristic, "llm_or_heuristic": said or by_heuristic}[self.mode]
            how = "llm" if self.mode == "llm" or said or (self.mode == "llm_or_heuristic" and not by_heuristic) else "heuristic"
            llm = "" if margin is None else f"llm={'yes' if said else 'no'} margin={margin:+.3f} "
            verdicts.append(Verdict(correct, f"{llm}em={int(em)} contains={int(contains)} f1={f1:.2f}", how, margin))
        return verdicts

    def _ask_model(self, examples, responses) -> list[float]:
        """log p(yes) - log p(no) for the judge prompt's next token, from one scoring pass (the
        way lm-eval scores multiple choice), not from parsing generated text: each side sums
        the probabilities of its one-token spellings ("Yes", "yes", " yes", ...)."""
        from s3ft_jax.sampling import render_chat
        from s3ft_jax.sampling.engine import encode_prompts
        from s3ft_jax.sampling.scoring import score_tokens

        if self.model is None or self.tokenizer is None:
            raise ConfigError("the llm judge needs a model (judge.mode=heuristic judges without one)")
        if self._answer_tokens is None:
            from s3ft_jax.sampling.weights import sampling_params

            self._answer_tokens = answer_tokens(self.tokenizer)
            # the weights' scoring form, cast and placed once for every batch judged
            self._weights = sampling_params(self.model, unstack=False)
        yes, no = self._answer_tokens
        prompts = encode_prompts(self.tokenizer, [
            render_chat(self.tokenizer, [{"role": "user", "content": self.task.render(
                self.task.prompts.judge, e, golds=" | ".join(map(str, e.reference)), response=r.strip())}])
            for e, r in zip(examples, responses)
        ])
        pairs = [(ids, [t]) for ids in prompts for t in (*yes, *no)]
        scores = score_tokens(self.model, pairs, batch_size=self.llm_batch_size,
                              pad_id=getattr(self.tokenizer, "pad_token_id", None) or 0, weights=self._weights)
        per = len(yes) + len(no)
        out = []
        for n in range(len(prompts)):
            row = [lp for lp, _ in scores[n * per:(n + 1) * per]]
            out.append(_logsumexp(row[:len(yes)]) - _logsumexp(row[len(yes):]))
        return out


# The judge's two answers, as a reply would start them.
YES_SPELLINGS = ("Yes", "yes", "YES", " Yes", " yes")
NO_SPELLINGS = ("No", "no", "NO", " No", " no")


def answer_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The single-token spellings of yes and of no in this vocabulary (distinct, in order)."""
    def single(words):
        ids = []
        for w in words:
            enc = tokenizer(w, add_special_tokens=False)["input_ids"]
            if len(enc) == 1 and enc[0] not in ids:
                ids.append(int(enc[0]))
        return ids

    yes, no = single(YES_SPELLINGS), single(NO_SPELLINGS)
    if not yes or not no or set(yes) & set(no):
        raise ConfigError("the llm judge's tokenizer has no single-token 'yes' and 'no'")
    return yes, no


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _closes_program(response: str, stop: Sequence[str]) -> bool:
    """Whether a code response closed its program before the cut: a stop marker ([DONE]) or a
    code fence that closes an opened one."""
    if any(s and s in response for s in stop):
        return True
    return response.count("```") >= 2
