"""The judge audit: does the judge accept the golds, and does it reject answers known to be wrong?

Every verdict of Algorithm 1 trusts the judge, so before trusting its numbers we measure it on
cases whose right verdict is known by construction (no model needed for the numeric and code
judges):

* gold self-acceptance: each example's gold target judged as a response (finish reason "stop"
  for tasks with a stop string, else "eos"); every gold must be accepted, and every rejected
  id is listed;
* perturbed golds, which must all be rejected (the false accepts are listed):
  - numeric: the gold with its final stated value changed, N -> N + 1 (the last number in the
    gold equal to the reference, i.e. the one after "The answer is"), so the reasoning above
    it still holds N: a judge that finds N anywhere in the text accepts it;
  - code: the gold program against the task's tests with ONE assert's expected value changed
    (int +1, str + "x", bool flipped, a sequence one element longer; an assert with no
    literal expected value is negated). We change the tests, not the program: the gold is
    known to pass the real asserts (its self-acceptance checks that), so with one expected
    value changed that assert must fail and any "passed" is the judge's error. Changing what
    the program returns cannot promise that: a wrapped function can still pass the tested
    inputs (values compared with `in`, `len`, `set`, a branch the tests never reach,
    recursion through the wrapper), so an accept would not prove a false accept. The changed
    assert rotates (example k changes assert k mod n), so a judge that runs only the first or
    only the last assert is caught;
  - exact, regex and llm (NQ): the gold of the next example whose gold is not a right answer
    here by the heuristics (no exact match or containment either way), so it is wrong;
* how each verdict was reached: counts of `Verdict.how` ("" counts as "unknown"), over the
  audit's verdicts and, given the build's judged rows, over its predictions and paraphrases;
* for the LLM judge, its agreement with the heuristics (exact match or containment, as in
  judges/text.py) on every response it judged here; each disagreement (question, response,
  golds, the LLM's verdict, margin) is kept for reading. The LLM's own verdict is
  `margin > 0` where the judge gives a margin (log p(yes) - log p(no)), else the verdict:
  with judge.mode=llm_or_heuristic the heuristics accept every gold, so run the audit with
  judge.mode=llm to audit the LLM alone.

Deterministic: no sampling, fixed pairings; `limit` audits the first N examples. The judge is
anything with the `Judge` call signature, so tests can hand in a deliberately broken one.
"""

from __future__ import annotations

import ast
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from s3ft_jax.judges import text
from s3ft_jax.judges.verdict import Verdict
from s3ft_jax.tasks.base import Example, Task
from s3ft_jax.tasks.numbers import NUMBER_RE, format_number, match_value, parse_number

__all__ = ["AUDIT_VERSION", "Perturbation", "audit", "audit_rows", "change_expected", "perturb", "route_counts",
           "summarize"]

# Bumped when a perturbation or the rows change (hashed into the build's judge_audit stage).
AUDIT_VERSION = 1

JudgeFn = Callable[[Sequence[Example], Sequence[str], Sequence[str]], list[Verdict]]


@dataclasses.dataclass(frozen=True)
class Perturbation:
    example: Example  # what the judge compares with (code: the tests with one assert changed)
    response: str  # what the judge reads
    what: str  # the change, for the reader


def finish_reason(task: Task) -> str:
    """How a generation of this task ends when it is complete: cut at the stop string, or EOS."""
    return "stop" if task.stop else "eos"


# -- perturbations ----------------------------------------------------------------------------


def perturb(task: Task, examples: Sequence[Example]) -> list[Perturbation | None]:
    """One wrong answer per example (None where none can be made: see `skipped` in the summary)."""
    if task.judge == "numeric":
        return [_change_final_number(e) for e in examples]
    if task.judge == "code":
        return [_change_one_test(e, n) for n, e in enumerate(examples)]
    return _other_golds(examples)


def _change_final_number(example: Example) -> Perturbation | None:
    matches = [m for m in NUMBER_RE.finditer(example.gold) if match_value(m) is not None]
    if not matches:
        return None
    target = parse_number(str(example.reference))
    same = [m for m in matches if match_value(m) == target]
    m = (same or matches)[-1]  # the final stated value: the last number equal to the reference
    start = m.start("sign") if m.group("sign") else m.start("body")
    new = format_number(match_value(m) + 1)
    old = example.gold[start : m.end("body")]
    return Perturbation(example, example.gold[:start] + new + example.gold[m.end("body") :], f"final number {old} -> {new}")


def _change_one_test(example: Example, n: int) -> Perturbation | None:
    tests = list(example.reference["tests"])
    for k in [(n + i) % len(tests) for i in range(len(tests))] if tests else []:
        changed = change_expected(tests[k])
        if changed is not None:
            reference = {**example.reference, "tests": tests[:k] + [changed] + tests[k + 1 :]}
            return Perturbation(dataclasses.replace(example, reference=reference), example.gold,
                                f"assert {k + 1} of {len(tests)}: {tests[k].strip()} -> {changed}")
    return None


