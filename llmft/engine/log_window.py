"""What the training loop adds up between two log records on one process, and the record it becomes."""

from __future__ import annotations

import time
from typing import Any, Optional

import torch

from llmft.engine.distributed import Dist


class LogWindow:
    """What the loop adds up between two log records, on this process: the loss stays on the device (no host sync
    until the log interval); its contents are saved with every checkpoint, so the first record after a resume
    averages the same steps as an unbroken run's. Its clock counts training only: the loop takes the time of evals
    and checkpoint saves out (`exclude`), so samples/s after an eval is the training speed. A loss that logs terms
    (the preference families' rewards) adds their sums and its item count; the record shows their means. A term
    `count/<group>` is not shown: it is the denominator of the terms named `<group>` or `<name>/<group>` (KTO's
    rewards of desirable rows are averaged over those rows, as TRL's `count/chosen`); a term whose count is 0 over the
    window is left out of the record."""

    def __init__(self, device: torch.device, saved: Optional[dict[str, Any]] = None):
        saved = saved or {}
        self.loss = torch.tensor(float(saved.get("loss", 0.0)), device=device)  # float32, like the sum it continues
        self.steps, self.samples, self.tokens = (int(saved.get(k, 0)) for k in ("steps", "samples", "tokens"))
        self.start = time.perf_counter() - float(saved.get("seconds", 0.0))
        self.terms = {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in saved.get("terms", {}).items()}
        self.items = int(saved.get("items", 0))  # the items the terms are summed over

    def add(self, group_loss: Optional[torch.Tensor], samples: int, tokens: int) -> None:
        """One step's work; `group_loss` None for a step the fp16 GradScaler skipped (its loss is inf: not averaged)."""
        if group_loss is not None:
            self.loss += group_loss
            self.steps += 1
        self.samples, self.tokens = self.samples + samples, self.tokens + tokens

    def add_terms(self, terms: dict[str, torch.Tensor], items: int) -> None:
        """One step's term sums (on the device) over its `items`."""
        if not terms:
            return
        for name, value in terms.items():
            self.terms[name] = self.terms[name] + value if name in self.terms else value
        self.items += items

    def exclude(self, seconds: float) -> None:
        """Time spent on something other than training (an eval, a checkpoint save) during this window."""
        self.start += seconds

    def saved(self) -> dict[str, Any]:
        return {
            "loss": self.loss.item(),
            "steps": self.steps,
            "samples": self.samples,
            "tokens": self.tokens,
            "seconds": time.perf_counter() - self.start,
            "terms": {k: v.item() for k, v in self.terms.items()},
            "items": self.items,
        }

    def record(self, dist: Dist) -> dict[str, float]:
        """Mean loss per step, samples/s and tokens/s over all processes, and the terms' means per item (one
        collective: the sync point)."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        device = self.loss.device
        names = sorted(self.terms)  # the same on every rank: one task
        local = torch.stack(
            [
                self.loss.double(),
                torch.tensor(float(self.samples), dtype=torch.float64, device=device),
                torch.tensor(float(self.tokens), dtype=torch.float64, device=device),
                torch.tensor(float(self.items), dtype=torch.float64, device=device),
                *(self.terms[k].to(device) for k in names),
            ]
        )
        loss, samples, tokens, items, *sums = dist.sum(local).tolist()
        record = {"train/loss": loss / self.steps} if self.steps else {}  # none when every step of the window overflowed
        record["train/samples_per_s"] = samples / elapsed
        if tokens:
            record["train/tokens_per_s"] = tokens / elapsed
        if items:
            record.update(term_means(dict(zip(names, sums)), items))
        return record


def term_means(sums: dict[str, float], items: float) -> dict[str, float]:
    """`train/<name>`: each term's sum over its `count/<group>` term (the last part of its name), else over the items."""
    counts = {name.removeprefix("count/"): value for name, value in sums.items() if name.startswith("count/")}
    means = {}
    for name, value in sums.items():
        count = counts.get(name.rsplit("/", 1)[-1], items)
        if not name.startswith("count/") and count:
            means[f"train/{name}"] = value / count
    return means
