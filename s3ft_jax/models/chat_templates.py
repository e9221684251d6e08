"""Chat templates for checkpoints that ship none (every base model): `model.chat_template`
names one of the templates below or a Jinja file, and `load_tokenizer` puts it on the
tokenizer, so every prompt the project renders (`render_chat`) goes through it.

The templates are Hugging Face chat templates (Jinja over `messages`, `add_generation_prompt`,
`eos_token`), checked here the way transformers compiles them, so a broken file is found in the
first second rather than at the first prompt.
"""

from __future__ import annotations

from pathlib import Path

from s3ft_jax.errors import ConfigError

# "plain": the question, a blank line and "Answer:", the completion style a base model knows
# from its pretraining text; an assistant turn (training, few-shot) is "Answer: ..." + EOS.
PLAIN = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ 'Answer: ' + message['content'] + eos_token + '\\n\\n' }}"
    "{%- else -%}"
    "{{ message['content'] + '\\n\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Answer:' }}{%- endif -%}"
)

# ChatML (Qwen, SmolLM2): for base models of families whose instruct versions use it.
CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

TEMPLATES = {"plain": PLAIN, "chatml": CHATML}
SETTING_HINT = f"set --config.model.chat_template to {', '.join(TEMPLATES)} or a .jinja file"


def chat_template_text(value: str) -> str:
    """The Jinja text `model.chat_template` stands for (a name, or a file), checked to parse."""
    if value in TEMPLATES:
        return TEMPLATES[value]
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.chat_template {value!r} is neither a template name ({', '.join(TEMPLATES)}) nor a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"model.chat_template: cannot read {path}: {e}") from None
    _parse(text, str(path))
    return text


def _parse(text: str, where: str) -> None:
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # As transformers compiles chat templates (sandboxed, with loop controls).
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    try:
        env.parse(text)
    except TemplateSyntaxError as e:
        raise ConfigError(f"{where}:{e.lineno}: {e.message} (model.chat_template)") from None
