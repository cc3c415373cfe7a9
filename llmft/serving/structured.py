"""Structured output: `response_format` ({"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}) and a
forced tool call, decoded under a grammar by xgrammar (what vLLM uses by default): at every step the tokens that cannot
continue valid JSON of the schema are masked, so the text always parses and validates. xgrammar is the optional
`structured` extra; without it such a request is a 400 naming the install command."""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

from llmft.serving.errors import ServeError

INSTALL = 'pip install "llmft[structured]"'
JSON_OBJECT: dict[str, Any] = {"type": "object"}  # json_object: any JSON object


def available() -> bool:
    return importlib.util.find_spec("xgrammar") is not None


def require(param: str) -> None:
    """A 400 naming the field and the install command when xgrammar is missing."""
    if not available():
        raise ServeError(
            400,
            f"{param} needs constrained decoding (xgrammar), which is not installed on this server: {INSTALL}",
            param=param,
            code="unsupported_field",
        )


def schema_of(response_format: Any) -> Optional[dict[str, Any]]:
    """The JSON schema a response_format asks for (None: plain text); a malformed one is a 400 naming its part."""
    if not isinstance(response_format, dict) or response_format.get("type") not in ("text", "json_object", "json_schema"):
        raise ServeError(
            400,
            'response_format must be {"type": "text" | "json_object" | "json_schema", ...}',
            param="response_format",
            code="invalid_value",
        )
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise ServeError(
            400, "response_format.json_schema.schema must be a JSON schema object", param="response_format", code="invalid_value"
        )
    return schema


class Grammars:
    """Compiled grammars of one tokenizer (compiling a schema takes milliseconds; a repeated one is cached)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> None:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        self.control = control_tokens(info.decoded_vocab, vocab_size, set(info.special_token_ids) | set(stop_ids))
        self._compiled: dict[tuple[str, str], Any] = {}
        self.vocab_size = vocab_size

    def compile(self, constraint: tuple[str, str]) -> Any:
        """The grammar of a constraint: ("json", schema) for JSON of the schema, ("tool_call", schema) for one
        `<tool_call>{json}</tool_call>` block (tools.py); compact JSON (no free whitespace, so a weak model cannot spend
        its tokens on spaces). Cached: a repeated schema compiles once."""
        if constraint not in self._compiled:
            self._compiled[constraint] = self._compile(*constraint)
        return self._compiled[constraint]

    def _compile(self, kind: str, schema: str) -> Any:
        import xgrammar as xgr

        try:
            grammar = xgr.Grammar.from_json_schema(schema, any_whitespace=False)
            if kind == "tool_call":
                grammar = xgr.Grammar.concat(
                    xgr.Grammar.from_ebnf('root ::= "<tool_call>"'), grammar, xgr.Grammar.from_ebnf('root ::= "</tool_call>"')
                )
            return self._compiler.compile_grammar(grammar)
        except Exception as ex:  # noqa: BLE001 - xgrammar raises RuntimeError/ValueError on a schema it cannot compile
            param = "tools" if kind == "tool_call" else "response_format"
            raise ServeError(
                400, f"the JSON schema cannot be used for constrained decoding: {ex}", param=param, code="invalid_schema"
            ) from ex

    def processor(self, constraint: tuple[str, str]) -> "GrammarProcessor":
        return GrammarProcessor(self.compile(constraint), self.vocab_size, self.control)


def control_tokens(decoded: list[bytes], vocab_size: int, special: set[int]) -> Any:
    """A mask of the tokens holding a control byte (< 0x20). Compact JSON never holds one (JSON strings escape them), yet
    xgrammar 0.2.9 lets them into strings bounded by maxLength: masked too, the text stays parseable by strict readers."""
    import torch

    mask = torch.zeros(vocab_size, dtype=torch.bool)
    for token, text in enumerate(decoded[:vocab_size]):
        mask[token] = token not in special and any(byte < 0x20 for byte in text)
    return mask


class GrammarProcessor:
    """A transformers logits processor: each row of the batch follows the grammar from its own matcher; a row whose
    grammar has ended (its stop token taken) is left alone (transformers pads it). One per `generate` call. It runs
    after the repetition penalty and before temperature / top-k / top-p, so sampling never picks a masked token."""

    def __init__(self, grammar: Any, vocab_size: int, control: Any) -> None:
        self.grammar, self.vocab_size, self.control = grammar, vocab_size, control
        self.matchers: Optional[list[Any]] = None
        self.bitmask: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import xgrammar as xgr

        if self.matchers is None:
            self.matchers = [xgr.GrammarMatcher(self.grammar) for _ in range(input_ids.shape[0])]
            self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), self.vocab_size)
        else:
            for row, matcher in enumerate(self.matchers):
                if not matcher.is_terminated():
                    matcher.accept_token(int(input_ids[row, -1]))
        for row, matcher in enumerate(self.matchers):
            if matcher.is_terminated():
                self.bitmask[row].fill_(-1)  # every token allowed: the row is finished and only padded
            else:
                matcher.fill_next_token_bitmask(self.bitmask, row)
        xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device), vocab_size=min(self.vocab_size, scores.shape[-1]))
        width = min(len(self.control), scores.shape[-1])
        scores[:, :width] = scores[:, :width].masked_fill(self.control[:width].to(scores.device), float("-inf"))
        return scores
