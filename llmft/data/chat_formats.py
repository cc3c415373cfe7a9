"""Instruction and chat rows as they are published, told by their content: Alpaca (`instruction`, `input`, `output`,
optional `system`/`history`), ShareGPT (`conversations` of `{from, value}`), OpenAI chat JSONL (`messages` of
`{role, content}` with `tool_calls`, `tool` turns and content given as a list of text parts). Each row becomes one
conversation of `{role, content[, tool_calls, tool_call_id, name]}` messages (what chat templates take), or, for
Alpaca without a chat template, the published Alpaca prompt and its response."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Optional

from llmft.config import ROW_FORMATS  # task.data.format values that name a row layout (the file is JSON)
from llmft.errors import UserError

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")
CHAT_COLUMNS = {"sharegpt": "conversations", "openai": "messages"}
# Stanford Alpaca's PROMPT_DICT (train.py), with the newline after "### Response:" that alpaca-lora's template adds
ALPACA_PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
ALPACA_PREAMBLE_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request."
)

Where = Callable[[], str]  # where a row came from ('line 3 of data.jsonl'), computed only for an error


@dataclass(frozen=True)
class RowFormat:
    """How the rows of a data set are read: `name` (alpaca, sharegpt, openai), the conversation column, and why."""

    name: str
    column: Optional[str]
    told_by: str

    def describe(self, chat: bool) -> str:
        """The plan's one line: which format, told by what, rendered how."""
        rendering = "chat template" if chat or self.name != "alpaca" else "the Alpaca prompt"
        return f"{self.name} ({self.told_by}) -> {rendering}"

    def messages(self, row: dict[str, Any], where: Where) -> list[dict[str, Any]]:
        """The row as one conversation of chat-template messages (checked; one line naming the row when not)."""
        if self.name == "alpaca":
            return alpaca_messages(row, where)
        turns = row.get(self.column) if self.column else None
        messages = [normalize_turn(turn, i, where) for i, turn in enumerate(_as_list(turns, self.column, where))]
        system = row.get("system")  # LLaMA-Factory's ShareGPT rows may carry the system prompt beside the turns
        if isinstance(system, str) and system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system})
        if not any(m["role"] == "assistant" for m in messages):
            raise UserError(f"{where()}: the conversation has no assistant turn to train on")
        return messages

    def tools(self, row: dict[str, Any]) -> Optional[list[Any]]:
        """The row's tool definitions (OpenAI's `tools`, LLaMA-Factory's JSON string), for the chat template."""
        tools = row.get("tools")
        if isinstance(tools, str):
            try:
                tools = json.loads(tools) if tools.strip() else None
            except json.JSONDecodeError:
                return None
        return tools or None


def detect(columns: list[str], forced: Optional[str], messages_column: Optional[str]) -> Optional[RowFormat]:
    """The row format: `task.data.format` when it names one, else by the columns the data has; None when the rows are
    plain columns for a prompt template (or raw text)."""
    columns = list(columns)
    if forced in ROW_FORMATS:
        column = messages_column if messages_column in columns else CHAT_COLUMNS.get(forced)
        return RowFormat(forced, None if forced == "alpaca" else column, "task.data.format")
    if messages_column and messages_column in columns:
        return RowFormat("openai", messages_column, f"column '{messages_column}' (task.messages_column)")
    if "conversations" in columns:
        return RowFormat("sharegpt", "conversations", "column 'conversations'")
    if "messages" in columns:
        return RowFormat("openai", "messages", "column 'messages'")
    if {"instruction", "output"} <= set(columns):
        return RowFormat("alpaca", None, "columns instruction, input, output")
    return None


def _as_list(turns: Any, column: Optional[str], where: Where) -> list[Any]:
    if isinstance(turns, str):  # a conversation stored as a JSON string (other text is refused below)
        with contextlib.suppress(json.JSONDecodeError):
            turns = json.loads(turns)
    if not isinstance(turns, list) or not turns:
        raise UserError(
            f"{where()}: column '{column}' must hold a list of turns, got {type(turns).__name__ if turns else 'nothing'}"
        )
    return turns


def normalize_turn(turn: Any, index: int, where: Where) -> dict[str, Any]:
    """One message as chat templates take it: `{role, content}` (OpenAI) or `{from, value}` (ShareGPT), content given
    as text or a list of text parts, tool calls and tool results kept; keys set to null by the reader dropped."""
    if not isinstance(turn, dict):
        raise UserError(
            f"{where()}: turn {index} is a {type(turn).__name__}, not a message; each message needs the keys "
            "role and content (OpenAI messages) or from and value (ShareGPT)"
        )
    keys = {k for k, v in turn.items() if v is not None}
    if "from" in keys and "value" in turn:
        return _sharegpt_turn(turn, index, where)
    if "role" not in keys or not ({"content", "tool_calls"} & set(turn)):
        raise UserError(
            f"{where()}: message {index} has the keys {', '.join(sorted(turn)) or '(none)'}; each message "
            "needs the keys role and content (OpenAI messages) or from and value (ShareGPT)"
        )
    role = turn["role"]
    if role not in OPENAI_ROLES:
        raise UserError(f"{where()}: message {index} has role '{role}'; roles are {', '.join(OPENAI_ROLES)}")
    message: dict[str, Any] = {"role": role, "content": _text(turn.get("content"), index, where)}
    if turn.get("tool_calls"):
        message["tool_calls"] = [_tool_call(call, index, where) for call in turn["tool_calls"]]
    for key in ("tool_call_id", "name", "weight", "reasoning_content"):
        if turn.get(key) is not None:
            message[key] = turn[key]
    return message


