"""The vocabulary of the config schemas: the closed choices (enums), metric directions and the config error. Plain
Python, imported by `llmft.config` (which re-exports every name) and by anything that needs a choice's type."""

from __future__ import annotations

from enum import Enum

from llmft.errors import ConfigError  # noqa: F401  (re-exported: schemas raise it)


class OptimizerName(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"
    adamw8bit = "adamw8bit"  # AdamW with 8-bit moments (bitsandbytes)


class SchedulerName(str, Enum):
    constant = "constant"
    linear = "linear"
    cosine = "cosine"
    exponential = "exponential"


class PrecisionMode(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class MetricMode(str, Enum):
    max = "max"
    min = "min"


class TextMetric(str, Enum):
    none = "none"  # loss/perplexity only
    rouge = "rouge"
    bleu = "bleu"  # BLEU and chrF
    squad = "squad"  # exact match and F1
    exact_match = "exact_match"


class Side(str, Enum):
    left = "left"
    right = "right"


class EmptyTexts(str, Enum):
    drop = "drop"  # drop rows whose text is empty or whitespace-only (counted)
    error = "error"


class TextUnit(str, Enum):
    """What one document is in a raw text file (.txt, or a file without an extension that is not JSON)."""

    file = "file"  # the whole file
    paragraph = "paragraph"  # lines up to a blank line
    line = "line"  # each non-blank line


class Quoting(str, Enum):
    auto = "auto"  # none for tab-separated files (as GLUE writes them), rfc4180 for the rest
    none = "none"  # a quote character is text: one line is one row
    rfc4180 = "rfc4180"  # CSV quoting: "..." holds delimiters and newlines, "" is a quote


class Strategy(str, Enum):
    ddp = "ddp"  # torchrun: replicate the model, all-reduce gradients
    fsdp = "fsdp"  # torchrun: shard parameters, gradients and optimizer state (FSDP2 fully_shard)


class LoggerKind(str, Enum):
    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"
    mlflow = "mlflow"


class NonFinite(str, Enum):
    stop = "stop"  # stop with a message; the last good checkpoint stays
    skip = "skip"  # drop the batch's update and go on (counted)


class FinetuneMethod(str, Enum):
    full = "full"
    freeze = "freeze"
    lora = "lora"
    qlora = "qlora"  # LoRA on a 4-bit NF4 base (bitsandbytes)
    distill = "distill"  # every parameter trains, on the task's loss mixed with a teacher's softened outputs


class KDLoss(str, Enum):
    forward_kl = "forward_kl"  # KL(teacher || student): the classic distillation loss
    reverse_kl = "reverse_kl"  # KL(student || teacher)
    jsd = "jsd"  # generalized Jensen-Shannon divergence, beta = 0.5


LOWER_IS_BETTER = ("loss", "perplexity", "mse", "mae", "rmse", "wer", "cer", "ter", "ece")


def metric_mode(metric: str) -> MetricMode:
    """Which way a metric improves: down for losses and error rates (loss, perplexity, mse, ...), up for the rest."""
    name = metric.rsplit("/", 1)[-1].lower()
    return MetricMode.min if name in LOWER_IS_BETTER or name.endswith("_loss") else MetricMode.max


# sacrebleu's BLEU tokenizers (sacrebleu.metrics.bleu._TOKENIZERS; a test keeps the two equal)
BLEU_TOKENIZERS = ("13a", "none", "zh", "intl", "char", "ja-mecab", "ko-mecab", "spm", "flores101", "flores200", "spBLEU-1K")
