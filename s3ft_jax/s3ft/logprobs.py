"""How familiar each kind of target is to the base model: log p(target | prompt).

The paper's Figure 2: under the base model, the model's own correct answers are far more
likely than paraphrased gold, and paraphrased gold more likely than the gold itself. For a
built D' this scores, per example, the gold target (always), the paraphrase (where one passed
the judge) and the own prediction (where it was correct), each as the assistant turn after
the training prompt, EOS included: exactly the tokens fine-tuning trains on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from s3ft_jax import distributed
from s3ft_jax.errors import S3FTError
from s3ft_jax.io import read_jsonl
from s3ft_jax.s3ft.stages import atomic_write_text
from s3ft_jax.sampling.chat import render_chat

SOURCES = ("own", "paraphrase", "gold")


def _targets(row: dict) -> dict[str, str]:
    out = {"gold": row["gold"]}
    if row.get("paraphrase_correct"):
        out["paraphrase"] = row["target"] if row["source"] == "paraphrase" else row["paraphrase"]
    if row.get("prediction_correct"):
        out["own"] = row["target"] if row["source"] == "own" else row["prediction"]
    return out


def target_logprobs(model, tokenizer, dataset: Path, out_dir: Path, *, batch_size: int = 8) -> dict:
    from s3ft_jax.evaluation.loglikelihood import score_tokens

    if not Path(dataset).is_file():
        raise S3FTError(f"no built dataset at {dataset}: run `s3ft build` first (or set --config.logprobs.dataset)")
    rows = read_jsonl(dataset)
    missing = [k for k in ("id", "prompt", "target", "source", "gold") if rows and k not in rows[0]]
    if not rows or missing:
        raise S3FTError(f"{dataset} is not a built D' (missing {', '.join(missing) or 'rows'})")
    eos = tokenizer.eos_token_id
    requests, keys = [], []
    for row in rows:
        context = tokenizer(render_chat(tokenizer, [{"role": "user", "content": row["prompt"]}]), add_special_tokens=False)["input_ids"]
        for source, target in _targets(row).items():
            continuation = tokenizer(target, add_special_tokens=False)["input_ids"] + [eos]
            requests.append((context, continuation))
            keys.append((row["id"], source, len(continuation)))
    scores = score_tokens(model, requests, batch_size=batch_size, pad_id=tokenizer.pad_token_id or 0, progress="logprobs")
    per_example: dict[str, dict] = {}
    for (rid, source, n), (logp, _) in zip(keys, scores):
        per_example.setdefault(rid, {})[source] = {"logprob": logp, "tokens": n}
    summary = {"dataset": str(dataset), "examples": len(rows), "sources": {}, "targets": {}}
    for source in SOURCES:
        summary["sources"][source] = _describe([v[source] for v in per_example.values() if source in v])
        # D' itself: the targets of the rows that train on this source.
        summary["targets"][source] = _describe([per_example[r["id"]][source] for r in rows if r["source"] == source])
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "logprobs.json", json.dumps({**summary, "per_example": per_example}, indent=1) + "\n")
    if distributed.is_writer():
        plot_histogram(per_example, out_dir / "logprobs.png")
    distributed.sync("wrote logprobs.png")
    return summary


def _describe(scores: list[dict]) -> dict:
    """count, mean/median log p, mean per-token log p and mean length (tokens, EOS included).
    Per token tells closeness apart from shortness: a bare "The answer is 42." has a high
    log p because it is short, not because each token is likely."""
    values = np.array([s["logprob"] for s in scores])
    tokens = np.array([s["tokens"] for s in scores])
    return {
        "count": int(values.size),
        "mean": float(values.mean()) if values.size else None,
        "median": float(np.median(values)) if values.size else None,
        "mean_per_token": float((values / tokens).mean()) if values.size else None,
        "mean_tokens": float(tokens.mean()) if values.size else None,
    }


def plot_histogram(per_example: dict, path: Path) -> None:
    import logging

    import matplotlib

    # Its first use on a machine logs "Matplotlib is building the font cache": no news to a user.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    values = {s: [v[s]["logprob"] for v in per_example.values() if s in v] for s in SOURCES}
    everything = [x for vs in values.values() for x in vs]
    bins = np.linspace(min(everything), max(everything), 30) if everything else 10
    for source, color in zip(SOURCES, ("tab:green", "tab:orange", "tab:blue")):
        if values[source]:
            ax.hist(values[source], bins=bins, alpha=0.55, color=color,
                    label=f"{source} (n={len(values[source])}, mean {np.mean(values[source]):.1f})")
    ax.set_xlabel("log p(target | prompt) under the base model")
    ax.set_ylabel("examples")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
