"""Each task family's own options: one schema per family, extending the shared TaskConfig. Hydra finds them as
`task_schema/<family>` (cli.register_configs stores every family in llmft.tasks.FAMILIES), and each task YAML names
its family's schema first. A family without options of its own registers TaskConfig itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from llmft.config import BLEU_TOKENIZERS, ConfigError, Side, TaskConfig, TextMetric
from llmft.errors import closest


class ClassificationLoss(str, Enum):  # each a function in tasks/losses.py (CLASS_LOSSES)
    cross_entropy = "cross_entropy"
    focal = "focal"  # cross-entropy times (1 - p_true) ** task.focal_gamma


@dataclass
class ClassificationOptions(TaskConfig):
    family: str = "classification"
    loss: ClassificationLoss = ClassificationLoss.cross_entropy
    # imbalanced data
    class_weights: Optional[list[float]] = None  # one weight per label, in label order
    balance_classes: bool = False  # weights from train label counts (n / (k * count)) when class_weights is unset
    focal_gamma: float = 0.0  # > 0: focal loss (task.loss=focal; setting it alone turns focal on)
    label_smoothing: float = 0.0
    weighted_sampler: bool = False  # draw train rows with probability inverse to their class frequency

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"task.label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.focal_gamma < 0:
            raise ConfigError(f"task.focal_gamma must be >= 0, got {self.focal_gamma}")
        if self.focal_gamma > 0:
            self.loss = ClassificationLoss.focal  # task.focal_gamma=2 alone asks for focal loss, as before task.loss
        elif self.loss is ClassificationLoss.focal:
            raise ConfigError("task.loss=focal needs task.focal_gamma > 0 (2 is the focal loss paper's)")


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
            raise ConfigError(
                "task.chunk_text=true cuts raw text (task=textgen); it cannot take a task.prompt_template "
                "or task.messages_column, nor a family other than causal_lm"
            )
        if self.chunk_text and self.packing:
            raise ConfigError("task.chunk_text=true fills every row already; task.packing=true needs task.chunk_text=false")
        if self.bleu_tokenize not in BLEU_TOKENIZERS:
            raise ConfigError(
                f"task.bleu_tokenize={self.bleu_tokenize} is not a sacrebleu tokenizer"
                f"{closest(self.bleu_tokenize, BLEU_TOKENIZERS)}; choose one of: {', '.join(BLEU_TOKENIZERS)}"
            )


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
            raise ConfigError(
                "task.truncation_side=left: sentence-transformers cuts inputs on the right, and an "
                "embedding checkpoint must embed there as it trained; drop the option"
            )


class PreferenceLoss(str, Enum):
    sigmoid = "sigmoid"  # DPO (Rafailov et al.): -log sigmoid(beta * margin of the policy/reference log-ratios)
    ipo = "ipo"  # IPO (Azar et al.): (margin - 1 / (2 beta))^2 on length-averaged log-ratios, as TRL computes it
    hinge = "hinge"  # SLiC: relu(1 - beta * margin)
    simpo = "simpo"  # SimPO (Meng et al.): reference-free, length-averaged log-probs, target margin simpo_gamma
    orpo = "orpo"  # ORPO (Hong et al.): reference-free, the chosen NLL + beta x log-odds-ratio term


REFERENCE_FREE = (PreferenceLoss.simpo, PreferenceLoss.orpo)


@dataclass
class PairOptions(TaskConfig):
    """What the pair-based families share (dpo, reward): rows of a prompt and a chosen and a rejected completion,
    as strings, message lists, or whole transcripts whose shared beginning is the prompt (told by content)."""

    family: str = "preference"
    prompt_column: str = "prompt"  # a string or a message list; absent or unset: the common prefix of chosen/rejected
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    use_chat_template: bool = True  # string prompts wrapped as a user turn, completions as the assistant's

    @property
    def prompt_template(self) -> None:
        """Prompts are used as written (generation_text and serving read this)."""
        return None

    @property
    def input_truncation_side(self) -> Side:
        return self.truncation_side or Side.right  # completions are cut at their end; the prompt stays whole


@dataclass
class PreferenceOptions(PairOptions):
    """Direct preference optimisation and its relatives (task=dpo)."""

    family: str = "preference"
    loss: PreferenceLoss = PreferenceLoss.sigmoid
    beta: float = 0.1  # the strength of the reference KL (sigmoid/ipo/hinge), SimPO's reward scale, ORPO's lambda
    simpo_gamma: float = 0.5  # SimPO's target reward margin (gamma; TRL's simpo_gamma)
    sft_weight: float = 0.0  # > 0: adds that times the chosen completion's NLL per token (RPO; TRL's rpo_alpha)
    precompute_reference: bool = False  # score the reference once before training (stored with the run), then free it
    chunked_loss: bool = True  # log-probs through the output layer in chunks (engine/token_loss.py)

    @property
    def reference_free(self) -> bool:
        return self.loss in REFERENCE_FREE

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ConfigError(f"task.beta must be > 0, got {self.beta}")
        if self.sft_weight < 0:
            raise ConfigError(f"task.sft_weight must be >= 0, got {self.sft_weight}")
        if self.precompute_reference and self.reference_free:
            raise ConfigError(f"task.loss={self.loss.value} has no reference model; drop task.precompute_reference")


@dataclass
class KTOOptions(TaskConfig):
    """Kahneman-Tversky optimisation on unpaired rows (task=kto): a prompt, a completion and whether it is desirable."""

    family: str = "kto"
    prompt_column: str = "prompt"
    completion_column: str = "completion"
    label_column: str = "label"  # true: desirable, false: undesirable
    use_chat_template: bool = True
    beta: float = 0.1
    desirable_weight: float = 1.0  # lambda_D
    undesirable_weight: float = 1.0  # lambda_U
    chunked_loss: bool = True

    @property
    def prompt_template(self) -> None:
        return None

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ConfigError("task.beta, task.desirable_weight and task.undesirable_weight must be > 0")


@dataclass
class RewardOptions(PairOptions):
    """A Bradley-Terry reward model (task=reward): one score per prompt + completion, trained on pair rows."""

    family: str = "reward"
    select_metric: str = "accuracy"  # pairwise: the chosen completion scored above the rejected one
