"""Turn a typed train config into everything a run needs: task, tokenizer, data, model, optimizer, loaders."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch

from llmft.config import FinetuneMethod, TrainConfig
from llmft.data import loading as data
from llmft.data import batches, mixing, streaming, word_swaps
from llmft.models.packing_probe import attends_within_examples
from llmft.engine import adversarial, attention, distributed, memory, privacy
from llmft.engine.distill_loss import Distillation, DistilledLoss
from llmft.engine.teacher_cache import fill_cache, row_logits
from llmft.engine.teacher_labels import with_answers
from llmft.engine.hidden_distill import HiddenMatch, layer_map
from llmft.engine.loop import total_steps
from llmft.engine.optim import build_optimizer, build_scheduler, warmup_steps
from llmft.engine.precision import Precision, resolve_device, resolve_precision
from llmft.engine.strategy import Strategy, build_strategy
from llmft.errors import UserError
from llmft.models import backbone, finetune
from llmft.models.quantized import four_bit_load_kwargs
from llmft.models.teacher import load_teacher
from llmft.tasks import get_task
from llmft.tasks.base import Task, check_caches_teacher, check_distills, check_swaps_words


@dataclass
class RunParts:
    task: Task
    tokenizer: Any
    model: Any
    splits: dict[str, Any]
    train_loader: Any
    eval_loader: Any
    test_loader: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    precision: Precision
    num_steps: int
    plan: dict[str, Any]
    dist: distributed.Dist
    carve: dict[str, Any]  # the rows carved off train for validation/test (splits.json)
    strategy: Strategy
    loss_fn: Any = None  # what the loop trains on: the task's loss, or the task's loss with a teacher's term
    source_loaders: dict[str, Any] = field(default_factory=dict)  # task.data.sources: `eval/<name>`, `test/<name>` -> loader
    private: Optional[privacy.PrivateTraining] = None  # privacy.epsilon: DP-SGD's noise and accountant


def build_run(config: TrainConfig, micro_batch: Optional[int] = None, run_dir: Optional[Path] = None) -> RunParts:
    """Seeded, in a fixed order, so the same config builds the same run (resume relies on it: it passes the
    `micro_batch` its run planned). `run_dir`: the run's folder, where a task may keep what it computes once."""
    import transformers

    transformers.set_seed(config.seed)  # python, numpy, torch (and CUDA) RNGs
    trainer = config.trainer
    device = resolve_device(trainer.device)
    precision = resolve_precision(config.precision.mode, device)
    dist = distributed.setup(device, trainer.dist_timeout_minutes)
    strategy = build_strategy(trainer.strategy, dist)
    tokenizer_source, weights = backbone.resolve(config.model)
    tokenizer = backbone.load_tokenizer(tokenizer_source, config.model)
    task = get_task(config.task, tokenizer, config.model.max_length)
    _check_methods(config, task, dist.world)
    backbone.check_fits(task.auto_class_name, weights, tokenizer, config.model)  # before the data is tokenized
    splits, features, carve, stream = _prepared_data(config, task, tokenizer, dist)
    model = _build_model(config, task, weights, tokenizer, device, run_dir)
    cudnn_attention = attention.apply(trainer.cudnn_attention, device, fixed_length=config.task.packing)
    collate = task.collator(tokenizer)
    loss_fn, features["train"] = _loss_fn(
        config, task, model, tokenizer, (splits.get("train"), features["train"], collate, precision, dist)
    )
    estimate, rows = _fit_memory(config, model, task, features["train"], collate, precision, dist, micro_batch)
    trainer = config.trainer  # with the micro-batch the memory plan chose
    if trainer.compile:
        model.compile()  # in place: the module (and its state_dict keys) stay as they are

    asked = False if config.privacy.enabled else trainer.group_by_length  # DP-SGD's accounting: shuffled batches
    by_length = _group_by_length(asked, task.train_by_length, features, stream, trainer.batch_size)
    train_loader, eval_loader, test_loader, source_loaders = _loaders(
        config, task, features, collate, stream, dist, strategy, by_length
    )
    num_steps = total_steps(len(train_loader), trainer)
    model = strategy.wrap(model)
    optimizer = build_optimizer(config.optimizer, model)
    scheduler = build_scheduler(config.scheduler, optimizer, num_steps)
    optimizer, private = (
        privacy.make_private(model, optimizer, config, len(features["train"]), num_steps)
        if config.privacy.enabled
        else (optimizer, None)
    )  # after the scheduler: they share param_groups

    plan = _plan(config, precision, len(features["train"]), num_steps, dist.world, by_length, strategy.unwrap(model), task)
    plan.update({"cudnn_attention": cudnn_attention} if cudnn_attention is not None else {})
    plan.update(data.batching(train_loader))
    plan.update({"privacy": private.record(num_steps)} if private else {})  # what the whole run will spend
    plan.update(
        micro_batch_size=rows,
        estimated_peak_gib=round(estimate.peak(rows) / memory.GIB, 2),
        memory_parts_gib=estimate.parts(rows),
    )
    _add_data_plan(plan, config, stream, splits)
    return RunParts(
        *(task, tokenizer, model, splits, train_loader, eval_loader, test_loader, optimizer, scheduler),
        *(precision.grad_scaler(), precision, num_steps, plan, dist, carve, strategy, loss_fn, source_loaders, private),
    )


