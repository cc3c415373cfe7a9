"""Typed config schemas (cli.register_configs puts them in Hydra's ConfigStore; nothing here imports Hydra).

Every YAML file under conf/ and recipes/ is merged onto these dataclasses, so a typo'd key or a
value of the wrong type fails at compose time, before any model or data is loaded. Cross-field
checks live in `__post_init__` and run when the command calls `OmegaConf.to_object`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from llmft.config_types import (  # noqa: F401  (re-exported: `from llmft.config import OptimizerName` keeps working)
    BLEU_TOKENIZERS,
    LOWER_IS_BETTER,
    ConfigError,
    Device,
    EmptyTexts,
    FinetuneMethod,
    KDLoss,
    LoggerKind,
    MetricMode,
    NonFinite,
    OptimizerName,
    PrecisionMode,
    Quoting,
    SchedulerName,
    Side,
    Strategy,
    TextMetric,
    TextUnit,
    metric_mode,
)
from llmft.distill_config import check_distill
from llmft.source_specs import check_sources
from llmft.trust_config import Adversarial, AttackConfig, PrivacyConfig, check_adversarial  # noqa: F401


@dataclass
class ModelConfig:
    name_or_path: str = "builtin:minilm-l6"  # hub id, local folder, or builtin:<name>
    revision: Optional[str] = None
    tokenizer: Optional[str] = None  # defaults to name_or_path
    trust_remote_code: bool = False
    max_length: int = 128
    dropout: Optional[float] = None  # overrides the backbone's hidden/attention dropout when set
    # a shallower student from the backbone's own layers (models/student.py): these layer indices, or this many evenly
    # spaced ones (num_layers=3 of 6 keeps 0, 2, 4)
    keep_layers: Optional[list[int]] = None
    num_layers: Optional[int] = None

    def __post_init__(self) -> None:
        if self.keep_layers is not None and self.num_layers is not None:
            raise ConfigError("set one of model.keep_layers=[...] or model.num_layers=N, not both")
        if self.keep_layers is not None and (not self.keep_layers or sorted(set(self.keep_layers)) != list(self.keep_layers)):
            raise ConfigError(f"model.keep_layers takes increasing layer indices, e.g. [0,2,4]; got {list(self.keep_layers)}")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"model.num_layers must be >= 1, got {self.num_layers}")
        if self.max_length < 1:
            raise ConfigError(f"model.max_length must be >= 1 (tokens per row), got {self.max_length}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


FILE_FORMATS = ("csv", "json", "parquet", "text", "conll")
ROW_FORMATS = ("alpaca", "sharegpt", "openai")  # JSON rows in a published layout (llmft/data/chat_formats.py)
DATA_FORMATS = FILE_FORMATS + ROW_FORMATS  # task.data.format


@dataclass
class DataConfig:
    path: str = "builtin:sentiment"  # hub id, local file/folder, or builtin:<name>
    name: Optional[str] = None  # hub dataset configuration
    revision: Optional[str] = None
    # {split: local file}, overrides path lookup. Typed Any and checked in __post_init__: Hydra cannot merge
    # `task.data.data_files={train:a.csv}` into an Optional[dict] that is None (or add keys to a typed dict)
    data_files: Any = None
    text_columns: list[str] = field(default_factory=lambda: ["text"])  # one, or two for pairs
    label_column: str = "label"
    label_names: Optional[list[str]] = None  # None: read from the data set
    train_split: str = "train"
    eval_split: str = "validation"
    test_split: str = "test"
    carve_ratio: float = 0.1  # share of train carved off for a missing eval/test split
    split_seed: int = 1234
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    empty_texts: EmptyTexts = EmptyTexts.drop
    text_unit: TextUnit = TextUnit.paragraph  # raw text files: one document per file, paragraph or line
    delimiter: Optional[str] = None  # .csv/.tsv: one character, or `tab`; None: from the file name (`,` / tab)
    quoting: Quoting = Quoting.auto
    # how local files are read: csv, json, parquet, text or conll (token ... tag columns); None: from the file name.
    # alpaca, sharegpt or openai: JSON rows in that layout (None: told by the columns)
    format: Optional[str] = None
    # JSON: the key of the top-level object whose list holds the rows (`datasets`' json `field`, e.g. `data` for
    # run_qa.py's SQuAD layout, which is also told by its content); None: the file's rows themselves
    field: Optional[str] = None
    dedup: bool = False  # drop identical train rows (case and spacing folded) before splits are carved
    folds: int = 0  # k-fold cross-validation: train dealt into k folds (stratified for classification); 0: off
    fold: Optional[int] = None  # with folds: the fold held out as the validation split, 0..folds-1
    # several data sets in one run: [{path, weight | rows, split, format, name, text_columns, ...}], each split on its
    # own, train mixed by probability or by row counts, eval scored per source (llmft/data/mixing.py); None: `path`
    sources: Any = None
    streaming: bool = False  # read train lazily, tokenize (and pack) on the fly (llmft/data/streaming.py)

    def __post_init__(self) -> None:
        from dataclasses import fields

        self.sources = check_sources(self.sources, [f.name for f in fields(self)], self.folds)
        if (self.folds or self.fold is not None) and not (
            self.folds >= 2 and self.fold is not None and 0 <= self.fold < self.folds
        ):
            raise ConfigError(
                f"task.data.folds takes k >= 2 with task.data.fold in 0..k-1; got folds={self.folds}, fold={self.fold}"
            )
        if self.format is not None and self.format not in DATA_FORMATS:
            raise ConfigError(f"task.data.format={self.format} is not one of: {', '.join(DATA_FORMATS)} (unset: by file name)")
        if self.delimiter is not None and self.delimiter not in ("tab", "\\t") and len(self.delimiter) != 1:
            raise ConfigError(f"task.data.delimiter takes one character or 'tab', got {self.delimiter!r}")
        if not 1 <= len(self.text_columns) <= 2:
            raise ConfigError(f"task.data.text_columns takes one column or two (a sentence pair), got {self.text_columns}")
        if not 0.0 < self.carve_ratio < 1.0:
            raise ConfigError(f"task.data.carve_ratio must be in (0, 1), got {self.carve_ratio}")
        files = self.data_files
        if files is not None and not (
            hasattr(files, "items") and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
        ):
            raise ConfigError(
                f"task.data.data_files takes {{split: file}}, e.g. task.data.data_files={{train:a.csv,test:b.csv}}; got {files}"
            )
        self.data_files = dict(files) if files else None


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    do_sample: bool = False  # false: greedy (or beam search with num_beams > 1)
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 1.0
    num_beams: int = 1
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)  # cut the output at the first of these strings
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_beams < 1 or self.batch_size < 1:
            raise ConfigError("generation.max_new_tokens, num_beams and batch_size must be >= 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ConfigError("generation.temperature must be > 0 and top_p in (0, 1]")


@dataclass
class TaskConfig:
    """What every task family shares. Each family's own options extend it in llmft/tasks/options.py, and each
    conf/task/*.yaml names its family's schema first (`/task_schema@_here_: <family>`), so an option of another
    family (`task=qa task.focal_gamma=2`) fails at compose time like any unknown key."""

    family: str = "classification"  # a key of llmft.tasks.FAMILIES
    data: DataConfig = field(default_factory=DataConfig)
    select_metric: str = "accuracy"  # eval metric that picks the best checkpoint
    select_mode: Optional[MetricMode] = None  # None: from the metric (min for loss, perplexity, mse, ...; else max)
    hub_metrics: list[str] = field(default_factory=list)  # extra metrics by name from the `evaluate` hub (online)
    packing: bool = False  # causal_lm training: several examples per row (positions restart, attention stays within each)
    # which end of a too-long input is cut; unset: the family's default (left for decoders: keeps the end, the
    # response, the prompt's cue, what generation continues; right otherwise). Seq2seq targets are always cut right.
    truncation_side: Optional[Side] = None
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # how `llmft generate` decodes
    # fit a temperature on validation after training, saved with the checkpoint (classification, multiple choice)
    calibrate: bool = False

    @property
    def input_truncation_side(self) -> Side:
        """`truncation_side`, or the family's default when it is unset (right here; the generative schema cuts
        decoder prompts on the left)."""
        return self.truncation_side or Side.right

    @property
    def selection_mode(self) -> MetricMode:
        """`select_mode`, or the metric's own direction when it is unset."""
        return self.select_mode or metric_mode(self.select_metric)


@dataclass
class FinetuneConfig:
    method: FinetuneMethod = FinetuneMethod.full
    freeze_embeddings: bool = False  # freeze: the embedding layer
    freeze_layers: int = 0  # freeze: the first N transformer layers
    head_only: bool = False  # freeze: everything but the task head (linear probe / transfer learning)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: Optional[list[str]] = None  # None: peft's default for the architecture
    merge: bool = True  # lora: merge the adapter into a plain HF checkpoint at the end
    use_dora: bool = False  # lora/qlora: weight-decomposed LoRA (DoRA, peft)
    use_rslora: bool = False  # lora/qlora: rank-stabilised scaling lora_alpha / sqrt(r) instead of lora_alpha / r
    neftune_alpha: Optional[float] = None  # noise on the input embeddings while training (NEFTune; 5 in its paper)
    teacher: Optional[str] = None  # distill: a train run folder (its best checkpoint), a checkpoint folder or a model= option
    temperature: float = 2.0  # distill: both outputs are softened by it; the teacher term is scaled by its square
    alpha: float = 0.5  # distill: weight of the task's own loss; 1 - alpha goes to the teacher term
    kd_loss: KDLoss = KDLoss.forward_kl  # distill: the divergence of the student from the teacher
    cache_teacher: bool = False  # distill: the teacher's outputs computed once for the train split, read back by row
    hidden_weight: float = 0.0  # distill: + this * cosine distance of each student block's output to its teacher block's
    augment: int = 0  # distill: + this many copies of each train row with words swapped, labelled by the teacher (TinyBERT)
    augment_words: float = 0.3  # distill: the share of a copy's words swapped for train words of the same shape

    adversarial: Optional[Adversarial] = None  # fgm | pgd: also train on word embeddings perturbed along the loss gradient
    adversarial_epsilon: float = 0.1  # L2 radius of each row's perturbation (all its tokens); 1.0 stopped MiniLM learning
    adversarial_steps: int = 3  # pgd: ascent steps
    adversarial_alpha: Optional[float] = None  # pgd: length of each ascent step; None: 2.5 * epsilon / steps

    @property
    def adapters(self) -> bool:
        """LoRA adapters train (lora, or qlora on a 4-bit base)."""
        return self.method in (FinetuneMethod.lora, FinetuneMethod.qlora)

    def __post_init__(self) -> None:
        check_adversarial(self.adversarial_epsilon, self.adversarial_steps, self.adversarial_alpha)
        if self.neftune_alpha is not None and not self.neftune_alpha > 0:
            raise ConfigError(f"finetune.neftune_alpha must be > 0, got {self.neftune_alpha}")
        if self.method is FinetuneMethod.qlora and self.merge:
            raise ConfigError(
                "finetune=qlora keeps the adapter (its base is 4-bit): set finetune.merge=false, and merge it "
                "into the full-precision base with `llmft export run=<run> format=merged`"
            )
        if (self.use_dora or self.use_rslora) and not self.adapters:
            raise ConfigError("finetune.use_dora / finetune.use_rslora change LoRA adapters: use finetune=lora or finetune=qlora")
        if self.freeze_layers < 0:
            raise ConfigError(f"finetune.freeze_layers must be >= 0, got {self.freeze_layers}")
        check_distill(self)
        if self.lora_r < 1:
            raise ConfigError(f"finetune.lora_r must be >= 1, got {self.lora_r}")


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName.adamw
    lr: float = 5e-5
    weight_decay: float = 0.01  # never applied to biases and norm weights
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    fused: Optional[bool] = None  # the fused (one-kernel) implementation; None: fused where torch has it for the device

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"optimizer.lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"optimizer.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if len(self.betas) != 2:
            raise ConfigError(f"optimizer.betas takes two numbers, got {self.betas}")


@dataclass
class SchedulerConfig:
    name: SchedulerName = SchedulerName.linear
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of optimizer.lr
    gamma: float = 0.999  # exponential decay per step

    def __post_init__(self) -> None:
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"scheduler.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps < 0:
            raise ConfigError(f"scheduler.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class LoggerConfig:
    kind: LoggerKind = LoggerKind.none
    project: str = "llmft"  # wandb project / mlflow experiment
    run_name: Optional[str] = None  # default: the run folder's name
    tracking_uri: Optional[str] = None  # mlflow; default: sqlite:///<run folder>/mlflow.db


@dataclass
class PrecisionConfig:
    mode: PrecisionMode = PrecisionMode.auto


@dataclass
class TrainerConfig:
    device: Device = Device.auto
    epochs: int = 2
    batch_size: int = 32
    eval_batch_size: int = 64
    # rows per forward pass (batch_size / micro_batch_size passes accumulate into one step, losses unchanged).
    # None: all of batch_size, or its largest divisor whose estimated peak memory fits trainer.memory_budget_gib
    micro_batch_size: Optional[int] = None
    # the peak memory a training step may plan for (engine/memory.py). None: 90% of a GPU; on a CPU the memory
    # available, at most a third of the machine (but 8 GiB at least)
    memory_budget_gib: Optional[float] = None
    grad_accum_steps: int = 1
    max_grad_norm: Optional[float] = 1.0  # None: no clipping
    max_steps: int = -1  # optimizer steps: the run's length (epochs repeat as needed, `epochs` is ignored); -1: `epochs`
    eval_every: int = 0  # optimizer steps between evals; 0: only at each epoch end
    log_every: int = 10
    limit_train_batches: int = -1  # micro-batches per epoch; -1: all
    limit_eval_batches: int = -1
    early_stopping_patience: int = 0  # evals without improvement before stopping; 0: off
    num_workers: int = 0
    save_last: bool = True  # checkpoints/last with optimizer/scheduler/RNG state
    save_every: int = 0  # optimizer steps between resumable checkpoints; 0: each epoch end (and on stop)
    keep_last: int = 1  # resumable checkpoints kept (older ones as checkpoints/step-N); 0: one while training, none once finished
    resume: Optional[str] = None  # a run folder, or auto: the newest unfinished run
    nonfinite: NonFinite = NonFinite.stop  # a NaN/inf loss in fp32/bf16 (fp16: the GradScaler skips the step)
    gradient_checkpointing: bool = False  # trade compute for activation memory
    # training batches of similar-length rows (bucketed, still shuffled): less padding; equal tokens per batch where the
    # loss averages over tokens. None: the family's default (classification, regression; NER where lengths vary)
    group_by_length: Optional[bool] = None
    # CUDA only: unset = cuDNN attention for fixed-length (packed) batches only; it plans per length (engine/attention.py)
    cudnn_attention: Optional[bool] = None
    compile: bool = False  # torch.compile the model (first steps pay the compilation)
    dry_run: bool = False  # build everything, print what the run would do, train nothing
    strategy: Strategy = Strategy.ddp  # under torchrun
    dist_timeout_minutes: int = 60  # torchrun: how long ranks wait for each other (rank 0 writes checkpoints alone)
    progress: bool = True
    cv_folds: int = 0  # k-fold cross-validation: k runs (fold-0 ... under the run folder) and their mean +- std; 0: off

    def __post_init__(self) -> None:
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise ConfigError(f"trainer.cv_folds takes k >= 2 (0: off), got {self.cv_folds}")
        for name in ("epochs", "batch_size", "eval_batch_size", "grad_accum_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"trainer.{name} must be >= 1, got {getattr(self, name)}")
        if self.micro_batch_size is not None and (self.micro_batch_size < 1 or self.batch_size % self.micro_batch_size):
            raise ConfigError(
                f"trainer.micro_batch_size={self.micro_batch_size} must be >= 1 and divide trainer.batch_size={self.batch_size}"
            )
        if self.memory_budget_gib is not None and not self.memory_budget_gib > 0:
            raise ConfigError(f"trainer.memory_budget_gib must be > 0 (GiB), got {self.memory_budget_gib}")
        if self.keep_last < 0 or self.save_every < 0:
            raise ConfigError("trainer.keep_last must be >= 0 (0: none kept once the run finishes) and trainer.save_every >= 0")
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ConfigError(
                f"trainer.max_grad_norm must be a finite number > 0, or null to turn clipping off; got {self.max_grad_norm}"
            )


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)  # privacy.epsilon=8: DP-SGD (Opacus)
    seed: int = 42
    run_name: Optional[str] = None


@dataclass
class EvalConfig:
    run: Any = "???"  # a train run folder, or [a,b,c]: an ensemble of runs
    checkpoint: str = "best"  # best | last | a folder
    split: str = "test"  # which split of the task's data to score
    model: Optional[ModelConfig] = None  # set only by a task option's default model (task=sft); eval loads the run's checkpoint
    task: TaskConfig = field(default_factory=TaskConfig)  # overrides apply onto the run's task
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    attack: Optional[AttackConfig] = None  # attack=charnoise | synonym: score the split clean and perturbed
    seed: int = 42


@dataclass
class GenerateConfig:
    run: Any = None  # a train run folder, or [a,b,c]: an ensemble (or give model=...)
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(name_or_path="")
    )  # or generate with a model: model=smollm2-135m
    generation: GenerationConfig = field(
        default_factory=GenerationConfig
    )  # generation.* overrides apply on the run's task.generation
    checkpoint: str = "best"
    prompt: Optional[str] = None
    input: Optional[str] = None  # a JSONL file with one input per line
    output: Optional[str] = None  # a JSONL file for the results; default: print them
    batch_size: int = 32
    device: Device = Device.auto

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.input is None):
            raise ConfigError('generate needs exactly one of prompt="..." or input=<file.jsonl>')
        if (self.run is None) == (not self.model.name_or_path):
            raise ConfigError("generate needs exactly one of run=<run folder> or model=<model option>")
