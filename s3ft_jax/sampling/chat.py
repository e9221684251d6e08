"""Rendering chat messages into a prompt string with the tokenizer's own chat template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def render_chat(tokenizer, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
    """The prompt text the model expects: system/user/assistant turns plus the cue to answer.

    A prompt (add_generation_prompt) whose messages end with an assistant turn leaves that turn
    open, so the model continues it (an answer begun for the model, as SDFT's GSM8K template
    does); with add_generation_prompt=False every turn is closed (a whole conversation)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template (a base model?): set --config.model.chat_template "
                         "to plain, chatml or a .jinja file, or pass rendered prompt strings")
    if add_generation_prompt and messages and messages[-1].get("role") == "assistant":
        return tokenizer.apply_chat_template(list(messages), tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
