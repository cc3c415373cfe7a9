"""Function calling: `tools` rendered by the model's chat template, the calls the model writes parsed back into
`message.tool_calls`, and `tool_choice` forcing a call by constrained decoding (structured.py).

The call format is Hermes / Qwen's, which their chat templates render and their models write:
`<tool_call>{"name": "<function>", "arguments": {...}}</tool_call>`, one block per call. A model whose chat template
never reads `tools` (and `tool_calls`) cannot be told about tools: `tools` is a 400 for it."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Optional

from llmft.data.chat_formats import template_renders_tools
from llmft.serving.errors import ServeError

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*(?:" + re.escape(CLOSE) + r"|$)", re.DOTALL)


def renders_tools(template: Optional[str]) -> bool:
    """Whether a chat template tells the model about tools (reads `tools`) and renders its calls (reads `tool_calls`)."""
    return template_renders_tools(template) and "tools" in (template or "").replace("tool_calls", "")


def checked_tools(tools: Any, tool_choice: Any, template: Optional[str], name: str) -> Optional[list[dict[str, Any]]]:
    """The request's function tools (None when it sends none); a 400 naming the field for a model whose template does
    not render tools, a tool that is not a function, or a tool_choice naming no given tool."""
    if not tools:
        if tool_choice not in (None, "none"):
            raise ServeError(
                400, "tool_choice needs tools (send tools, or leave tool_choice out)", param="tool_choice", code="invalid_value"
            )
        return None
    if not renders_tools(template):
        raise ServeError(
            400,
            f"{name}'s chat template does not render tools (it never reads `tools` and `tool_calls`); "
            "serve a run trained with a tools template (task.chat_template=<.jinja>)",
            param="tools",
            code="unsupported_field",
        )
    if not isinstance(tools, list) or not all(_is_function(t) for t in tools):
        raise ServeError(
            400,
            'tools must be a list of {"type": "function", "function": {"name", "parameters"}}',
            param="tools",
            code="invalid_value",
        )
    forced_name(tool_choice, tools)  # checks tool_choice
    return tools


def _is_function(tool: Any) -> bool:
    return (
        isinstance(tool, dict)
        and tool.get("type") == "function"
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
    )


def forced_name(tool_choice: Any, tools: list[dict[str, Any]]) -> Optional[str]:
    """The function tool_choice forces ({"type": "function", "function": {"name"}}), else None; a 400 for an unknown
    name or value."""
    if tool_choice in (None, "none", "auto", "required"):
        return None
    name = tool_choice.get("function", {}).get("name") if isinstance(tool_choice, dict) else None
    if name is None:
        raise ServeError(
            400,
            'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name"}}',
            param="tool_choice",
            code="invalid_value",
        )
    if name not in [t["function"]["name"] for t in tools]:
        raise ServeError(
            400, f"tool_choice names '{name}', which is not among the tools", param="tool_choice", code="invalid_value"
        )
    return name


def call_schema(tools: list[dict[str, Any]], tool_choice: Any) -> Optional[dict[str, Any]]:
    """The JSON schema of the call the model must write: the forced function's, any tool's for "required", else None."""
    if tool_choice not in ("required",) and forced_name(tool_choice, tools) is None:
        return None
    name = forced_name(tool_choice, tools)
    chosen = [t["function"] for t in tools if name is None or t["function"]["name"] == name]
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": f["name"]}, "arguments": f.get("parameters") or {"type": "object"}},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in chosen
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_calls(text: str, tools: list[dict[str, Any]]) -> tuple[Optional[str], list[dict[str, Any]]]:
    """(the text outside the call blocks or None, the calls as OpenAI's tool_calls): a block whose JSON does not name
    a given function stays in the text."""
    names = {t["function"]["name"] for t in tools}
    calls, kept, at = [], [], 0
    for match in _BLOCK.finditer(text):
        call = _loads(match.group(1))
        if not isinstance(call, dict) or call.get("name") not in names:
            continue
        kept.append(text[at : match.start()])
        at = match.end()
        arguments = call.get("arguments", call.get("parameters", {}))
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    rest = ("".join(kept) + text[at:]).strip()
    return (rest or None) if calls else text, calls


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None
