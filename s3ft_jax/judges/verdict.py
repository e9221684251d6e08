"""One entry point for every judge: `Judge(task, ...)(examples, responses) -> [Verdict]`."""

from __future__ import annotations

import dataclasses
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
    model unless `judge.model` names another) and generates through the sampler."""

    def __init__(self, task: Task, settings: JudgeSettings = JudgeSettings(), *, model=None, tokenizer=None,
                 llm_batch_size: int = 32):
        self.task, self.settings, self.mode = task, settings, settings.mode
        self.model, self.tokenizer = model, tokenizer
        self.llm_batch_size = llm_batch_size
        self._engine = None  # the LLM judge's SamplerEngine, built on its first question and kept
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
            from s3ft_jax.judges.math import extract_answer, is_correct

            return [Verdict(is_correct(r, str(e.reference)), f"answer={extract_answer(r)} gold={e.reference}") for e, r in zip(examples, responses)]
        if kind == "exact":
            return [Verdict(text.exact_match(r, e.reference), "normalised exact match") for e, r in zip(examples, responses)]
        if kind == "regex":
            return [self._regex(e, r) for e, r in zip(examples, responses)]
        if kind == "code":
            return self._code(examples, responses)
        if kind == "llm":
            return self._llm(examples, responses)
        raise ConfigError(f"unknown judge {kind!r}")

    def _regex(self, example: Example, response: str) -> Verdict:
        pattern = re.compile(self.task.options["regex"])
        matches = list(pattern.finditer(response))
        if not matches:
            return Verdict(False, "pattern not found")
        last = matches[-1]
        answer = last.group(1) if pattern.groups else last.group(0)
        return Verdict(text.exact_match(answer, example.reference), f"answer={answer!r}")

    def _code(self, examples, responses) -> list[Verdict]:
        from s3ft_jax.judges.code import CodeJob, run_many

        extract = self.task.extract_program or (lambda r: r)
        jobs = [CodeJob(extract(r), list(e.reference["tests"]), e.reference.get("setup", "")) for e, r in zip(examples, responses)]
        results = run_many(jobs, workers=self.settings.code_workers or None, timeout_s=self.settings.code_timeout_s)
        return [Verdict(res.passed, f"{res.status}: {res.detail}"[:300]) for res in results]

    def _llm(self, examples, responses) -> list[Verdict]:
        heuristic = [
            (text.exact_match(r, e.reference), text.contains_answer(r, e.reference), text.f1(r, e.reference))
            for e, r in zip(examples, responses)
        ]
        llm: list[bool | None] = [None] * len(examples)
        raw: list[str] = [""] * len(examples)
        if self.mode != "heuristic":
            llm, raw = self._ask_model(examples, responses)
        verdicts = []
        for (em, contains, f1), said, words in zip(heuristic, llm, raw):
            by_heuristic = em or contains
            correct = {"llm": bool(said), "heuristic": by_heuristic, "llm_or_heuristic": bool(said) or by_heuristic}[self.mode]
            verdicts.append(Verdict(correct, f"llm={words.strip()[:20]!r} em={int(em)} contains={int(contains)} f1={f1:.2f}"))
        return verdicts

    def _ask_model(self, examples, responses) -> tuple[list[bool], list[str]]:
        from s3ft_jax.sampling import SamplerEngine, SamplingOptions, render_chat

        if self.model is None or self.tokenizer is None:
            raise ConfigError("the llm judge needs a model (judge.mode=heuristic judges without one)")
        if self._engine is None:  # the weights' sampling copy, made once for every batch judged
            self._engine = SamplerEngine(self.model)
        prompts = [
            render_chat(self.tokenizer, [{"role": "user", "content": self.task.render(
                self.task.prompts.judge, e, golds=" | ".join(map(str, e.reference)), response=r.strip())}])
            for e, r in zip(examples, responses)
        ]
        options = SamplingOptions(max_new_tokens=self.settings.max_new_tokens, batch_size=self.llm_batch_size)
        out = self._engine.generate(self.tokenizer, prompts, options)
        said = [parse_yes_no(g.text) for g in out]
        return said, [g.text for g in out]


def parse_yes_no(answer: str) -> bool:
    """True only for an answer whose first word is yes (anything unclear counts as no)."""
    words = re.findall(r"[a-z]+", answer.lower())
    return bool(words) and words[0] in ("yes", "correct", "true")