def _other_value(value):
    """A value of the same kind that is != `value`, or None (then the assert is negated)."""
    if isinstance(value, bool):
        other = not value
    elif isinstance(value, (int, float, complex)):
        other = value + 1
    elif isinstance(value, (str, bytes)):
        other = value + ("x" if isinstance(value, str) else b"x")
    elif isinstance(value, (list, tuple)):
        other = value + type(value)(value[-1:] or [0])
    elif isinstance(value, (set, frozenset)) and value and all(type(v) is int for v in value):
        other = value | {max(value) + 1}
    elif isinstance(value, dict) and value:  # the last key's value changed
        last = next(reversed(value))
        changed = _other_value(value[last])
        other = None if changed is None else {**value, last: changed}
    else:
        return None
    return other if other is not None and other != value else None  # 1e20 + 1 == 1e20


def change_expected(test: str) -> str | None:
    """`test` (an assert) with its expected value changed, so that a program passing `test`
    fails the result; None when `test` holds no assert (or does not parse)."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    asserts = [node for node in tree.body if isinstance(node, ast.Assert)]
    if not asserts:
        return None
    node = asserts[-1]
    cond = node.test
    if isinstance(cond, ast.Compare) and len(cond.ops) == 1 and isinstance(cond.ops[0], (ast.Eq, ast.Is)):
        for side in ("right", "left"):
            expr = cond.comparators[0] if side == "right" else cond.left
            try:
                value = ast.literal_eval(expr)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            if isinstance(cond.ops[0], ast.Is) and not isinstance(value, bool):
                continue  # `is` with a non-bool literal: negated below
            other = _other_value(value)
            if other is not None:
                new = ast.parse(repr(other), mode="eval").body
                if side == "right":
                    cond.comparators[0] = new
                else:
                    cond.left = new
                return ast.unparse(ast.fix_missing_locations(tree))
    node.test = ast.UnaryOp(ast.Not(), cond)  # no literal to change: expect the opposite
    return ast.unparse(ast.fix_missing_locations(tree))


def _answers(example: Example) -> list[str]:
    ref = example.reference
    return [str(a) for a in ref] if isinstance(ref, (list, tuple)) else [str(ref)]


def _right_for(answer: str, example: Example) -> bool:
    golds = _answers(example)
    return (text.exact_match(answer, golds) or text.contains_answer(answer, golds)
            or any(text.contains_answer(g, [answer]) for g in golds))


def _other_golds(examples: Sequence[Example]) -> list[Perturbation | None]:
    out: list[Perturbation | None] = []
    for i, e in enumerate(examples):
        for step in range(1, len(examples)):
            other = examples[(i + step) % len(examples)]
            if other.gold.strip() and not _right_for(other.gold, e):
                out.append(Perturbation(e, other.gold, f"the gold of {other.id}: {other.gold[:80]!r}"))
                break
        else:
            out.append(None)
    return out


# -- judging ----------------------------------------------------------------------------------


def audit_rows(task: Task, examples: Sequence[Example], perturbed: Sequence[Perturbation | None],
               judge: JudgeFn) -> list[dict]:
    """One row per example: {id, gold: verdict, perturbed: verdict or None, perturbation}.
    Golds and perturbed golds go to the judge in one call (the code judge runs them in parallel)."""
    made = [p for p in perturbed if p is not None]
    to_judge = [*examples, *(p.example for p in made)]
    responses = [*(e.gold for e in examples), *(p.response for p in made)]
    verdicts = judge(to_judge, responses, [finish_reason(task)] * len(to_judge)) if to_judge else []
    gold, rest = verdicts[: len(examples)], iter(verdicts[len(examples) :])
    return [{"id": e.id, "gold": g.to_json(), "perturbed": None if p is None else next(rest).to_json(),
             "perturbation": None if p is None else p.what}
            for e, g, p in zip(examples, gold, perturbed)]


def route_counts(verdicts) -> dict[str, int]:
    """How the verdicts (Verdict.to_json() dicts or build rows) were reached, most common first."""
    counts = Counter((v.get("how") or "unknown") for v in verdicts)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def _heuristic(response: str, example: Example) -> dict:
    golds = _answers(example)
    em, contains = text.exact_match(response, golds), text.contains_answer(response, golds)
    return {"heuristic": bool(em or contains), "em": bool(em), "contains": bool(contains),
            "f1": round(text.f1(response, golds), 4)}


def _llm_says(verdict: dict) -> bool:
    margin = verdict.get("margin")
    return margin > 0 if margin is not None else bool(verdict["correct"])


def _agreement(judged: list[tuple[str, Example, str, dict]]) -> tuple[dict, list[dict]]:
    """(source, example, response, verdict) -> agreement per source, and the disagreements."""
    per: dict[str, list[int]] = {}
    disagreements = []
    for source, example, response, verdict in judged:
        h = _heuristic(response, example)
        llm = _llm_says(verdict)
        cell = per.setdefault(source, [0, 0])
        cell[0] += 1
        cell[1] += llm == h["heuristic"]
        if llm != h["heuristic"]:
            disagreements.append({
                "id": example.id, "source": source,
                "question": example.fields.get("question", next(iter(example.fields.values()), "")),
                "response": response, "golds": _answers(example), "llm": llm, "correct": bool(verdict["correct"]),
                "margin": verdict.get("margin"), "how": verdict.get("how") or "unknown", **h,
                "detail": verdict.get("detail", "")})
    n, agree = sum(c[0] for c in per.values()), sum(c[1] for c in per.values())
    summary = {"n": n, "agree": agree, "rate": _rate(agree, n), "disagreements": len(disagreements),
               "by_source": {s: {"n": c[0], "agree": c[1], "rate": _rate(c[1], c[0])} for s, c in per.items()}}
    return summary, disagreements


def summarize(task: Task, examples: Sequence[Example], rows: Sequence[dict], *,
              build_rows: Mapping[str, Sequence[dict]] | None = None, build_examples: Sequence[Example] | None = None,
              mode: str = "") -> tuple[dict, list[dict]]:
    """The audit's summary (judge_audit.json) and, for the LLM judge, its disagreements with the
    heuristics. `rows` come from `audit_rows` for `examples`, in order; `build_rows` maps a name
    ("predictions", "paraphrases") to the build's judged rows (id, text, correct, how, leak), of
    which those of `build_examples` count (default: `examples`; the build's own examples when
    the audit read only the first of them)."""
    by_id = {e.id: e for e in examples}
    built = {e.id: e for e in build_examples} if build_examples is not None else by_id
    rows = [r for r in rows if r["id"] in by_id]
    gold = [r["gold"] for r in rows]
    rejected = [{"id": r["id"], "how": r["gold"].get("how") or "unknown", "detail": r["gold"].get("detail", "")}
                for r in rows if not r["gold"]["correct"]]
    made = [r for r in rows if r["perturbed"] is not None]
    false = [{"id": r["id"], "how": r["perturbed"].get("how") or "unknown", "perturbation": r["perturbation"],
              "detail": r["perturbed"].get("detail", "")} for r in made if r["perturbed"]["correct"]]
    kind = {"numeric": "final number N -> N+1", "code": "one assert's expected value changed"}.get(
        task.judge, "another example's gold answer")
    summary = {
        "audit_version": AUDIT_VERSION, "task": task.name, "judge": task.judge, "mode": mode, "examples": len(rows),
        "gold": {"n": len(rows), "accepted": len(rows) - len(rejected), "rate": _rate(len(rows) - len(rejected), len(rows)),
                 "rejected": rejected, "how": route_counts(gold)},
        "perturbed": {"kind": kind, "n": len(made), "false_accepts": len(false), "rate": _rate(len(false), len(made)),
                      "rejection_rate": _rate(len(made) - len(false), len(made)), "accepted": false,
                      "skipped": [r["id"] for r in rows if r["perturbed"] is None],
                      "how": route_counts(r["perturbed"] for r in made)},
        "how": route_counts([*gold, *(r["perturbed"] for r in made)]),
    }
    build = {}
    for stage, stage_rows in (build_rows or {}).items():
        mine = [r for r in stage_rows if r["id"] in built]
        build[stage] = {"n": len(mine), "accepted": sum(bool(r.get("correct")) for r in mine),
                        "how": route_counts(mine)}
        build[stage]["rate"] = _rate(build[stage]["accepted"], len(mine))
    if build:
        summary["build"] = build
    disagreements: list[dict] = []
    if task.judge == "llm":
        perturbed = {e.id: p for e, p in zip(examples, perturb(task, examples))}
        judged = [("gold", by_id[r["id"]], by_id[r["id"]].gold, r["gold"]) for r in rows]
        judged += [("perturbed", by_id[r["id"]], perturbed[r["id"]].response, r["perturbed"]) for r in made]
        for stage, stage_rows in (build_rows or {}).items():
            judged += [(stage, built[r["id"]], r["text"], r) for r in stage_rows
                       if r["id"] in built and (r.get("how") or "") != "leak" and not r.get("leak")
                       and r.get("kept_solution") is not False]
        summary["llm_agreement"], disagreements = _agreement(judged)
    return summary, disagreements


def audit(task: Task, examples: Sequence[Example], judge: JudgeFn, *, limit: int = 0,
          build_rows: Mapping[str, Sequence[dict]] | None = None, mode: str = "") -> tuple[dict, list[dict], list[dict]]:
    """Judge the first `limit` examples' golds and perturbed golds (0: all): (summary, rows,
    disagreements), the summary with the judging time in "seconds". `build_rows` count over
    every one of `examples`."""
    audited = list(examples[:limit] if limit else examples)
    start = time.perf_counter()
    rows = audit_rows(task, audited, perturb(task, audited), judge)
    seconds = time.perf_counter() - start
    summary, disagreements = summarize(task, audited, rows, build_rows=build_rows, build_examples=examples, mode=mode)
    summary["seconds"] = round(seconds, 2)
    return summary, rows, disagreements

