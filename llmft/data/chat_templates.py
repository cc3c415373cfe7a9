"""One chat template from training to serving: `task.chat_template` names a template the tokenizer ships or a Jinja
file; it is set on the tokenizer before the data is rendered, so the checkpoint's tokenizer (what `llmft generate`
and `llmft serve` load) carries it. Thinking blocks can be dropped from the supervised text (`task.thinking=drop`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from llmft.errors import UserError

THINK_BLOCK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


def named_templates(tokenizer: Any) -> dict[str, str]:
    """The templates a tokenizer ships by name ('default', 'tool_use', ...): a dict chat_template, or the
    additional templates transformers keeps beside the default one."""
    template = getattr(tokenizer, "chat_template", None)
    named = dict(template) if isinstance(template, dict) else {"default": template} if template else {}
    extra = getattr(tokenizer, "extra_chat_templates", None) or getattr(tokenizer, "additional_chat_templates", None)
    if isinstance(extra, dict):
        named.update(extra)
    return named


def apply_option(tokenizer: Any, choice: Optional[str]) -> None:
    """Set `tokenizer.chat_template` from `task.chat_template` (a .jinja file, or a name the tokenizer ships)."""
    if not choice:
        return
    path = Path(choice).expanduser()
    if path.suffix in (".jinja", ".j2", ".jinja2") or path.is_file():
        if not path.is_file():
            raise UserError(f"task.chat_template: file not found: {choice}")
        text = path.read_text(encoding="utf-8")
        _check_jinja(text, choice)
        tokenizer.chat_template = text
        return
    named = named_templates(tokenizer)
    if choice not in named:
        shipped = ", ".join(named) or "none"
        raise UserError(
            f"task.chat_template={choice}: not a file and not a template this tokenizer ships (it ships: "
            f"{shipped}); give a .jinja file or one of those names"
        )
    tokenizer.chat_template = named[choice]


def _check_jinja(text: str, source: str) -> None:
    """A template that does not parse is one line naming the file and the line."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment().parse(text)
    except TemplateSyntaxError as ex:
        raise UserError(f"task.chat_template: {source}, line {ex.lineno}: {ex.message}") from None


def drop_thinking(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant turns without their `<think>...</think>` blocks and `reasoning_content` (task.thinking=drop)."""
    out = []
    for message in messages:
        if message["role"] == "assistant":
            message = {k: v for k, v in message.items() if k != "reasoning_content"}
            message["content"] = THINK_BLOCK.sub("", message.get("content") or "")
        out.append(message)
    return out


def disagreement(full: str, prefix: str) -> str:
    """One line: where a prefix rendering (the turns before an answer, with the generation prompt) leaves the full
    conversation's rendering; training masks and generation both rely on the two agreeing."""
    at = next((i for i, (a, b) in enumerate(zip(prefix, full)) if a != b), min(len(prefix), len(full)))
    return (
        f"the chat template renders a conversation's prompt for generation differently from the same turns in "
        f"training (at character {at}: generation {prefix[at : at + 24]!r}, training {full[at : at + 24]!r}), e.g. a "
        "generation prompt that opens a <think> block its turns never show; set task.chat_template to a template "
        "that agrees, or task.use_chat_template=false"
    )
