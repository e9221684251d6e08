"""Rendering chat messages into a prompt string with the tokenizer's own chat template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def render_chat(tokenizer, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
    """The prompt text the model expects: system/user/assistant turns plus the cue to answer.

    Messages that end with an assistant turn leave that turn open, so the model continues it
    (an answer begun for the model, as SDFT's GSM8K template does)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template; pass rendered prompt strings instead")
    if messages and messages[-1].get("role") == "assistant":
        return tokenizer.apply_chat_template(list(messages), tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
