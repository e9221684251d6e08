"""Log-likelihood of continuations given contexts, with lm-evaluation-harness semantics.

`loglikelihoods(model, tokenizer, [(context, continuation), ...])` returns, per request, the
summed log-probability of the continuation's tokens and whether every one of them is the
model's greedy (argmax) choice: the `(float, bool)` pairs lm-eval's `LM.loglikelihood`
returns, computed the way its `HFLM` computes them:

* Tokens: trailing whitespace of the context moves onto the continuation; then
  `encode(context + continuation)` is split at `len(encode(context))`. `encode` uses the
  tokenizer's default special tokens (so a Llama-3 BOS is added to both), except that a string
  already starting with the BOS text gets none. An empty context becomes the BOS token (EOS
  when there is none).
* Truncation: the model reads `(context + continuation)[-(max_length + 1):][:-1]`, i.e. the
  context is cut from the left and the continuation is always scored in full.

Batching, sharding and the shared rows of one-token choices: sampling/scoring.py.

Worked example, one row, context tokens [c0 c1 c2], continuation [x0 x1], T = 8, C = 4:

    slot:      0   1   2   3   4   5   6   7
    input:   pad pad pad pad  c0  c1  c2  x0      (the last token, x1, is never input)
    target:                           ...  x0  x1 (target at slot s = input at slot s + 1)
    scored:                  [ -   -   x0  x1 ]   the last C = 4 slots; x0 in `targets`,
                                                  x1 (or any other candidate) in `last`
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

# The scoring core lives in the sampling layer (the LLM judge uses it too); re-exported here.
from s3ft_jax.sampling.scoring import DEFAULT_BATCH_TOKENS, score_tokens

log = logging.getLogger("s3ft_jax")

# ----------------------------------------------------------------------------------------
# Tokenization, as lm-eval's HFLM does it.


def prefix_token_id(tokenizer) -> int:
    """The token that stands for an empty context: BOS, else EOS (HFLM.prefix_token_id)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos if bos is not None else tokenizer.eos_token_id


def tok_encode(tokenizer, text: str, add_special_tokens: bool | None = None) -> list[int]:
    """HFLM.tok_encode: the tokenizer's default special tokens unless the text already
    starts with the prefix (BOS) token's text."""
    kwargs = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
    if add_special_tokens is None:
        prefix = tokenizer.decode([prefix_token_id(tokenizer)])
        if prefix and text.startswith(prefix):
            kwargs = {"add_special_tokens": False}
    return list(tokenizer(text, **kwargs)["input_ids"])


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-eval's TemplateLM.loglikelihood makes them."""
    if context == "":
        cont = tok_encode(tokenizer, continuation, add_special_tokens=False)
        prefix = prefix_token_id(tokenizer)
        return ([prefix], cont) if not cont or cont[0] != prefix else (cont[:1], cont[1:])
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tok_encode(tokenizer, context + continuation)
    context_ids = tok_encode(tokenizer, context)
    return context_ids, whole[len(context_ids) :]


def loglikelihoods(
    model: nnx.Module,
    tokenizer,
    requests: Sequence[tuple[str, str]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    progress: str | None = None,
) -> list[tuple[float, bool]]:
    """lm-eval `loglikelihood` for (context, continuation) strings: (sum log p, is_greedy).

    `max_length` (default: the model's max_position_embeddings) bounds the tokens the model
    reads; longer requests lose context from the left. `batch_size` caps the rows per batch
    and `batch_tokens` the rows x padded length.
    """
    pairs = [encode_pair(tokenizer, context, continuation) for context, continuation in requests]
    pad = getattr(tokenizer, "pad_token_id", None)
    out = score_tokens(model, pairs, batch_size=batch_size, max_length=max_length, batch_tokens=batch_tokens, pad_id=pad or 0,
                       progress=progress)
    log.debug("scored %d loglikelihood requests", len(out))
    return out


__all__ = ["encode_pair", "loglikelihoods", "prefix_token_id", "score_tokens", "tok_encode"]
