"""The Task seam: what every task family provides. Callers ask the task object, never which family it is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Protocol, runtime_checkable

from llmft.config import GenerationConfig, TaskConfig
from llmft.errors import UserError

if TYPE_CHECKING:  # torch stays out of CLI start-up
    import torch


@dataclass
class PredictRequest:
    """What `llmft generate` asks of a task: one prompt or a JSONL file of rows, and how to run the model."""

    prompt: Optional[str]  # prompt="..."
    input: Optional[Path]  # input=<file.jsonl>
    batch_size: int
    device: Any
    generation: GenerationConfig  # the run's task.generation with the user's generation.* overrides
    stream: bool  # one prompt to the terminal: a task that streams prints tokens as they come


@runtime_checkable
class Head(Protocol):
    """What a family's model is: its transformers head, how a checkpoint is loaded and written, and the tokenizer and
    `model.max_length` the task is bound to when it is built (`tasks.get_task`)."""

    cfg: TaskConfig
    tokenizer: Any  # what its rows are encoded with (None for a task asked only what it is)
    max_length: int  # model.max_length: rows are cut to it
    auto_class_name: str  # the transformers Auto class of its head (AutoModelForSequenceClassification, ...)
    peft_task_type: str  # peft's TaskType for LoRA (SEQ_CLS, CAUSAL_LM, ...)
    pipeline_tag: str  # the Hugging Face pipeline tag written in the model card

    def head_kwargs(self) -> dict[str, Any]:
        """Extra arguments of the head when the backbone is loaded (classification: its labels)."""
        ...

    def from_checkpoint(self, model: Any) -> None:
        """Adopt what a fine-tuned checkpoint fixes before data is prepared for it (classification: its label ids)."""
        ...

    def adapt_model(self, model: Any) -> None:
        """Adjust a freshly loaded backbone before it is wrapped for training (embedding: freeze the pooler its loss
        never reaches, so a several-process run meets no parameter without a gradient). Most do nothing."""
        ...

    def checkpoint_files(self, folder: Path, model: Any) -> None:
        """Write into a checkpoint folder (after the model and tokenizer) what another library needs to load it as
        trained: the embedding family's sentence-transformers modules (modules.json, pooling). Most write nothing."""
        ...


@runtime_checkable
class Trains(Protocol):
    """What the train loop asks: features, batches, their count and loss, sampling, what the plan shows."""

    packs: bool  # task.packing=true is allowed (several examples per row)
    per_row_loss: bool  # the loss is one forward over the rows and a sum of per-row terms (adversarial training, DP-SGD)
    train_by_length: Optional[bool]  # trainer.group_by_length's default (None: where random batches would pad much)
    batch_by_tokens: bool  # grouped training batches hold about equal tokens, not equal rows (data/batches.py)

    def prepare(self, splits: dict[str, Any]) -> dict[str, Any]:
        """Each split's rows as tokenized features with the bound tokenizer, cut to `max_length` (checked, counted in
        `plan_info`)."""
        ...

    def collator(self, tokenizer: Any) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
        """Rows of features -> a padded batch of tensors."""
        ...

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """How many items the loss of `batch` sums over (examples, supervised tokens, ...)."""
        ...

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The summed training loss of a batch; the loop divides by the items of the whole accumulation group."""
        ...

    def sample_weights(self, train: Any) -> Optional[torch.Tensor]:
        """Per-row weights for a weighted train sampler, or None (uniform)."""
        ...

    def plan_info(self) -> dict[str, Any]:
        """What the run plan shows about the task and its data."""
        ...

    def bind_model(self, model: Any, run_dir: Optional[Path]) -> None:
        """Take what the loss needs from the freshly built model to train (initial weights, fine-tuning method applied,
        before any step or resume): the preference families' frozen reference (or its log-probs, stored in `run_dir`).
        Most take nothing."""

    def fold_strata(self, train: Any) -> Optional[list[Any]]:
        """Each raw train row's stratum for k-fold cross-validation (classification: its label), or None (folds are
        dealt from one shuffle)."""
        ...


@runtime_checkable
class Evaluates(Protocol):
    """What evaluation asks: one shard's partial, then metrics over every shard's."""

    eval_order_free: bool  # eval metrics do not depend on row order (eval batches may be length-sorted)

    def eval_partial(
        self, model: Any, batches: Iterable[dict[str, torch.Tensor]], precision: Any, role: str = "eval", dist: Any = None
    ) -> dict[str, Any]:
        """One shard's share of the evaluation (sums, predictions), to be gathered over processes."""
        ...

    def eval_metrics(self, partials: list[dict[str, Any]], role: str = "eval") -> dict[str, Any]:
        """Metrics over every shard's partial."""
        ...


@runtime_checkable
class Predicts(Protocol):
    """What `llmft generate` and `llmft serve` ask."""

    streams: bool  # `llmft generate prompt=...` prints tokens as they come (so the results are not printed again)
    serve_kind: Optional[str]  # what `llmft serve` answers with it: "generate", "classify", "embed", or None (not served)

    def predict(self, model: Any, request: PredictRequest) -> list[dict[str, Any]]:
        """What `llmft generate` prints: each input row with the model's answer (label, answer, generation)."""
        ...


@runtime_checkable
class Task(Head, Trains, Evaluates, Predicts, Protocol):
    """One task family: every part above. Adding a family is one module, one YAML and one line in the registry
    (`llmft.tasks.FAMILIES`); what only some families do is a further Protocol below (ClassProbabilities, Distills,
    ExplainsTokens, ScoresAgainstReference), which a family states by having its methods."""


