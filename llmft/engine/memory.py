"""Peak memory of a training step, estimated before the first step, and the micro-batch that keeps it in budget.

What a step holds: the weights (already loaded: the process's resident memory on a CPU, CUDA's allocated bytes on a
GPU), their gradients and the optimizer's state (from the trainable parameters and the optimizer), and the activations
autograd saves for the backward. The activations are measured, not modelled: one forward and backward of the task's own
loss on the training split's longest row, then on two copies of it, counting the bytes of every tensor autograd saves
(parameters excluded). Whatever the architecture, attention kernel, checkpointing or loss does is in that count; a
third of it again covers the backward's temporaries (calibrated on CPU, see bench/BENCHMARKS.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from llmft.errors import UserError

GIB = 2**30
BACKWARD_TEMPORARIES = 1.35  # measured peak / (base + state + saved activations), rounded up (bench/BENCHMARKS.md)
FIXED_TEMPORARIES = 0.05 * GIB  # allocator slack and transients that do not scale with rows (calibrated: bench/BENCHMARKS.md)
OPTIMIZER_BYTES_PER_PARAM = {"adamw": 8, "adam": 8, "sgd": 4, "adamw8bit": 2}  # moments per trainable parameter


@dataclass
class MemoryEstimate:
    base: int  # weights and everything loaded so far
    state: int  # gradients + optimizer state
    fixed_activations: int  # saved for the backward whatever the rows (the chunked loss's weight gradient, ...)
    activations_per_row: int  # saved for the backward per row of the longest length

    def parts(self, rows: int) -> dict[str, float]:
        """The estimate's parts in GiB, for the plan: loaded, gradients + optimizer state, saved activations."""
        saved = self.fixed_activations + rows * self.activations_per_row
        return {
            "loaded": round(self.base / GIB, 3),
            "grads_and_optimizer": round(self.state / GIB, 3),
            "activations": round(saved / GIB, 3),
        }

    def peak(self, rows: int) -> int:
        saved = self.fixed_activations + rows * self.activations_per_row
        return int(self.base + self.state + saved * BACKWARD_TEMPORARIES + FIXED_TEMPORARIES)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _meminfo(key: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _cgroup_limit() -> Optional[int]:
    """The container's memory limit (cgroup v2 or v1), when one is set."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = open(path).read().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 1 << 60:
            return int(value)
    return None


def loaded_bytes(device: torch.device) -> int:
    """What this process holds now: CUDA's allocated bytes on a GPU, the resident set on a CPU."""
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else _resident_bytes()


def available_bytes(device: torch.device) -> int:
    """What this process can reach: what it holds plus what is free (the GPU's, or the machine's / container's)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_allocated(device)
    available = _meminfo("MemAvailable") + _resident_bytes()
    limit = _cgroup_limit()
    return min(available, limit) if limit else available


def default_budget(device: torch.device) -> int:
    """The planned peak when trainer.memory_budget_gib is unset: 90% of a GPU; on a CPU, what is available but at most a
    third of the machine (max 8 GiB), so a default run leaves the machine usable."""
    reachable = available_bytes(device)
    if device.type == "cuda":
        return int(0.9 * reachable)
    total = _cgroup_limit() or _meminfo("MemTotal")
    return int(min(0.9 * reachable, max(total / 3, 8 * GIB)))


def _saved_bytes(model: torch.nn.Module, step: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct tensors autograd saves while `step()` runs its forward (parameters not counted)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.device.type != "meta":
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step()
    loss.backward()
    return sum(seen.values())


def _longest(features: Any, sample: int = 4096) -> dict[str, Any]:
    """The row with the most token ids among up to `sample` rows spread over the split: the lengths of its `*input_ids`
    fields (a pair's texts, a question's choices) summed, nested lists included."""

    def size(value: Any) -> int:
        if isinstance(value, list) and value and isinstance(value[0], list):
            return sum(size(v) for v in value)
        return len(value) if isinstance(value, list) else 0

    def tokens(row: dict[str, Any]) -> int:
        return sum(size(v) for k, v in row.items() if k.endswith("input_ids")) or sum(size(v) for v in row.values())

    step = max(1, len(features) // sample)
    return max((features[i] for i in range(0, len(features), step)), key=tokens)


def measure(
    model: torch.nn.Module, loss_fn: Any, features: Any, collate: Callable, precision: Any, trainable_bytes: int, optimizer: str
) -> MemoryEstimate:
    """Measure the activations of one and two longest rows through the task's loss; the RNG state, gradients and
    training mode are as they were before."""
    row = _longest(features)
    device = precision.device

    def step(rows: int) -> Callable[[], torch.Tensor]:
        batch = {k: v.to(device) for k, v in collate([row] * rows).items()}

        def run() -> torch.Tensor:
            with precision.autocast():
                return loss_fn.loss_sum(model, batch).float()

        return run

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.sum()  # weights still memory-mapped from the checkpoint file become resident, as training makes them
    base = loaded_bytes(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        was_training = model.training
        model.train()
        try:
            one, two = _saved_bytes(model, step(1)), _saved_bytes(model, step(2))
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
    per_row = max(two - one, 0)
    state = trainable_bytes + trainable_bytes // 4 * OPTIMIZER_BYTES_PER_PARAM.get(optimizer, 8)
    return MemoryEstimate(base=base, state=state, fixed_activations=max(one - per_row, 0), activations_per_row=per_row)


def micro_batch(estimate: MemoryEstimate, batch_size: int, budget: int) -> Optional[int]:
    """The largest divisor of `batch_size` whose step fits `budget` (None: not even one row fits)."""
    for rows in sorted((d for d in range(1, batch_size + 1) if batch_size % d == 0), reverse=True):
        if estimate.peak(rows) <= budget:
            return rows
    return None


def fit_batch(
    estimate: MemoryEstimate, batch_size: int, device: torch.device, budget_gib: Optional[float], asked: Optional[int]
) -> int:
    """Rows per forward pass: `asked` (trainer.micro_batch_size) if given and it fits what the device has; else all of
    `batch_size` when it fits the budget, or its largest divisor that does. One line (UserError) when nothing fits."""
    budget = int(budget_gib * GIB) if budget_gib else default_budget(device)
    reachable = available_bytes(device)
    rows = asked or micro_batch(estimate, batch_size, budget)
    if rows is None and estimate.peak(1) <= 0.95 * reachable:
        rows = 1  # over the planned budget but within what the device has: run, one row at a time
    if rows is None or estimate.peak(rows) > 0.95 * reachable and not budget_gib:
        need = estimate.peak(rows or 1) / GIB
        raise UserError(
            f"a training step of {rows or 1} row(s) needs ~{need:.1f} GiB (estimated), more than the "
            f"{min(budget, reachable) / GIB:.1f} GiB available; set trainer.gradient_checkpointing=true, a lower "
            "model.max_length, finetune=lora, or trainer.micro_batch_size=1"
        )
    if budget_gib and estimate.peak(rows) > budget:
        raise UserError(
            f"a training step of {rows} row(s) needs ~{estimate.peak(rows) / GIB:.1f} GiB (estimated), above "
            f"trainer.memory_budget_gib={budget_gib}; set trainer.gradient_checkpointing=true, a lower "
            "model.max_length, finetune=lora, or raise the budget"
        )
    return rows
