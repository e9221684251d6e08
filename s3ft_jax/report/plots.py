"""The report's plots (matplotlib, written next to report.md)."""

from __future__ import annotations

from pathlib import Path

from s3ft_jax import distributed
from s3ft_jax.evaluation.intervals import Z95, wilson_interval
from s3ft_jax.report.cells import _label, _of, _sections
from s3ft_jax.report.numbers import _average, _drop


def plots(data: dict, workdir: Path) -> list[str]:
    import logging

    import matplotlib

    # Its first use on a machine logs "Matplotlib is building the font cache": no news to a user.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name):
        if distributed.is_writer():  # the others only need the names
            fig.tight_layout()
            tmp = workdir / f".{name}.tmp.png"
            fig.savefig(tmp)
            tmp.replace(workdir / name)
        plt.close(fig)
        made.append(name)

    if data["indomain"]:
        methods = [m for m in data["methods"] if m in data["indomain"]]
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        accs = [100 * data["indomain"][m]["accuracy"] for m in methods]
        bounds = [wilson_interval(data["indomain"][m]["accuracy"] * data["indomain"][m]["examples"], data["indomain"][m]["examples"]) for m in methods]
        yerr = [[a - 100 * lo for a, (lo, _) in zip(accs, bounds)], [100 * hi - a for a, (_, hi) in zip(accs, bounds)]]
        ax.bar(methods, accs, color="tab:blue", yerr=yerr, capsize=3)
        ax.set_ylabel("in-domain accuracy (%, 95% interval)")
        save(fig, "accuracy.png")
    base = data["generalization"].get("base")
    others = [m for m in data["methods"] if m != "base" and m in data["generalization"]]
    if base and others and (sections := [s for s in _sections(data["sets"]) if s[1]]):
        # Per set: its entries, then its average (marked partial as in the tables); the
        # extended set's not-averaged metrics stay in the tables.
        columns = [(which, [*entries, None], total) for which, entries, total, _ in sections]
        labels = [_label(e) if e else _of(f"{which} average", len(cols) - 1, total) for which, cols, total in columns for e in cols]
        fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(labels)), 3.4), dpi=120)
        width = 0.8 / len(others)
        for i, m in enumerate(others):
            drops = []
            for which, cols, total in columns:
                entries = [_drop(data, m, e) for e in cols[:-1]]
                drops += [*entries, _average([d for d in entries if d is not None], total)]
            half = [Z95 * d["stderr"] if d and d["stderr"] is not None else 0 for d in drops]
            ax.bar([x + i * width for x in range(len(labels))], [d["diff"] if d else 0 for d in drops], width, label=m, yerr=half, capsize=2)
        at = 0
        for which, cols, total in columns[:-1]:  # a line between the sets
            at += len(cols)
            ax.axvline(at - 0.5 + width * (len(others) - 1) / 2, color="grey", lw=0.6, ls="--")
        ax.set_xticks([x + width * (len(others) - 1) / 2 for x in range(len(labels))], labels, rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        if data["sets"].missing:
            ax.set_title(f"headline average partial: {', '.join(map(_label, data['sets'].missing))} not evaluated", fontsize=8)
        ax.set_ylabel("drop from base (points, 95%)")
        ax.legend(frameon=False, fontsize=8)
        save(fig, "generalization_drop.png")
    drifted = [m for m in data["methods"] if m in data["drift"]]
    if drifted:
        kinds = [("responses", "base's test responses"), ("benchmarks_all", "benchmark texts")]
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        for i, (key, label) in enumerate(kinds):
            cells = [data["drift"][m].get(key) or {} for m in drifted]
            ax.bar([x + 0.4 * i for x in range(len(drifted))], [c.get("kl") or 0 for c in cells], 0.4, label=label,
                   yerr=[Z95 * (c.get("stderr") or 0) for c in cells], capsize=3)
        ax.set_xticks([x + 0.2 for x in range(len(drifted))], drifted)
        ax.set_ylabel("KL(base || method) per token (nats)")
        ax.legend(frameon=False, fontsize=8)
        save(fig, "drift.png")
    if data["loss"]:
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
        for m, points in data["loss"].items():
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], label=m)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend(frameon=False, fontsize=8)
        save(fig, "loss.png")
    if (workdir / "logprobs.png").is_file():
        made.append("logprobs.png")
    return made
