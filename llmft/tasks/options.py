"""Each task family's own options: one schema per family, extending the shared TaskConfig. Hydra finds them as
`task_schema/<family>` (cli.register_configs stores every family in llmft.tasks.FAMILIES), and each task YAML names
its family's schema first. A family without options of its own registers TaskConfig itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from llmft.config import BLEU_TOKENIZERS, ConfigError, Side, TaskConfig, TextMetric


@dataclass
class ClassificationOptions(TaskConfig):
    family: str = "classification"
    # imbalanced data
    class_weights: Optional[list[float]] = None  # one weight per label, in label order
    balance_classes: bool = False  # weights from train label counts (n / (k * count)) when class_weights is unset
    focal_gamma: float = 0.0  # > 0: focal loss
    label_smoothing: float = 0.0
    weighted_sampler: bool = False  # draw train rows with probability inverse to their class frequency

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"task.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.focal_gamma < 0:
            raise ConfigError(f"task.focal_gamma must be >= 0, got {self.focal_gamma}")


@dataclass
class ExtractiveQAOptions(TaskConfig):
    family: str = "extractive_qa"
    doc_stride: int = 64  # overlap between windows of a long context
    max_answer_length: int = 30  # longest span in tokens


@dataclass
class MultipleChoiceOptions(TaskConfig):
    family: str = "multiple_choice"
    # the columns holding the endings: several (ending0, ending1, ...) or one column of lists; None: the numbered
    # ending/choice/option columns, or the one list column named choices/endings/options
    endings: Optional[list[str]] = None


class Thinking(str, Enum):
    keep = "keep"  # `<think>...</think>` blocks and reasoning_content stay in the supervised text
    drop = "drop"  # removed from assistant turns before rendering: the model learns the answers only


@dataclass
class TextGenerationOptions(TaskConfig):
    """The two generative families, causal_lm (decoder-only) and seq2seq (encoder-decoder), share one schema: the
    same rows and prompt serve either kind of backbone, so a recipe switches `task.family` between them."""

    family: str = "causal_lm"
    prompt_template: Optional[str] = None  # "{column}" placeholders over a row; None: no prompt (textgen)
    response_column: Optional[str] = None  # the supervised text (target)
    messages_column: Optional[str] = None  # causal_lm chat rows: [{role, content}, ...]; only assistant turns supervised
    use_chat_template: bool = True  # causal_lm: wrap prompt/response in the tokenizer's chat template when it has one
    # causal_lm: a template the tokenizer ships (by name) or a .jinja file; saved with the checkpoint's tokenizer, so
    # `llmft generate` and `llmft serve` render as training did. None: the tokenizer's own
    chat_template: Optional[str] = None
    thinking: Thinking = Thinking.keep  # causal_lm chat rows: keep or drop <think> blocks in the supervised text
    text_metric: TextMetric = TextMetric.none  # computed on generated text during eval
    bleu_tokenize: str = "13a"  # sacrebleu's BLEU tokenizer: 13a, zh (Chinese), ja-mecab (Japanese), intl, char, flores200, ...
    eval_generate_samples: int = 64  # eval rows generated for text_metric (0: none)
    max_target_length: int = 128  # seq2seq: targets are cut on the right at this many tokens
    # causal_lm raw text (no prompt_template, no messages_column): documents + EOS concatenated and cut into
    # model.max_length blocks (run_clm's group_texts), every split; false: one row per document, cut at max_length.
    # unset: true unless task.packing asks for documents kept apart
    chunk_text: Optional[bool] = None
    # the loss through the output layer in chunks of supervised rows (engine/token_loss.py): no (tokens, vocabulary)
    # logits for the batch; false: the plain path (full logits). Models whose head is more than a linear layer always
    # take the plain path
    chunked_loss: bool = True

    @property
    def input_truncation_side(self) -> Side:
        """`truncation_side`, or when unset: left for decoders (keeps the response and the prompt's cue), else right."""
        return self.truncation_side or (Side.left if self.family == "causal_lm" else Side.right)

    def __post_init__(self) -> None:
        if self.prompt_template is not None:  # typed on a command line, `\n` and `\t` mean what they do in YAML
            self.prompt_template = self.prompt_template.replace("\\n", "\n").replace("\\t", "\t")
        raw_text = self.family == "causal_lm" and self.prompt_template is None and not self.messages_column
        if self.chunk_text and not raw_text:
            raise ConfigError("task.chunk_text=true cuts raw text (task=textgen); it cannot take a task.prompt_template "
                              "or task.messages_column, nor a family other than causal_lm")
        if self.chunk_text and self.packing:
            raise ConfigError("task.chunk_text=true fills every row already; task.packing=true needs task.chunk_text=false")
        if self.bleu_tokenize not in BLEU_TOKENIZERS:
            from llmft.errors import closest

            raise ConfigError(f"task.bleu_tokenize={self.bleu_tokenize} is not a sacrebleu tokenizer"
                              f"{closest(self.bleu_tokenize, BLEU_TOKENIZERS)}; choose one of: {', '.join(BLEU_TOKENIZERS)}")


@dataclass
class TokenClassificationOptions(TaskConfig):
    """Token classification / NER: `task.data.text_columns[0]` holds each row's token list, `task.data.label_column`
    its tag list (names, or ids with `task.data.label_names`)."""

    family: str = "token_classification"
    select_metric: str = "f1"  # seqeval's entity-level micro F1
    label_all_subwords: bool = False  # false: a word's tag trains its first sub-word only (the rest are not scored)


class EmbeddingLoss(str, Enum):
    auto = "auto"  # by each train row's shape: (anchor, positive[, negative]) -> mnrl, (sentence1, sentence2, score) -> cosent
    mnrl = "mnrl"  # sentence-transformers' MultipleNegativesRankingLoss: in-batch negatives (+ the row's hard negative)
    cosent = "cosent"  # sentence-transformers' CoSENTLoss: the order of the cosine similarities follows the scores


@dataclass
class EmbeddingOptions(TaskConfig):
    """A bi-encoder (sentence embeddings): the backbone's token states mean-pooled, as sentence-transformers'
    Transformer + Pooling(mean) (+ Normalize) modules compute them. Pair rows name their texts in
    `task.data.text_columns` ([anchor, positive]) and `negative_column`; scored rows in `scored_columns` and
    `task.data.label_column` (the score)."""

    family: str = "embedding"
    loss: EmbeddingLoss = EmbeddingLoss.auto
    negative_column: Optional[str] = "negative"  # a pair row's hard negative, used where the column exists and is set
    scored_columns: list[str] = field(default_factory=lambda: ["sentence1", "sentence2"])
    normalize: bool = False  # unit-length embeddings (a Normalize module in the checkpoint); cosine scores are unchanged
    scale: float = 20.0  # the losses' inverse temperature (sentence-transformers' default for both)

    def __post_init__(self) -> None:
        if len(self.scored_columns) != 2:
            raise ConfigError(f"task.scored_columns names the two texts of a scored pair, got {self.scored_columns}")
        if self.scale <= 0:
            raise ConfigError(f"task.scale must be > 0, got {self.scale}")
        if self.truncation_side is Side.left:
            raise ConfigError("task.truncation_side=left: sentence-transformers cuts inputs on the right, and an "
                              "embedding checkpoint must embed there as it trained; drop the option")