def _add_data_plan(plan: dict[str, Any], config: TrainConfig, stream: Any, splits: dict[str, Any]) -> None:
    """A streamed train split, and the rows and tokens each task.data.sources member gives."""
    if stream is not None:
        plan.update(train_examples="streamed", streaming=stream.path)
    if config.task.data.sources:
        counted = plan.get("data", {}).get("train", {}).pop("sources", None)  # rows and tokens, where the task counts them
        plan["sources"] = mixing.describe(config.task.data, counted or mixing.source_counts(splits["train"]))


def _loaders(
    config: TrainConfig,
    task: Task,
    features: dict[str, Any],
    collate: Any,
    stream: Any,
    dist: distributed.Dist,
    strategy: Strategy,
    by_length: bool,
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(train, eval, test loaders, each task.data.sources split's loader by role)."""
    trainer, workers = config.trainer, config.trainer.num_workers
    weights = task.sample_weights(features["train"])
    train_loader = (
        streaming.StreamingLoader(stream, task, trainer.batch_size, collate)
        if stream is not None
        else data.make_loader(
            features["train"],
            trainer.batch_size,
            collate,
            True,
            config.seed,
            workers,
            weights,
            dist.rank,
            dist.world,
            by_length=by_length,
            step_rows=trainer.batch_size * trainer.grad_accum_steps * dist.world,
            sort_steps=task.per_row_loss,  # rows coupled in the loss stay in the micro-batch they were drawn in
            row_index=config.finetune.cache_teacher,  # the teacher's cached outputs are found by row
            by_tokens=task.batch_by_tokens,
        )
    )

    # eval batches are split over the strategy's eval ranks and gathered; the test split is scored after training by
    # plain (unwrapped) models, so it is split over every rank
    def in_order(role: str, shard: Any) -> Any:
        return data.make_loader(
            *(features[role], trainer.eval_batch_size, collate, False, config.seed, workers),
            rank=shard.rank,
            world=shard.world,
            by_length=task.eval_order_free,
            wrap=False,
        )

    eval_loader, test_loader = in_order("eval", strategy.eval_shard), in_order("test", dist)
    source_loaders = {
        role: in_order(role, strategy.eval_shard if role.startswith("eval/") else dist) for role in features if "/" in role
    }
    return train_loader, eval_loader, test_loader, source_loaders


def _check_methods(config: TrainConfig, task: Task, processes: int) -> None:
    """Methods that wrap the loss or the step refuse, before anything loads, what they cannot do."""
    if config.privacy.enabled:
        privacy.check_supported(config, task, processes)
    if config.finetune.adversarial is not None:
        adversarial.check_supported(config.task.family, task.per_row_loss, processes)


def _loss_fn(
    config: TrainConfig, task: Task, model: Any, tokenizer: Any, train: tuple[Any, Any, Any, Precision, Any]
) -> tuple[Any, Any]:
    """(the loss function, the train features): the task itself, or under finetune=distill the task's loss mixed with
    its teacher's term (every process loads the teacher: it runs on the same batches as the student). `train`: the
    train split as loaded, its features, their collator, the run's precision and its processes, for finetune.augment
    (transfer rows the teacher labels, added to the features) and finetune.cache_teacher=true (the teacher's outputs
    for every train row, computed here once, the copies' from the pass that labelled them; the teacher is then freed).
    Under torchrun each process runs the teacher over a share of those rows and every process gets them all."""
    tuning = config.finetune
    rows, features, collate, precision, dist = train
    if tuning.method is not FinetuneMethod.distill:
        return task, features

    _check_distill(config, task, tokenizer)
    teacher = load_teacher(tuning.teacher, task.auto_class_name, task.head_kwargs(), model, tokenizer, precision.device)
    copied: list = []  # the transfer rows' teacher logits
    if tuning.augment:
        features, copied = _with_transfer_rows(config, task, teacher, rows, features, (collate, precision, dist))
    hidden = None
    if tuning.hidden_weight > 0:
        hidden = HiddenMatch(tuning.hidden_weight, layer_map(model, teacher, config.model.keep_layers))
    if tuning.cache_teacher:
        teacher = fill_cache(teacher, features, collate, config.trainer.eval_batch_size, precision, dist, copied)
    return DistilledLoss(task, teacher, Distillation(tuning.temperature, tuning.alpha, tuning.kd_loss), hidden), features


def _check_distill(config: TrainConfig, task: Task, tokenizer: Any) -> None:
    """What finetune=distill cannot do with this task and these options, refused before the teacher loads."""
    tuning = config.finetune
    check_distills(task)
    if tuning.teacher is None:
        raise UserError("finetune=distill needs finetune.teacher=<train run folder | checkpoint folder | model option>")
    if tuning.augment:
        check_swaps_words(task)  # the families it takes have no streamed train split (task.data.streaming)
    if tuning.cache_teacher:
        check_caches_teacher(task, len(tokenizer))
        if tuning.hidden_weight > 0:
            raise UserError(
                "finetune.hidden_weight needs the teacher's hidden states at every step; "
                "finetune.cache_teacher=true keeps only its outputs: set one of them off"
            )


def _with_transfer_rows(config: TrainConfig, task: Task, teacher: Any, rows: Any, features: Any, how: tuple) -> tuple:
    """finetune.augment: (the train features, then `augment` word-swapped copies of the train rows, tokenized by a
    task object of their own (this run's keeps its data statistics) and labelled by the teacher; the teacher's logits
    for the copies)."""
    from datasets import concatenate_datasets

    collate, precision, dist = how
    tuning = config.finetune
    copies = word_swaps.swapped_copies(
        rows, list(config.task.data.text_columns), tuning.augment, tuning.augment_words, config.seed
    )
    copied = get_task(config.task, task.tokenizer, config.model.max_length).prepare({"train": copies})["train"]
    copied = copied.select_columns(features.column_names)
    logits = row_logits(teacher, copied, collate, config.trainer.eval_batch_size, precision, dist)
    labelled = with_answers(copied, logits)
    return concatenate_datasets([features, labelled.cast(features.features)]), logits


def _prepared_data(
    config: TrainConfig, task: Task, tokenizer: Any, dist: distributed.Dist
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Optional[streaming.Stream]]:
    """(the splits as loaded, their features as the task tokenized them, the carve record, the train stream or None).
    With task.data.sources the features also hold each source's eval and test split (roles `eval/<name>`,
    `test/<name>`); with task.data.streaming the train features are the stream's first rows (for the memory plan)."""
    if config.task.data.streaming:
        streaming.check(config, task, dist.world)
        splits, stream = streaming.open_stream(config.task.data)
        features = task.prepare(splits)  # fixes the row format
        features["train"] = streaming.sample(stream, task)
        return splits, features, {"carved": {}}, stream
    splits, per_source, carve = mixing.load_splits(config.task.data, task.fold_strata)
    if not dist.main:
        dist.barrier()  # rank 0 tokenizes (and fills the datasets cache) first; the others then read the cache
    features = task.prepare({**splits, **per_source})
    if dist.main:
        dist.barrier()
    features["train"] = features["train"].remove_columns(
        [c for c in (mixing.SOURCE_COLUMN,) if c in features["train"].column_names]
    )
    return splits, features, carve, None


def _build_model(
    config: TrainConfig, task: Task, weights: Optional[str], tokenizer: Any, device: torch.device, run_dir: Optional[Path]
) -> Any:
    """The backbone with the task's head, the fine-tuning method applied, on `device`; the task binds what it keeps of
    the initial weights (a preference task's reference)."""
    model = build_initial_model(config, task, weights, tokenizer, device)
    if config.privacy.enabled:
        privacy.freeze_embeddings(model)  # before the memory plan and the optimizer see the trainable parameters
    task.bind_model(model, run_dir)  # initial weights, before any step or restore (a preference task's reference)
    if config.task.packing:
        _check_packing(model, tokenizer, task)
    return model


def build_initial_model(config: TrainConfig, task: Task, weights: Optional[str], tokenizer: Any, device: torch.device) -> Any:
    """The run's model before its first step: the backbone with the task's head and the fine-tuning method applied, on
    `device` (what training starts from; `llmft eval` rebuilds it as a preference run's reference)."""
    load_kwargs = four_bit_load_kwargs(device) if config.finetune.method is FinetuneMethod.qlora else None
    model = backbone.load_model(task.auto_class_name, weights, tokenizer, config.model, load_kwargs, **task.head_kwargs())
    task.adapt_model(model)
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is not None and config.model.max_length > positions:
        raise UserError(f"model.max_length={config.model.max_length} is longer than the backbone's {positions} positions")
    return finetune.apply_method(model, config.finetune, task.peft_task_type, config.trainer.gradient_checkpointing, device)


def _plan(
    config: TrainConfig,
    precision: Precision,
    train_examples: int,
    num_steps: int,
    processes: int,
    by_length: bool,
    model: Any,
    task: Task,
) -> dict[str, Any]:
    """What the run will do, for the console, the manifest and `trainer.dry_run`."""
    trainer, augment = config.trainer, config.finetune.augment
    trainable, total = finetune.parameter_counts(model)
    copies = {"transfer_rows": train_examples * augment // (augment + 1)} if augment else {}  # of the train_examples
    return {
        "device": str(precision.device),
        "precision": precision.mode.value,
        "finetune": config.finetune.method.value,
        "train_examples": train_examples,
        **copies,
        "optimizer_steps": num_steps,
        "warmup_steps": warmup_steps(config.scheduler, num_steps),
        "processes": processes,
        "effective_batch_size": trainer.batch_size * trainer.grad_accum_steps * processes,  # the global batch
        "group_by_length": by_length,
        "trainable_parameters": trainable,
        "total_parameters": total,
        **task.plan_info(),
    }


def _fit_memory(
    config: TrainConfig,
    model: Any,
    task: Task,
    train: Any,
    collate: Any,
    precision: Precision,
    dist: distributed.Dist,
    recorded: Optional[int],
) -> tuple[memory.MemoryEstimate, int]:
    """Estimate a step's peak memory and choose the rows per forward pass (rank 0 decides for all; a resumed run keeps
    what it planned). Fewer rows than trainer.batch_size accumulate: the step, its loss and its data are unchanged."""
    trainer = config.trainer
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    estimate = memory.measure(model, task, train, collate, precision, trainable, config.optimizer.name.value)
    rows = recorded or memory.fit_batch(
        estimate, trainer.batch_size, precision.device, trainer.memory_budget_gib, trainer.micro_batch_size
    )
    rows = int(dist.broadcast(rows))
    if rows != trainer.batch_size:
        split = trainer.batch_size // rows
        limit = trainer.limit_train_batches * split if trainer.limit_train_batches > 0 else trainer.limit_train_batches
        config.trainer = replace(
            trainer,
            batch_size=rows,
            grad_accum_steps=trainer.grad_accum_steps * split,
            limit_train_batches=limit,
            micro_batch_size=None,
        )
    return estimate, rows


def _group_by_length(asked: Any, task_default: Optional[bool], features: dict, stream: Any, rows: int) -> bool:
    """The user's `trainer.group_by_length`, else the task's default; a default of None groups where the data's lengths
    vary enough that random batches would pad at least `batches.PADDING_TO_GROUP` times their tokens (a streamed
    split: not grouped). (Grouped half-precision batches on CUDA were slow only while cuDNN attention planned each new
    length; engine/attention.py turns that off for them.)"""
    if asked is not None:
        return bool(asked)
    if task_default is None:
        return stream is None and batches.random_padding(data.row_lengths(features["train"]), rows) >= batches.PADDING_TO_GROUP
    return task_default


def _check_packing(model: Any, tokenizer: Any, task: Task) -> None:
    if not task.packs:
        raise UserError(f"task.packing=true is for decoder-only (causal_lm) tasks, not {task.cfg.family}")
    if not attends_within_examples(model, len(tokenizer)):
        raise UserError(
            f"{type(model).__name__} lets packed examples attend to each other (it ignores packed position "
            "ids); set task.packing=false for this backbone"
        )
