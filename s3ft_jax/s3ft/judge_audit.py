"""The build's judge audit (judges/audit.py) as a resumable stage of `<workdir>/build`.

    judge_audit.jsonl                 each audited example's gold and perturbed-gold verdicts
    judge_audit.meta.json             the fingerprint: the audited examples, the judge's settings
                                      (rules version included), judge.audit_limit, the audit version
    judge_audit.json                  the summary (the report reads it)
    judge_audit.disagreements.jsonl   LLM judge only: its disagreements with EM / containment

Judging is the only costly part (the sandbox, the LLM), so only the verdicts are a stage:
skipped when its fingerprint is unchanged, resumed batch by batch after a crash. The summary is
rewritten by every build from those verdicts and the build's own judged rows (how this build's
predictions and paraphrases were judged), which cost nothing to read.
"""

from __future__ import annotations

import json
import time

from s3ft_jax.io import json_digest
from s3ft_jax.judges.audit import AUDIT_VERSION, audit_rows, perturb, summarize
from s3ft_jax.s3ft.stages import Stage, atomic_write_jsonl, atomic_write_text, resumable_map
from s3ft_jax.sampling.queue import read_done

NAME = "judge_audit"
# The build's stages whose verdicts the summary counts, by the name the summary gives them.
JUDGED = {"predictions": "judge_predict", "paraphrases": "judge_paraphrase", "sdft paraphrases": "judge_paraphrase_sdft"}


def run_judge_audit(builder) -> dict:
    """Audit `builder`'s judge on its examples (the first judge.audit_limit); the summary."""
    settings = builder.settings.judge
    examples = builder.examples()
    audited = examples[: settings.audit_limit] if settings.audit_limit else examples
    stage = Stage(builder.dir, NAME, {"examples": json_digest([e.to_json() for e in audited]),
                                      "judge": builder.judge_inputs(), "audit": AUDIT_VERSION})
    start = time.perf_counter()
    status = stage.open()
    before = len(read_done(stage.path("jsonl")))
    perturbed = perturb(builder.task, audited)

    def work(indices: list[int]) -> list[dict]:
        return audit_rows(builder.task, [audited[n] for n in indices], [perturbed[n] for n in indices], builder.judge())

    batch = 64 if builder.task.judge in ("code", "llm") else 512
    rows = resumable_map(stage.path("jsonl"), [e.id for e in audited], work, batch_size=batch, desc=NAME,
                         progress=builder.progress)
    ran = len(rows) - before
    seconds = time.perf_counter() - start if ran else _previous_seconds(stage)
    stage.complete(rows=len(rows), seconds=round(seconds, 2))

    # Only the judged stages this build opened: an older file in the directory may come from
    # other settings (an sft build opens neither).
    opened = {s.name for s in builder.stages}
    build_rows = {key: list(read_done(builder.dir / f"{name}.jsonl").values())
                  for key, name in JUDGED.items() if name in opened}
    summary, disagreements = summarize(builder.task, audited, rows, build_rows=build_rows, build_examples=examples,
                                       mode=settings.mode)
    summary |= {"split": builder.split, "seconds": round(seconds, 2)}
    if builder.task.judge == "llm":
        atomic_write_jsonl(stage.path("disagreements.jsonl"), disagreements)
        summary["llm_agreement"]["file"] = stage.path("disagreements.jsonl").name
    atomic_write_text(stage.path("json"), json.dumps(summary, indent=1) + "\n")
    builder._log(NAME, "skipped" if status == "done" and not ran else ("resumed" if before else "ran"), len(audited), start)
    return summary


def _previous_seconds(stage: Stage) -> float:
    """The judging time of the run that made the verdicts (a skipped stage took none)."""
    try:
        return float(json.loads(stage.meta_path.read_text())["summary"]["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