class PlainHead:
    """The Protocol's defaults for a family whose head needs nothing from the data or the checkpoint (every family but
    classification): uniform sampling, no head arguments, nothing to adopt on load. A mixin, one level deep."""

    def sample_weights(self, train: Any) -> None:
        return None  # uniform sampling

    def head_kwargs(self) -> dict[str, Any]:
        return {}

    def from_checkpoint(self, model: Any) -> None:
        return None  # the checkpoint's head and tokenizer are all it needs

    def adapt_model(self, model: Any) -> None:
        return None  # the head trains as loaded

    def bind_model(self, model: Any, run_dir: Optional[Path]) -> None:
        return None  # the loss needs nothing but the model it is given

    def checkpoint_files(self, folder: Path, model: Any) -> None:
        return None  # transformers alone loads the checkpoint

    def fold_strata(self, train: Any) -> None:
        return None  # cross-validation folds from one shuffle


@runtime_checkable
class ClassProbabilities(Protocol):
    """A family whose evaluation gives each row a probability per class (classification, multiple choice): what
    temperature scaling (`task.calibrate=true`) and ensembles of runs read. The others state it by not having it."""

    def class_probabilities(self, partials: list[dict[str, Any]]) -> tuple[Any, Any]:
        """(labels, probabilities) of every shard's rows, from `eval_partial`'s partials."""
        ...


def check_class_probabilities(task: Task, what: str) -> None:
    """Refuse in one line a method (`what`) that needs class probabilities on a family that does not give them."""
    if not isinstance(task, ClassProbabilities):
        raise UserError(
            f"{what} needs class probabilities (families classification, multiple_choice); "
            f"task.family={task.cfg.family} does not give them"
        )


@runtime_checkable
class Distills(Protocol):
    """A family that learns from a teacher's outputs (finetune=distill): classification and multiple choice (class
    distributions), token classification (per supervised sub-word), regression (the teacher's score), embedding (its
    in-batch similarities and scored cosines), causal LM and seq2seq (per supervised token over the vocabulary). The
    others state it by not having it."""

    caches_teacher: bool  # its teacher outputs are small enough to precompute for the train split (cache_teacher)
    swaps_words: bool  # its rows are text columns whose words finetune.augment may swap (data/word_swaps.py)

    def distill_loss_sum(self, model: Any, teacher: Any, batch: dict[str, torch.Tensor], distillation: Any) -> torch.Tensor:
        """alpha * the task's summed loss + (1 - alpha) * the summed teacher term, over the items `count` counts; the
        teacher (eval mode) runs on the same batch without gradients."""
        ...


def check_distills(task: Task) -> None:
    """Refuse in one line finetune=distill on a family that has no teacher term."""
    if not isinstance(task, Distills):
        raise UserError(
            f"finetune=distill is for families classification, multiple_choice, token_classification, regression, "
            f"embedding, causal_lm and seq2seq; task.family={task.cfg.family} has no teacher term"
        )


def check_caches_teacher(task: Task, vocabulary: int) -> None:
    """Refuse in one line finetune.cache_teacher=true where the teacher's outputs are a distribution over the
    vocabulary at every token, or otherwise not a row's own (a family says why in `uncached_because`)."""
    if not (isinstance(task, Distills) and task.caches_teacher):
        why = getattr(task, "uncached_because", None) or (
            f"per-token distributions over the vocabulary (rows x tokens x {vocabulary} floats), too large to cache"
        )
        raise UserError(
            f"finetune.cache_teacher=true keeps class outputs per row; task.family={task.cfg.family} compares {why}: "
            "leave it false (the teacher runs on each batch)"
        )


def check_swaps_words(task: Task) -> None:
    """Refuse in one line finetune.augment where the rows are not plain text columns with a class, tags or a score."""
    if not (isinstance(task, Distills) and task.swaps_words):
        raise UserError(
            f"finetune.augment makes transfer rows by swapping words of text columns (families classification, "
            f"token_classification, regression); task.family={task.cfg.family} has other rows: set finetune.augment=0"
        )


@runtime_checkable
class ExplainsTokens(Protocol):
    """A family whose outputs `llmft explain` can attribute to the input tokens (classification, regression, token
    classification, multiple choice): the rows to explain, one row's encoding, and the outputs to explain in it
    (`llmft.tasks.explanation.Target`)."""

    def explanation_rows(self, prompt: Optional[str], input: Optional[Path]) -> list[dict[str, Any]]:
        """The rows of `prompt=` or `input=` (as `llmft generate` reads them)."""
        ...

    def explanation_encoding(self, row: dict[str, Any]) -> dict[str, Any]:
        """One row's model inputs, a batch of one, as training encoded them."""
        ...

    def explanation_targets(self, row: dict[str, Any], logits: Any, target: Optional[str]) -> list[Any]:
        """The outputs to explain in the row (its logits given): the named `target=`, or else the prediction(s)."""
        ...


@runtime_checkable
class ScoresAgainstReference(Protocol):
    """A family whose loss compares the policy with a reference, its initial weights (dpo, kto): `llmft eval` rebuilds
    that initial model from the run's config, lets the task score the prepared rows with it, and frees it."""

    def needs_reference(self) -> bool:
        """Whether this configuration uses a reference at all (SimPO and ORPO do not)."""
        ...

    def bind_reference(self, initial: Any) -> None:
        """Score the rows `prepare` made with the rebuilt initial model (kept as a table, not the model)."""
        ...
