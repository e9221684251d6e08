"""How the report writes numbers and titles: value ± stderr, [95% intervals], partial averages,
what each average covers, markdown and text tables."""

from __future__ import annotations


from s3ft_jax.evaluation.headline import Sets, split_entry


GENERALIZATION = "Generalization (%) ± stderr"


DROP = "Drop from base"


INTERVAL = "(points [paired 95% interval]; positive = worse than base)"


def _pm(value: float | None, stderr: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" + ("" if stderr is None else f" ± {stderr:.{digits}f}")


def _sci(value: float | None, stderr: float | None) -> str:
    """Three significant digits: drift after a few LoRA steps can be 1e-5 nats per token."""
    if value is None:
        return "-"
    return f"{value:.3g}" + ("" if stderr is None else f" ± {stderr:.2g}")


def _interval(d: dict | None, value: str = "+.1f", bound: str = "+.1f") -> str:
    """A difference and its 95% interval; drift uses significant digits (value "+.3g")."""
    if d is None:
        return "-"
    if d["low"] is None:
        return format(d["diff"], value)
    return f"{format(d['diff'], value)} [{format(d['low'], bound)}, {format(d['high'], bound)}]"


def _of(text: str, k: int, total: int) -> str:
    """An average's cell, marked partial when it covers fewer than its set's entries."""
    return text if text == "-" or k >= total else f"{text} (partial: {k} of {total})"


def _average_cell(avg: dict | None, value: str = "+.1f") -> str:
    return "-" if avg is None else _of(_interval(avg, value), avg["k"], avg["total"])


def _label(entry: str) -> str:
    name, metric = split_entry(entry)
    return f"{name} ({metric})"


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def _sections(sets: Sets) -> list[tuple[str, tuple[str, ...], int, tuple[str, ...]]]:
    """(which, averaged entries, the set's size, entries shown but not averaged) per table."""
    out = []
    if sets.headline:
        out.append(("headline", sets.headline, len(sets.headline) + len(sets.missing), ()))
    if sets.extended or sets.shown:
        out.append(("extended", sets.extended, len(sets.extended), sets.shown))
    return out


def _cover(sets: Sets, which: str) -> str:
    """What a set's average covers, for the tables' titles."""
    if which == "extended":
        return "extended: average over " + (", ".join(map(_label, sets.extended)) or "no other benchmark")
    text = "headline: average over " + (", ".join(map(_label, sets.headline)) or "none")
    text += " (the paper's set)" if sets.paper else " (eval.headline)"
    if sets.missing:
        text += f", partial: {', '.join(map(_label, sets.missing))} not evaluated"
    return text


def _titles(sets: Sets, which: str) -> tuple[str, str]:
    cover = _cover(sets, which)
    return f"{GENERALIZATION}, {cover}", f"{DROP}, {cover} {INTERVAL}"


def comparison_title(sets: Sets) -> str:
    covers = "; ".join([*([] if sets.headline else ["headline: none of its benchmarks evaluated"]),
                        *(_cover(sets, w) for w, *_ in _sections(sets))])
    return f"Against sft (paired differences [95% interval]; {covers + '; ' if covers else ''}drift in nats per token)"


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
