"""A bare PyTorch loop doing the same math: the same features and model, shuffled batches padded per batch, AdamW,
the scenario's warmup and linear decay (llmft's schedule, which is Trainer's), clipping at 1.0, forward with labels
under autocast (bf16, or fp16 with a GradScaler). Nothing else: the practical limit of the machine."""

from __future__ import annotations

import time
from typing import Any

import torch

from scenarios import Meter, Scenario, compose


def _pad(rows: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    batch = {
        "input_ids": torch.tensor([r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]),
    }
    labels = [r["labels"] for r in rows]
    if isinstance(labels[0], list):
        labels = [x + [-100] * (width - len(x)) for x in labels]
    batch["labels"] = torch.tensor(labels)
    return batch


def run(scenario: Scenario, start: float) -> dict[str, Any]:
    from llmft.commands.setup import build_run
    from llmft.engine.optim import lr_multiplier

    config = compose([*scenario.overrides, f"task.data.max_eval_samples={scenario.eval_rows}"])
    parts = build_run(config)  # only for the model and the tokenized features every implementation shares
    model, pad_id, device = parts.model, parts.tokenizer.pad_token_id, parts.precision.device
    train, dev = parts.train_loader.dataset, parts.eval_loader.dataset
    loader = torch.utils.data.DataLoader(
        train,
        batch_size=config.trainer.batch_size,
        shuffle=True,
        collate_fn=lambda rows: _pad(rows, pad_id),
        pin_memory=device.type == "cuda",
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_multiplier(config.scheduler, scenario.steps)
    )  # llmft's = Trainer's
    meter, step, skipped = Meter(start), 0, 0
    dtype = parts.precision.dtype  # None (fp32), bfloat16 or float16, as llmft resolved `precision`
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)  # the nanoGPT recipe for fp16
    model.train()
    while step < scenario.steps:
        for batch in loader:
            meter.batch(batch)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(**{k: v.to(device, non_blocking=True) for k, v in batch.items()}).loss
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scale = scaler.get_scale() if scaler.is_enabled() else 0.0
            scaler.step(optimizer)
            scaler.update()
            skipped += int(scaler.is_enabled() and scaler.get_scale() < scale)
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == scenario.steps:
                meter.events.append((time.perf_counter(), 0, 0))
                break
    out = meter.result(scenario.warmup, scenario.steps)
    out["params"] = sum(p.numel() for p in model.parameters())
    if scaler.is_enabled():
        out.update(grad_scale=scaler.get_scale(), skipped_steps=skipped)
    model.eval()
    for warm_up in (True, False):  # the first pass pays first-touch costs; the second is timed
        t0, correct, losses = time.perf_counter(), 0, []
        with torch.no_grad():
            for rows in (dev.select(range(i, min(i + 64, len(dev)))) for i in range(0, len(dev), 64)):
                batch = {k: v.to(device) for k, v in _pad(list(rows), pad_id).items()}
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    result = model(**batch)
                losses.append(float(result.loss))
                if result.logits.ndim == 2:
                    correct += int((result.logits.argmax(-1) == batch["labels"]).sum())
    out["eval_samples_per_s"] = len(dev) / (time.perf_counter() - t0)
    out["dev"] = correct / len(dev) if result.logits.ndim == 2 else sum(losses) / len(losses)  # accuracy, or eval loss
    return out
