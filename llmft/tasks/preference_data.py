"""Preference rows -> token ids: what the preference families (dpo, kto, reward) share.

A pair row holds a prompt and a chosen and a rejected completion, in one of three layouts, told by content:
strings (`{prompt, chosen, rejected}`); conversations (chosen/rejected message lists, with the prompt a message list,
or the messages chosen and rejected share: UltraFeedback-binarized); whole transcripts (chosen/rejected strings, no
prompt: Anthropic HH-RLHF, the prompt is their shared beginning, up to the last "\\n\\nAssistant:" in it). Each
completion is tokenized jointly with its prompt; labels come from character offsets, so the token at the boundary
(" five") is the completion's. Only completion tokens are supervised, with the end of the turn (EOS, or the chat
template's end-of-turn token) among them."""

from __future__ import annotations

from typing import Any, Optional, Union

from llmft.data.loading import row_origin
from llmft.errors import UserError
from llmft.tasks.causal_lm import labels_from_offsets
from llmft.engine.token_loss import IGNORE
from llmft.tasks.text_common import renders_chat

Turns = Union[str, list]  # a text, or a list of {role, content} messages
HH_ASSISTANT = "\n\nAssistant:"
ROLE_CODES = {"train": 0, "eval": 1, "test": 2}
ROLE_STRIDE = 1 << 30  # pair ids: role code * stride + row index, unique over the splits of a run


def pair_id(role: str, index: int) -> int:
    return ROLE_CODES.get(role, 3) * ROLE_STRIDE + index


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list)) and not value)


def shared_transcript_prompt(chosen: str, rejected: str) -> str:
    """The prompt of two transcripts: their common beginning, cut after its last "\\n\\nAssistant:" (HH-RLHF), else at
    its last whitespace (a word both completions begin with stays in the completions)."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    common = chosen[:n]
    cut = common.rfind(HH_ASSISTANT)
    if cut >= 0:
        return common[: cut + len(HH_ASSISTANT)]
    space = max(common.rfind(" "), common.rfind("\n"))
    return common[:space] if space > 0 else ""


def split_pair(prompt: Any, chosen: Any, rejected: Any) -> tuple[Turns, Turns, Turns, bool]:
    """(prompt, chosen, rejected, raw) from a row's three values in any layout; `raw`: whole transcripts (their own text
    format: no chat template). Raises ValueError with what is wrong."""
    if _missing(chosen) or _missing(rejected):
        raise ValueError(f"'{'chosen' if _missing(chosen) else 'rejected'}' is missing")
    if chosen == rejected:
        raise ValueError("chosen and rejected are the same")
    if _is_messages(chosen) and _is_messages(rejected):
        if _is_messages(prompt) and prompt:
            return prompt, chosen, rejected, False
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        if shared:  # UltraFeedback-binarized: the user's turn is in both conversations
            return chosen[:shared], chosen[shared:], rejected[shared:], False
        if isinstance(prompt, str) and prompt:
            return [{"role": "user", "content": prompt}], chosen, rejected, False
        raise ValueError("the conversations share no prompt and the row has none")
    if isinstance(chosen, str) and isinstance(rejected, str):
        if isinstance(prompt, str):
            return prompt, chosen, rejected, False
        if _missing(prompt):
            head = shared_transcript_prompt(chosen, rejected)
            if not head:
                raise ValueError("chosen and rejected share no prompt and the row has none")
            return head, chosen[len(head) :], rejected[len(head) :], True
    raise ValueError(
        f"chosen/rejected must both be texts or both message lists (got {type(chosen).__name__} and {type(rejected).__name__})"
    )


class PairEncoder:
    """Tokenizes a prompt and a completion jointly, the completion's tokens labelled; bound to its tokenizer."""

    def __init__(self, tokenizer: Any, max_length: int, use_chat_template: bool, add_eos: bool = True):
        self.tokenizer, self.max_length, self.add_eos = tokenizer, max_length, add_eos
        self.chat = renders_chat(use_chat_template, tokenizer)

    def text_and_span(self, prompt: Turns, completion: Turns, raw: bool = False) -> tuple[str, tuple[int, int], bool]:
        """(text, the completion's character span, append EOS?)."""
        if isinstance(prompt, list) or (self.chat and not raw):
            if not self.chat:
                raise ValueError("conversational rows need a tokenizer with a chat template (and task.use_chat_template=true)")
            before_messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            after = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
            before = self.tokenizer.apply_chat_template(before_messages, tokenize=False, add_generation_prompt=True)
            full = self.tokenizer.apply_chat_template(before_messages + after, tokenize=False)
            if not full.startswith(before):
                raise ValueError("the chat template renders the prompt differently once a completion follows it")
            return full, (len(before), len(full)), False
        return prompt + completion, (len(prompt), len(prompt) + len(completion)), self.add_eos

    def encode(self, prompt: Turns, completion: Turns, raw: bool = False) -> tuple[list[int], list[int]]:
        """(input ids, labels) cut on the right at max_length; labels are IGNORE outside the completion."""
        text, span, add_eos = self.text_and_span(prompt, completion, raw)
        enc = self.tokenizer(text, add_special_tokens=not self.chat, return_offsets_mapping=True, verbose=False)
        ids = list(enc["input_ids"])
        labels = labels_from_offsets(enc["offset_mapping"], ids, [span])
        if add_eos and self.tokenizer.eos_token_id is not None:  # learned even when pad == eos: set here, not from pads
            ids.append(self.tokenizer.eos_token_id)
            labels.append(self.tokenizer.eos_token_id)
        ids, labels = ids[: self.max_length], labels[: self.max_length]
        if all(x == IGNORE for x in labels[1:]):
            raise ValueError(f"the prompt fills model.max_length={self.max_length} alone (no completion token is left)")
        return ids, labels


def located(ds: Any, index: int, role: str, data_cfg: Any, problem: str) -> UserError:
    """A bad row as one line: where it is (file and line) and what is wrong."""
    return UserError(f"{row_origin(ds, index, role, data_cfg)}: {problem}")


def pad_rows(rows: list[list[int]], value: int) -> list[list[int]]:
    width = max(len(r) for r in rows)
    return [r + [value] * (width - len(r)) for r in rows]


def value_of(row: dict[str, Any], column: Optional[str]) -> Any:
    return row.get(column) if column else None
