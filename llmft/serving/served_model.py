"""The served model and the work the batcher runs on it, through the code paths `llmft generate` uses: prompts built
by the task (template, chat template), `evaluation.generation.generate` for decoding (left padding, stop strings),
`inference.classify.classify` for labels. Called only from the batcher's thread."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional

from llmft.config import GenerationConfig
from llmft.errors import UserError
from llmft.inference.generation import Choice, eos_ids, generate_choices
from llmft.serving.errors import ServeError
from llmft.inference.classify import classify
from llmft.serving.streams import Stream, StreamedRows
from llmft.tasks.text_common import generation_text
from llmft.tasks.base import Task

SERVE_KINDS = ("generate", "classify", "embed")  # a task's serve_kind: chat/completions, /v1/classify, /v1/embeddings


@dataclass
class GenerationWork:
    """One prompt (or chat) to complete with its settings; a streamed one's `stream` receives text as it is decoded."""

    generation: GenerationConfig
    prompt: Optional[str] = None  # /v1/completions
    messages: Optional[list[dict[str, str]]] = None  # /v1/chat/completions
    seed: Optional[int] = None
    n: int = 1  # choices to generate for the prompt
    top_logprobs: Optional[int] = None  # None: no logprobs; k: each token's logprob and the k most likely
    param: str = "prompt"  # the request field a length error names
    tools: Optional[list[dict[str, Any]]] = None  # chat: rendered by the chat template; calls parsed from the answers
    parse_tools: bool = False  # tool_choice other than "none": the answers' <tool_call> blocks become tool_calls
    constraint: Optional[tuple[str, str]] = None  # ("json" | "tool_call", JSON schema): decoding under its grammar
    adapter: Optional[str] = None  # runs=[...]: the peft adapter the request's `model` names
    stream: Optional[Stream] = None  # stream=true: where its text and its answer go as they are decoded

    def batch_key(self) -> Hashable:
        """Requests with equal settings run as one batch, streamed or not; a seeded sampled one runs alone (its choices
        then depend on its seed only, not on the requests it would share a batch with)."""
        if self.seed is not None and self.generation.do_sample:
            return None
        return (
            "generate",
            json.dumps(dataclasses.asdict(self.generation), sort_keys=True, default=str),
            self.top_logprobs,
            self.constraint,
            self.adapter,
        )