def _sharegpt_turn(turn: dict[str, Any], index: int, where: Where) -> dict[str, Any]:
    speaker, value = turn["from"], turn["value"]
    if speaker not in SHAREGPT_ROLES:
        raise UserError(
            f"{where()}: turn {index} is from '{speaker}'; ShareGPT turns are from "
            f"{', '.join(k for k in SHAREGPT_ROLES if k not in ('user', 'assistant', 'tool'))}"
        )
    if speaker == "function_call":  # LLaMA-Factory: the value is the call as JSON, {"name", "arguments"}
        return {"role": "assistant", "content": "", "tool_calls": [_tool_call(value, index, where)]}
    return {"role": SHAREGPT_ROLES[speaker], "content": _text(value, index, where)}


def _text(content: Any, index: int, where: Where) -> str:
    """Content as text: a string, null (a tool-call turn) or OpenAI's list of parts, whose text parts are joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        kinds = {part.get("type") if isinstance(part, dict) else type(part).__name__ for part in content}
        if kinds - {"text"}:
            raise UserError(
                f"{where()}: message {index} has content parts of type {', '.join(sorted(map(str, kinds - {'text'})))}; "
                "only text parts can be trained on"
            )
        return "".join(part.get("text") or "" for part in content)
    raise UserError(f"{where()}: message {index} has content of type {type(content).__name__}; give text or a list of text parts")


def _tool_call(call: Any, index: int, where: Where) -> dict[str, Any]:
    """OpenAI's `{id, type: function, function: {name, arguments: "<json>"}}` (or a bare `{name, arguments}`), with
    the arguments parsed, as transformers' chat templates expect them."""
    if isinstance(call, str):
        try:
            call = json.loads(call)
        except json.JSONDecodeError:
            raise UserError(f"{where()}: turn {index} is a function call whose value is not JSON ({call[:40]!r})") from None
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict) or "name" not in function:
        raise UserError(
            f"{where()}: message {index} has a tool call without a function name; a call is "
            '{"type": "function", "function": {"name", "arguments"}}'
        )
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass  # kept as the text it is
    out = {"type": "function", "function": {"name": function["name"], "arguments": arguments}}
    return {**out, "id": call["id"]} if isinstance(call, dict) and call.get("id") else out


def alpaca_messages(row: dict[str, Any], where: Where) -> list[dict[str, Any]]:
    """system, the history's turns, user = instruction (+ blank line + input when there is one), assistant = output."""
    instruction, output = _alpaca_field(row, "instruction", where), _alpaca_field(row, "output", where)
    messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    for pair in row.get("history") or []:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise UserError(f"{where()}: Alpaca 'history' holds [instruction, response] pairs, got {pair!r:.60}")
        messages += [{"role": "user", "content": str(pair[0])}, {"role": "assistant", "content": str(pair[1])}]
    source = row.get("input") or ""
    user = f"{instruction}\n\n{source}" if source.strip() else instruction
    return [*messages, {"role": "user", "content": user}, {"role": "assistant", "content": output}]


def alpaca_prompt(row: dict[str, Any], where: Where) -> tuple[str, str]:
    """(prompt, response) in the published Alpaca layout: with an input, or without one (no empty Input section and no
    blank line). A row's `system` replaces the preamble; `history` needs a chat template."""
    instruction, output = _alpaca_field(row, "instruction", where), _alpaca_field(row, "output", where)
    if row.get("history"):
        raise UserError(
            f"{where()}: an Alpaca row with 'history' is a conversation; it needs a tokenizer with a chat "
            "template (task.chat_template=<name or .jinja file>)"
        )
    source = row.get("input") or ""
    if source.strip():
        preamble = row.get("system") or ALPACA_PREAMBLE_INPUT
        return f"{preamble}\n\n### Instruction:\n{instruction}\n\n### Input:\n{source}\n\n### Response:\n", output
    preamble = row.get("system") or ALPACA_PREAMBLE
    return f"{preamble}\n\n### Instruction:\n{instruction}\n\n### Response:\n", output


def _alpaca_field(row: dict[str, Any], key: str, where: Where) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise UserError(
            f"{where()}: an Alpaca row needs text in '{key}' (keys: instruction, input, output; optional "
            f"system, history), got {type(value).__name__}"
        )
    return value


def has_tool_turns(messages: list[dict[str, Any]]) -> bool:
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages)


def template_renders_tools(template: Optional[str]) -> bool:
    """Whether a chat template renders tool calls and tool results (it reads `tool_calls`)."""
    return bool(template) and "tool_calls" in template
