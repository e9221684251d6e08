"""The judge audit's table (judges/audit.py writes judge_audit.json)."""

from __future__ import annotations


def judge_audit_tables(audit: dict | None) -> dict[str, list[list[str]]]:
    """The judge audit (judges/audit.py, judge_audit.json): golds judged against themselves,
    perturbed golds (every accept is a false accept), the build's own verdicts, and how each
    group's verdicts were reached; for the LLM judge, its agreement with EM / containment."""
    if not audit:
        return {}

    def pct(rate):
        return "-" if rate is None else f"{100 * rate:.2f}%"

    def routes(how: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in how.items()) or "-"

    gold, bad = audit["gold"], audit["perturbed"]
    rows = [["verdicts on", "n", "accepted", "accepted (%)", "how the verdicts were reached"],
            ["golds (must be accepted)", str(gold["n"]), str(gold["accepted"]), pct(gold["rate"]), routes(gold["how"])],
            [f"perturbed golds: {bad['kind']} (every accept is false)", str(bad["n"]), str(bad["false_accepts"]),
             pct(bad["rate"]), routes(bad["how"])]]
    for stage, b in (audit.get("build") or {}).items():
        rows.append([f"this build's {stage}", str(b["n"]), str(b["accepted"]), pct(b["rate"]), routes(b["how"])])
    if agreement := audit.get("llm_agreement"):
        rows.append(["LLM's verdict agrees with EM / containment", str(agreement["n"]), str(agreement["agree"]),
                     pct(agreement["rate"]), f"(agreements) {agreement['disagreements']} disagreements"
                     + (f" in {agreement['file']}" if agreement.get("file") else "")])
    mode = f", judge.mode={audit['mode']}" if audit["judge"] == "llm" and audit.get("mode") else ""
    where = f", {audit['split']} split" if audit.get("split") else ""
    return {f"Judge audit: {audit['task']} ({audit['judge']} judge{mode}{where})": rows}