@dataclass
class ServedModel:
    """A loaded task, model and tokenizer with the run's generation defaults, answering batches of requests."""

    name: str  # the id clients name in `model`
    task: Task
    model: Any
    tokenizer: Any
    max_length: int
    device: Any
    generation: GenerationConfig  # the run's task.generation with the user's generation.* overrides
    max_batch_size: int = 8
    grammars: Any = None  # structured.Grammars of the tokenizer, built at the first constrained request
    adapters: dict[str, str] = dataclasses.field(default_factory=dict)  # runs=[...]: other model ids -> peft adapter names

    def __post_init__(self) -> None:
        if self.task.serve_kind not in SERVE_KINDS:
            raise UserError(
                f"llmft serve serves generative, classification and embedding runs; this run's task is {self.task.pipeline_tag}"
            )
        self.model.to(self.device)

    @property
    def generates(self) -> bool:
        return self.task.serve_kind == "generate"

    @property
    def classifies(self) -> bool:
        return self.task.serve_kind == "classify"

    @property
    def embeds(self) -> bool:
        return self.task.serve_kind == "embed"

    @property
    def chat(self) -> bool:
        return bool(getattr(self.task, "chat", False))  # a decoder run with the tokenizer's chat template on

    @property
    def names(self) -> list[str]:
        """The model ids served: the run's, then the other adapter runs' (runs=[...])."""
        return [self.name, *self.adapters]

    def adapter_for(self, model: Optional[str]) -> Optional[str]:
        """The peft adapter a request's `model` selects (None: a single model, nothing to switch)."""
        return (self.adapters.get(model or self.name, "default")) if self.adapters else None

    @property
    def chat_template(self) -> Optional[str]:
        """The template chats are rendered with (None: no chat template in use)."""
        return self.tokenizer.chat_template if self.chat else None

    def run_batch(self, key: Hashable, payloads: list[Any]) -> list[Any]:
        """The batcher's runner: generations of one settings key, or texts to classify or embed."""
        if key == "classify":
            return self.classify_batch(payloads)
        if key == "embed":
            return self.embed_batch(payloads)
        return self.generate_batch(payloads)

    # --- generation -----------------------------------------------------------------------
    def prompt_text(self, work: GenerationWork) -> str:
        """The text the model continues: a chat rendered by the chat template, or a prompt built as `llmft generate`
        builds it (task.prompt_template, then the chat template when the run trained with one)."""
        if work.messages is None:
            return generation_text(self.task, work.prompt or "")
        if self.chat:
            tools = {"tools": work.tools} if work.tools else {}
            return self.tokenizer.apply_chat_template(work.messages, tokenize=False, add_generation_prompt=True, **tools).rstrip(
                " "
            )
        if len(work.messages) == 1 and work.messages[0]["role"] == "user":
            return generation_text(self.task, work.messages[0]["content"])
        raise ServeError(
            400,
            f"{self.name} has no chat template: send one user message, or use /v1/completions",
            param="messages",
            code="chat_template_missing",
        )

    def prompt_limit(self, generation: GenerationConfig) -> int:
        """The prompt tokens `generate` keeps (a decoder leaves room for the answer); a longer prompt is refused."""
        if self.model.config.is_encoder_decoder:
            return self.max_length
        return max(self.max_length - generation.max_new_tokens, (self.max_length + 1) // 2)

    def count_tokens(self, text: str, special: bool) -> int:
        return len(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def checked_prompt(self, work: GenerationWork) -> tuple[str, int]:
        """(prompt text, its tokens); ServeError when it is longer than the model takes."""
        text = self.prompt_text(work)
        tokens = self.count_tokens(text, not self.task.prompt_has_special_tokens)
        limit = self.prompt_limit(work.generation)
        if tokens > limit:
            raise ServeError(
                400,
                f"the prompt has {tokens} tokens; {self.name} takes at most {limit} with max_tokens="
                f"{work.generation.max_new_tokens} (model.max_length={self.max_length})",
                param=work.param,
                code="context_length_exceeded",
            )
        room, why = self.answer_room(tokens)
        if work.generation.max_new_tokens > room:
            raise ServeError(
                400,
                f"max_tokens must be from 1 to {room} here ({why}); got {work.generation.max_new_tokens}",
                param="max_tokens",
                code="invalid_max_tokens",
            )
        return text, tokens

    def answer_room(self, prompt_tokens: int) -> tuple[int, str]:
        """The most new tokens a request may ask for, and why: a decoder's positions left after the prompt; an
        encoder-decoder's decoder positions, or where its config states none (T5's relative ones) model.max_length or
        the run's own generation.max_new_tokens, the larger."""
        config = self.model.config
        found = [getattr(config, name, None) for name in ("n_positions", "max_position_embeddings", "n_ctx")]
        positions = next((int(n) for n in found if isinstance(n, int) and n > 0), None)
        if positions is None:
            room = max(self.max_length, self.generation.max_new_tokens)
            return room, f"model.max_length={self.max_length}, generation.max_new_tokens={self.generation.max_new_tokens}"
        if config.is_encoder_decoder:
            return positions, f"{self.name} has {positions} positions"
        return positions - prompt_tokens, f"{self.name} has {positions} positions and the prompt takes {prompt_tokens}"

    def generate_batch(self, works: list[GenerationWork]) -> list[Any]:
        """One decoding of every valid prompt of the batch (one settings key), each repeated for its `n` choices; each
        result is a dict of choices (generation.Choice) and token counts, or the ServeError of its request. A streamed
        request gets its error at once, its text token by token and its answer as soon as its row ends."""
        results: list[Any] = [None] * len(works)
        prompts: dict[int, tuple[str, int]] = {}
        for i, work in enumerate(works):
            try:
                prompts[i] = self.checked_prompt(work)
            except ServeError as ex:
                results[i] = ex
                if work.stream is not None:
                    work.stream.send(ex)
        if not prompts:
            return results
        owners = [i for i in prompts for _ in range(works[i].n)]  # the request of each decoded text
        choices = iter(self.decode([prompts[i] for i in owners], [works[i] for i in owners]))
        for i in prompts:
            results[i] = self.answer(works[i], [next(choices) for _ in range(works[i].n)], prompts[i][1])
        return results

    def decode(self, prompts: list[tuple[str, int]], works: list[GenerationWork]) -> list[Choice]:
        """generate_choices on the (text, tokens) prompts of the works under the first one's settings (the batch's key:
        all share them); streamed works hear their tokens as they come."""
        import torch

        first = works[0]
        generation = dataclasses.replace(first.generation, batch_size=self.max_batch_size)
        if first.adapter is not None:
            self.model.set_adapter(first.adapter)  # one batch, one adapter (the batch key holds it)
        if first.seed is not None:
            torch.manual_seed(first.seed)
        streams = {t: work.stream for t, work in enumerate(works) if work.stream is not None}
        listener = None
        if streams:
            listener = StreamedRows(
                self.tokenizer,
                first.generation,
                set(eos_ids(self.model, self.tokenizer)),
                streams,
                lambda t, choice: self.answer(works[t], [choice], prompts[t][1]),
            )
        return generate_choices(
            self.model,
            self.tokenizer,
            [text for text, _ in prompts],
            generation,
            self.device,
            self.max_length,
            listener=listener,
            add_special_tokens=not self.task.prompt_has_special_tokens,
            truncation_side=self.task.cfg.input_truncation_side,
            top_logprobs=first.top_logprobs,
            processors=self.processors(first.constraint),
        )

    def answer(self, work: GenerationWork, choices: list[Choice], prompt_tokens: int) -> dict[str, Any]:
        """A request's result: its choices as the API reports them and its token counts."""
        return {
            "choices": [self.reported(c, work) for c in choices],
            "prompt_tokens": prompt_tokens,
            "completion_tokens": sum(len(c.token_ids) for c in choices),
        }

    def reported(self, choice: Any, work: GenerationWork) -> dict[str, Any]:
        """A generation.Choice as the API reports it: text, finish_reason, the tool calls parsed from it (when the request
        has tools) and, when asked, (token text, logprob, top) per token."""
        from llmft.serving.tools import parse_calls

        def text(token: int) -> str:
            return self.tokenizer.decode([token])

        tokens = [
            (text(t), lp, [(text(u), ulp) for u, ulp in top])
            for t, lp, top in zip(choice.token_ids, choice.logprobs, choice.top or [[]] * len(choice.token_ids))
        ]
        content, calls = parse_calls(choice.text, work.tools) if work.tools and work.parse_tools else (choice.text, [])
        return {
            "text": content,
            "finish_reason": "tool_calls" if calls else choice.finish_reason,
            "tool_calls": calls,
            "tokens": tokens if work.top_logprobs is not None else None,
        }

    def processors(self, constraint: Optional[tuple[str, str]]) -> Optional[Callable[[], list[Any]]]:
        """Fresh logits processors for each batch's decoding under the constraint's grammar (None: unconstrained)."""
        from llmft.serving import structured

        if constraint is None:
            return None
        if self.grammars is None:
            self.grammars = structured.Grammars(
                self.tokenizer, self.model.get_output_embeddings().weight.shape[0], eos_ids(self.model, self.tokenizer)
            )
        self.grammars.compile(constraint)  # a bad schema fails here, before decoding
        return lambda: [self.grammars.processor(constraint)]

    # --- classification -------------------------------------------------------------------
    def classify_batch(self, texts: list[str]) -> list[Any]:
        """Label and probabilities of each text (tasks.classification.classify, as `llmft generate` on a classifier)."""
        results, valid = refuse_too_long(texts, self.tokenizer, self.max_length, self.name)
        if valid:
            predictions = classify(
                self.model,
                self.tokenizer,
                [[texts[i]] for i in valid],
                self.max_batch_size,
                self.max_length,
                self.device,
                self.task.cfg.input_truncation_side,
            )
            for i, prediction in zip(valid, predictions):
                results[i] = prediction
        return results

    def check_single_text(self) -> None:
        check_single_text(self.task, self.name)

    # --- embedding --------------------------------------------------------------------------
    def embed_batch(self, texts: list[str]) -> list[Any]:
        """Each text's embedding (a float32 numpy vector) and its token count, by the task's own `encode` (what
        `llmft generate` prints); a text longer than the model takes gets its ServeError (encode would cut it)."""
        results, valid = refuse_too_long(texts, self.tokenizer, self.max_length, self.name)
        if valid:
            vectors = self.task.encode(
                self.model, self.tokenizer, [texts[i] for i in valid], self.max_batch_size, self.max_length, self.device
            ).numpy()
            for i, vector in zip(valid, vectors):
                results[i] = {"embedding": vector, "tokens": self.count_tokens(texts[i], True)}
        return results


def refuse_too_long(texts: list[str], tokenizer: Any, max_length: int, name: str) -> tuple[list[Any], list[int]]:
    """(results with the ServeError of each text longer than the model takes, the indices of the others)."""
    results: list[Any] = [None] * len(texts)
    valid = []
    for i, text in enumerate(texts):
        tokens = len(tokenizer(text, add_special_tokens=True)["input_ids"])
        if tokens > max_length:
            results[i] = ServeError(
                400,
                f"the input has {tokens} tokens; {name} takes at most {max_length}",
                param="input",
                code="context_length_exceeded",
            )
        else:
            valid.append(i)
    return results, valid


def check_single_text(task: Task, name: str) -> None:
    """/v1/classify takes single texts: a run trained on text pairs is refused per request."""
    columns = list(task.cfg.data.text_columns)
    if len(columns) != 1:
        raise ServeError(
            400,
            f"{name} classifies text pairs {columns}; /v1/classify takes single texts",
            param="input",
            code="unsupported_input",
        )


def model_sampling_defaults(generation: GenerationConfig, model: Any) -> GenerationConfig:
    """The run's generation settings under what the model's generation_config states (as vLLM takes its defaults from
    it): max_new_tokens, temperature (stated and > 0: sampling, as in vLLM), top_p, top_k, repetition_penalty. The
    user's generation.* overrides on the serve command apply after, and a request's fields after those."""
    stated = model.generation_config.to_diff_dict() if getattr(model, "generation_config", None) is not None else {}
    changes = {k: stated[k] for k in ("max_new_tokens", "top_p", "top_k", "repetition_penalty") if stated.get(k) is not None}
    temperature = stated.get("temperature")
    if stated.get("do_sample") is True or (isinstance(temperature, (int, float)) and temperature > 0):
        changes["do_sample"] = True
    if isinstance(temperature, (int, float)):
        changes["do_sample"] = temperature > 0
        if temperature > 0:
            changes["temperature"] = temperature
    return dataclasses.replace(generation, **changes)


def generation_for(defaults: GenerationConfig, request: Any) -> GenerationConfig:
    """The served defaults with the request's fields: max_completion_tokens (or its older name max_tokens), temperature
    (0 greedy, > 0 sampling), top_p, top_k (-1 or 0: none), repetition_penalty, stop."""
    changes: dict[str, Any] = {}
    max_tokens = request.max_completion_tokens or request.max_tokens
    if max_tokens is not None:
        changes["max_new_tokens"] = max_tokens
    if request.temperature is not None:
        changes["do_sample"] = request.temperature > 0
        if request.temperature > 0:
            changes["temperature"] = request.temperature
    if request.top_p is not None:
        changes["top_p"] = request.top_p
    if request.top_k is not None:
        changes["top_k"] = max(request.top_k, 0)  # transformers: 0 disables top-k
    if request.repetition_penalty is not None:
        changes["repetition_penalty"] = request.repetition_penalty
    if request.stop is not None:
        changes["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    return dataclasses.replace(defaults, **changes)
