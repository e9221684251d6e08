"""A resumable generation queue: JSONL of prompts in, JSONL of generations out.

Each finished batch is appended to the output file and fsynced, so a killed run loses at most
the batch in flight. A rerun reads what is there (dropping a half-written last line), skips
the ids already done and generates the rest. When every prompt is done, the file is rewritten
in input order (via a temporary file and a rename), so a resumed run ends with exactly the
file an uninterrupted run writes.

Input rows: {"id": ..., "prompt": "rendered text"} or {"id": ..., "messages": [chat turns]}
(rendered with the tokenizer's chat template) or {"id": ..., "prompt_ids": [token ids]}.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import jax

from s3ft_jax import distributed, io
from s3ft_jax.errors import S3FTError
from s3ft_jax.progress import progress_bar
from s3ft_jax.sampling.chat import render_chat
from s3ft_jax.sampling.engine import Generation, SamplerEngine
from s3ft_jax.sampling.options import SamplingOptions
from s3ft_jax.sampling.prompts import prompt_kind, prompt_rows


@dataclasses.dataclass
class QueueReport:
    total: int
    already_done: int
    generated: int
    tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def read_prompts(path: str | os.PathLike, tokenizer) -> tuple[list[str], list]:
    """(ids, prompts) from an input JSONL, checked (`prompts.prompt_rows`): every row has a
    unique id and one prompt."""
    ids, prompts = [], []
    for _, row in prompt_rows(path):
        kind = prompt_kind(row)
        ids.append(row["id"])
        prompts.append(render_chat(tokenizer, row["messages"]) if kind == "messages" else row[kind])
    return ids, prompts


def id_seed(prompt_id) -> int:
    """A stable 31-bit number for a prompt id (the per-prompt sampling key)."""
    digest = hashlib.sha256(json.dumps(prompt_id).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def read_done(path: Path) -> dict[str, dict]:
    """Results already in the output file, by id; a torn last line (a crash mid-write) is cut."""
    if not path.is_file():
        return {}
    done = {}
    try:
        for lineno, row in io.iter_jsonl(path, repair=True):
            if "id" not in row:
                raise S3FTError(f"{path}:{lineno}: not a result row (no 'id')")
            done[json.dumps(row["id"])] = row
    except S3FTError as e:
        raise S3FTError(f"{e}; move the file away to start over") from None
    return done


def _row(prompt_id, g: Generation) -> dict:
    row = {"id": prompt_id, "text": g.text, "finish_reason": g.finish_reason, "token_ids": g.token_ids}
    if g.logprobs is not None:
        row["logprobs"] = g.logprobs
    return row


def run_queue(
    model,
    tokenizer,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: SamplingOptions,
    *,
    progress: bool = True,
    after_batch: Callable[[int], None] | None = None,
    keep_extra: bool = False,
) -> QueueReport:
    """Generate for every prompt of `input_path` not yet in `output_path`; see the module doc.

    The batch keeps `options.batch_size` rows however few prompts are left (`fixed_batch`),
    so a resumed run decodes in the shapes, and so to the bits, of an uninterrupted one.

    With `keep_extra`, results in the output for ids not in the input are kept (after the
    input's rows) instead of being an error: stages that grow and shrink their id set share
    one file of generations.
    """
    ids, prompts = read_prompts(input_path, tokenizer)
    output = Path(output_path)
    done = read_done(output)
    unknown = set(done) - {json.dumps(i) for i in ids}
    if unknown and not keep_extra:
        raise S3FTError(f"{output} holds results for ids not in {input_path} (e.g. {sorted(unknown)[0]}); use another output path")
    todo = [i for i, pid in enumerate(ids) if json.dumps(pid) not in done]
    writer = jax.process_index() == 0
    distributed.sync(f"read {output.name}")  # all have read it before process 0 appends
    bar = progress_bar(len(todo), unit="prompt", desc="generate", enabled=progress and bool(todo))
    start, tokens = time.perf_counter(), 0
    if todo:
        if writer:
            output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "a", encoding="utf-8") if writer else open(os.devnull, "w") as out:
            # Each prompt's key follows its id, not its position: a prompt samples the same
            # text whichever other prompts share the file or the batch.
            seed_ids = [id_seed(ids[i]) for i in todo]
            batches = SamplerEngine(model).generate_batches(
                tokenizer, [prompts[i] for i in todo], dataclasses.replace(options, fixed_batch=True), seed_ids=seed_ids, layout_from=prompts
            )
            for n, batch in enumerate(batches):
                lines = []
                for j, g in batch:
                    row = _row(ids[todo[j]], g)
                    done[json.dumps(row["id"])] = row
                    tokens += len(g.token_ids)
                    lines.append(json.dumps(row, ensure_ascii=False) + "\n")
                out.write("".join(lines))
                out.flush()
                os.fsync(out.fileno()) if writer else None
                bar.update(len(batch))
                bar.set_postfix(tok_s=f"{tokens / (time.perf_counter() - start):.1f}")
                if after_batch is not None:
                    after_batch(n)
    bar.close()
    if writer:
        known = {json.dumps(i) for i in ids}
        rewrite_in_order(output, [done[json.dumps(i)] for i in ids] + [row for key, row in done.items() if key not in known])
    distributed.sync(f"wrote {output.name}")  # callers read the results back from the file
    return QueueReport(len(ids), len(ids) - len(todo), len(todo), tokens, time.perf_counter() - start)


def rewrite_in_order(output: Path, rows: list[dict]) -> None:
    """The results file, rewritten whole (atomically) in the given order."""
    io.atomic_write_jsonl(output, rows)

