"""transformers.Trainer as users run it: the same features, model, batch size, optimizer (AdamW), warmup and linear
decay (the scenario's warmup steps, as llmft computes them) and clipping; its default collator (padding per batch) and
no packing or length grouping."""

from __future__ import annotations

import time
from typing import Any

from scenarios import Meter, Scenario, compose


def run(scenario: Scenario, start: float, output_dir: str) -> dict[str, Any]:
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from llmft.commands.setup import build_run
    from llmft.engine.optim import warmup_steps

    config = compose([*scenario.overrides, f"task.data.max_eval_samples={scenario.eval_rows}"])
    parts = build_run(config)
    generative = isinstance(parts.train_loader.dataset[0]["labels"], list)
    collate = (
        DataCollatorForSeq2Seq(parts.tokenizer, label_pad_token_id=-100)
        if generative
        else DataCollatorWithPadding(parts.tokenizer)
    )
    meter = Meter(start)

    skipped: list[bool] = []
    trainer: Any = None

    class Steps(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            meter.events.append((time.perf_counter(), 0, 0))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            skipped.append(bool(trainer.accelerator.optimizer_step_was_skipped))  # fp16: the GradScaler found inf/NaN

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            meter.events.append((time.perf_counter(), 0, 0))

    counts: list[tuple[int, int]] = []

    def metered(rows: list[dict[str, Any]]) -> Any:  # counts what each step trains on
        batch = collate(rows)
        counts.append((len(rows), int(batch["attention_mask"].sum())))
        return batch

    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=config.trainer.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=config.optimizer.lr,
        weight_decay=config.optimizer.weight_decay,
        max_steps=scenario.steps,
        lr_scheduler_type="linear",
        warmup_steps=warmup_steps(config.scheduler, scenario.steps),  # llmft's warmup, same formula
        max_grad_norm=1.0,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        seed=config.seed,
        use_cpu=parts.precision.device.type == "cpu",
        disable_tqdm=True,
        bf16=parts.precision.mode.value == "bf16",
        fp16=parts.precision.mode.value == "fp16",
    )
    trainer = Trainer(
        model=parts.model, args=args, train_dataset=parts.train_loader.dataset, data_collator=metered, callbacks=[Steps()]
    )
    trainer.train()
    # step k begins after its batch is built; pair each step-begin time with that step's counts
    train_counts = counts[: scenario.steps]
    meter.events = [(t, *c) for (t, _, _), c in zip(meter.events, [*train_counts, (0, 0)])]
    out = meter.result(scenario.warmup, scenario.steps)
    out["params"] = sum(p.numel() for p in parts.model.parameters())
    scaler = getattr(trainer.accelerator, "scaler", None)
    if scaler is not None and scaler.is_enabled():
        out.update(grad_scale=scaler.get_scale(), skipped_steps=sum(skipped))
    dev = parts.eval_loader.dataset
    trainer.data_collator = collate
    trainer.evaluate(dev)  # warm-up pass (first-touch costs)
    t0 = time.perf_counter()
    metrics = trainer.evaluate(dev)
    out["eval_samples_per_s"] = len(dev) / (time.perf_counter() - t0)
    loss = generative or scenario.dev_metric == "loss"
    out["dev"] = metrics["eval_loss"] if loss else _accuracy(trainer, dev)  # eval loss, or accuracy
    return out


def _accuracy(trainer: Any, dev: Any) -> float:
    prediction = trainer.predict(dev)
    return float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
